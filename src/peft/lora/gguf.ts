/**
 * A LoRA adapter as llama.cpp's GGUF LoRA (io/gguf_lora.ts): one lora_a/lora_b pair per adapted
 * linear, named after its GGUF base weight, lora_b rows in GGUF order (the order adapters keep
 * in memory, so nothing is permuted here). llama.cpp scales B·A by alpha / r; rsLoRA's
 * alpha / √r is written as alpha' = alpha·√r, which gives the same factor.
 *
 * llama.cpp's runtime adapters are LoRA only: DoRA (a magnitude per output row) and the other
 * methods ((IA)³, LN tuning, partial fine-tuning, BitFit) have no GGUF runtime format. They are
 * refused naming the way out: export the model merged, where the method can be merged.
 */
import { PeftError } from "../../errors.ts";
import { ggufLinearName } from "../../model/config.ts";
import type { LoraGguf } from "../../io/gguf_lora.ts";
import type { Adapter } from "../adapter.ts";
import { resolveTargets } from "../targets.ts";
import type { LoraConfig } from "./config.ts";
import { loraKeys } from "./method.ts";

/** The alpha llama.cpp needs (it scales by alpha / r) for this config's PEFT scale. */
export function llamaCppAlpha(c: Pick<LoraConfig, "lora_alpha" | "r" | "use_rslora">): number {
  return c.use_rslora ? c.lora_alpha * Math.sqrt(c.r) : c.lora_alpha;
}

/** Why `adapter` has no llama.cpp runtime GGUF, or undefined when it has one (plain LoRA). */
export function ggufLoraRefusal(adapter: Adapter): string | undefined {
  const label = adapter.method.label(adapter.config);
  const merged = adapter.method.merge
    ? "export the model with the adapter merged instead (export --merge, or mergeAndUnload then save)"
    : `it cannot be merged either (${adapter.method.cannotMerge}); keep it as an HF PEFT adapter`;
  if (adapter.peftType === "LORA" && (adapter.config as LoraConfig).use_dora) {
    return `adapter ${adapter.name} is DoRA: llama.cpp's LoRA adapters have no magnitude vector, so a DoRA adapter cannot run there unmerged; ${merged}`;
  }
  if (adapter.peftType !== "LORA") return `adapter ${adapter.name} is ${label}: llama.cpp loads LoRA adapters only; ${merged}`;
  if ((adapter.config as LoraConfig).lora_alpha === 0) {
    return `adapter ${adapter.name} has lora_alpha 0 (no effect), which llama.cpp reads as "no scaling" (scale 1); nothing to export`;
  }
  return undefined;
}

/** The adapter's tensors and alpha as a llama.cpp LoRA GGUF for a base of `architecture`. */
export async function loraGguf(adapter: Adapter, architecture: string): Promise<LoraGguf> {
  const refusal = ggufLoraRefusal(adapter);
  if (refusal) throw new PeftError("UNSUPPORTED", refusal);
  const config = adapter.config as LoraConfig;
  const pairs = [];
  for (const t of resolveTargets(config, adapter.model)) {
    const k = loraKeys(t);
    pairs.push({
      weight: ggufLinearName(t.module, t.layer),
      r: config.r,
      inFeatures: t.inFeatures,
      outFeatures: t.outFeatures,
      a: await adapter.gpu.readF32(adapter.params.get(k.A)!.value),
      b: await adapter.gpu.readF32(adapter.params.get(k.B)!.value),
    });
  }
  return { architecture, alpha: llamaCppAlpha(config), name: adapter.name, pairs };
}
