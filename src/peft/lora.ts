/**
 * A LoRA adapter attached to a model: its PEFT config, its targets, and A/B on the GPU (in GGUF
 * q/k row order). It converts to the forms the forward pass (ActiveAdapter) and the training
 * pass (TrainableLora) use, and saves/loads HF PEFT directories (HF row order on disk).
 */
import { join } from "node:path";
import { PeftError } from "../errors.ts";
import type { Gpu, Tensor } from "../gpu/gpu.ts";
import { ADAPTER_CONFIG_FILE, type AdapterTensor, loadAdapterDir, loraBToGguf, loraBToHf, loraKey, saveAdapterDir, validateAdapterAgainst } from "../io/peft_adapter.ts";
import { ggufLinearName, type LlamaConfig } from "../model/config.ts";
import type { ActiveAdapter } from "../model/linear.ts";
import type { TrainableLora } from "../model/llama_train.ts";
import { initLoraAdapter } from "./init.ts";
import { type LoraConfig, loraScale, normalizeLoraConfig } from "./lora_config.ts";
import { countTrainable, type LoraTarget, resolveTargets } from "./targets.ts";

export interface LoraPair {
  target: LoraTarget;
  A: Tensor; // [r, in]
  B: Tensor; // [out, r], GGUF row order for q/k
  dA?: Tensor;
  dB?: Tensor;
}

export class LoraAdapter {
  readonly scale: number;
  /** By GGUF weight name. */
  readonly pairs = new Map<string, LoraPair>();

  private constructor(readonly gpu: Gpu, readonly name: string, readonly config: LoraConfig, readonly modelConfig: LlamaConfig) {
    this.scale = loraScale(config);
  }

  /** A fresh adapter initialised as PEFT does (B = 0 by default: the model is unchanged at step 0). */
  static create(gpu: Gpu, modelConfig: LlamaConfig, name: string, user: Record<string, unknown>, seed = 0): LoraAdapter {
    const config = normalizeLoraConfig(user);
    if (config.use_dora) throw new PeftError("ADAPTER_UNSUPPORTED", "use_dora: DoRA is not supported yet; set use_dora to false");
    const a = new LoraAdapter(gpu, name, config, modelConfig);
    const targets = resolveTargets(config, modelConfig);
    for (const w of initLoraAdapter(targets, config.r, config.init_lora_weights, seed)) {
      a.addPair(w.target, w.A, w.B);
    }
    return a;
  }

  /** Loads an HF PEFT adapter directory, validated against the model's shapes. */
  static async load(gpu: Gpu, modelConfig: LlamaConfig, name: string, dir: string): Promise<LoraAdapter> {
    const adapter = await loadAdapterDir(dir);
    validateAdapterAgainst(modelConfig, adapter, dir);
    let config: LoraConfig, targets: LoraTarget[];
    try {
      config = normalizeLoraConfig(adapter.config as Record<string, unknown>);
      targets = resolveTargets(config, modelConfig);
    } catch (e) {
      // These checks know the config, not its file: name it.
      if (e instanceof PeftError) throw new PeftError(e.code, `${join(dir, ADAPTER_CONFIG_FILE)}: ${e.message}`, { cause: e });
      throw e;
    }
    if (config.use_dora) throw new PeftError("ADAPTER_UNSUPPORTED", `${dir}: use_dora adapters are not supported yet`);
    const a = new LoraAdapter(gpu, name, config, modelConfig);
    for (const t of targets) {
      const A = adapter.tensors.get(loraKey(t.module, t.layer, "lora_A"));
      const B = adapter.tensors.get(loraKey(t.module, t.layer, "lora_B"));
      if (!A || !B) {
        throw new PeftError("ADAPTER_SHAPE_MISMATCH", `${dir}: target ${t.module} of layer ${t.layer} has no ${A ? "lora_B" : "lora_A"} tensor`);
      }
      const Bg = loraBToGguf(t.module, B.data, t.outFeatures, config.r, modelConfig.headDim);
      a.addPair(t, A.data, Bg);
    }
    return a;
  }

  private addPair(target: LoraTarget, A: Float32Array, B: Float32Array) {
    const r = this.config.r;
    this.pairs.set(ggufLinearName(target.module, target.layer), {
      target,
      A: this.gpu.upload(A, [r, target.inFeatures], "f32", "lora"),
      B: this.gpu.upload(B, [target.outFeatures, r], "f32", "lora"),
    });
  }

  get trainableParameters(): number {
    return countTrainable([...this.pairs.values()].map((p) => p.target), this.config.r);
  }

  /** The form the inference forward pass uses. */
  active(): ActiveAdapter {
    const layers = new Map<string, { A: Tensor; B: Tensor; r: number }>();
    for (const [n, p] of this.pairs) layers.set(n, { A: p.A, B: p.B, r: this.config.r });
    return { scale: this.scale, layers };
  }

  /** The form the training pass uses; allocates zeroed gradient buffers on first use. */
  trainable(): TrainableLora {
    const layers = new Map();
    for (const [n, p] of this.pairs) {
      p.dA ??= this.gpu.zeros(p.A.shape, "f32", "gradients");
      p.dB ??= this.gpu.zeros(p.B.shape, "f32", "gradients");
      layers.set(n, { A: p.A, B: p.B, dA: p.dA, dB: p.dB, r: this.config.r });
    }
    return { scale: this.scale, dropout: this.config.lora_dropout, layers };
  }

  /** A and B read back as PEFT tensors (HF key names and row order). */
  async peftTensors(): Promise<Map<string, AdapterTensor>> {
    const out = new Map<string, AdapterTensor>();
    const r = this.config.r;
    for (const p of this.pairs.values()) {
      const t = p.target;
      const A = await this.gpu.readF32(p.A);
      const Bg = await this.gpu.readF32(p.B);
      out.set(loraKey(t.module, t.layer, "lora_A"), { shape: [r, t.inFeatures], data: A });
      out.set(loraKey(t.module, t.layer, "lora_B"), { shape: [t.outFeatures, r], data: loraBToHf(t.module, Bg, t.outFeatures, r, this.modelConfig.headDim) });
    }
    return out;
  }

  /** Writes adapter_config.json + adapter_model.safetensors (atomically). */
  async save(dir: string, baseModel: string | null = null): Promise<void> {
    const config = { ...this.config, base_model_name_or_path: this.config.base_model_name_or_path ?? baseModel, inference_mode: true };
    await saveAdapterDir(dir, config, await this.peftTensors());
  }

  /** Frees the GPU buffers. */
  release(): void {
    for (const p of this.pairs.values()) for (const t of [p.A, p.B, p.dA, p.dB]) t?.release();
    this.pairs.clear();
  }
}
