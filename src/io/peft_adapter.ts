/**
 * Hugging Face PEFT adapter directories: `adapter_config.json` + `adapter_model.safetensors`,
 * read and written as bytes <-> host tensors, whatever the method. Tensors keep their on-disk
 * names; which names and shapes a method expects, and the q/k row order, are src/peft's business.
 */
import { mkdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { PeftError } from "../errors.ts";
import { eventLoopYielder, writeFileAtomic } from "./bytes.ts";
import { ADAPTER_SAFETENSORS_LIMITS, encodeSafetensors, readSafetensors, type SafetensorsWriteTensor } from "./safetensors.ts";

export interface PeftAdapterConfig {
  peft_type: string;
  r?: number;
  lora_alpha?: number;
  lora_dropout?: number;
  target_modules?: string[] | string;
  bias?: string;
  use_rslora?: boolean;
  use_dora?: boolean;
  task_type?: string;
  base_model_name_or_path?: string | null;
  layers_to_transform?: number[] | number | null;
  fan_in_fan_out?: boolean;
  init_lora_weights?: boolean | string;
  modules_to_save?: string[] | null;
  inference_mode?: boolean;
  [k: string]: unknown;
}

export interface AdapterTensor {
  shape: number[];
  data: Float32Array;
}

export interface PeftAdapter {
  config: PeftAdapterConfig;
  tensors: Map<string, AdapterTensor>;
  /** The weights file the directory holds (adapter_model.safetensors, or AdapterHub's adapter.safetensors). */
  weightsFile: string;
}

/** AdapterHub's (`adapters` library) file names: bottleneck adapters are saved its way. */
export const ADAPTERHUB_WEIGHTS_FILE = "adapter.safetensors";

export const ADAPTER_CONFIG_FILE = "adapter_config.json";
export const ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors";

function badConfig(file: string, msg: string): PeftError {
  return new PeftError("ADAPTER_BAD_CONFIG", `${file}: ${msg}`);
}

/**
 * Checks what every adapter config shares (a JSON object with a string peft_type and well-typed
 * common fields); the method checks its own keys (src/peft/<method>/). Unknown keys pass through
 * unchanged so the config round-trips.
 */
export function validateAdapterConfig(cfg: unknown, file: string): PeftAdapterConfig {
  if (cfg === null || typeof cfg !== "object" || Array.isArray(cfg)) {
    throw badConfig(file, `adapter config must be a JSON object, got ${Array.isArray(cfg) ? "array" : cfg === null ? "null" : typeof cfg}`);
  }
  let c = cfg as Record<string, unknown>;
  // AdapterHub writes no peft_type: its bottleneck adapters say so in config.architecture.
  const hub = c.config as Record<string, unknown> | undefined;
  if (c.peft_type === undefined && hub && typeof hub === "object" && hub.architecture === "bottleneck") c = { ...c, peft_type: "BOTTLENECK" };
  if (typeof c.peft_type !== "string") throw badConfig(file, `peft_type must be a string (e.g. "LORA"), got ${JSON.stringify(c.peft_type)}`);
  if (c.task_type !== undefined && c.task_type !== null && typeof c.task_type !== "string") {
    throw badConfig(file, `task_type must be a string, got ${JSON.stringify(c.task_type)}`);
  }
  if (c.base_model_name_or_path !== undefined && c.base_model_name_or_path !== null && typeof c.base_model_name_or_path !== "string") {
    throw badConfig(file, `base_model_name_or_path must be a string or null, got ${JSON.stringify(c.base_model_name_or_path)}`);
  }
  if (c.inference_mode !== undefined && typeof c.inference_mode !== "boolean") {
    throw badConfig(file, `inference_mode must be true or false, got ${JSON.stringify(c.inference_mode)}`);
  }
  return c as PeftAdapterConfig;
}

/** Writes an adapter directory (mkdir -p; each file atomic). Tensor keys must already be PEFT names. */
export async function saveAdapterDir(dir: string, config: PeftAdapterConfig, tensors: Map<string, AdapterTensor>, weightsFile = ADAPTER_WEIGHTS_FILE): Promise<void> {
  validateAdapterConfig(config, join(dir, ADAPTER_CONFIG_FILE));
  const list: SafetensorsWriteTensor[] = [];
  for (const key of [...tensors.keys()].sort()) {
    const t = tensors.get(key)!;
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (!(t.data instanceof Float32Array) || t.data.length !== n) {
      throw new PeftError("ADAPTER_SHAPE_MISMATCH", `adapter tensor ${key}: shape [${t.shape}] needs ${n} f32 values, got ${t.data?.length}`);
    }
    list.push({ name: key, dtype: "F32", shape: t.shape, data: t.data });
  }
  try {
    await mkdir(dir, { recursive: true });
  } catch (e) {
    throw new PeftError("WRITE_FAILED", `cannot create adapter directory ${dir}: ${(e as Error).message}`, { cause: e });
  }
  // Weights first, config last: a directory with a config always has its weights.
  await writeFileAtomic(join(dir, weightsFile), encodeSafetensors(list, { format: "pt" }));
  await writeFileAtomic(join(dir, ADAPTER_CONFIG_FILE), new TextEncoder().encode(JSON.stringify(config, null, 2) + "\n"));
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Reads an adapter directory: its config (common fields checked) and every tensor as f32, under its file key. */
export async function loadAdapterDir(dir: string): Promise<PeftAdapter> {
  let info;
  try {
    info = await stat(dir);
  } catch (e) {
    throw new PeftError("ADAPTER_NOT_FOUND", `adapter directory not found: ${dir}`, { cause: e });
  }
  if (!info.isDirectory()) throw new PeftError("ADAPTER_NOT_FOUND", `not an adapter directory: ${dir}`);
  const configPath = join(dir, ADAPTER_CONFIG_FILE);
  let text: string;
  try {
    text = await readFile(configPath, "utf8");
  } catch (e) {
    throw new PeftError("ADAPTER_NOT_FOUND", `${configPath} is missing (an adapter directory needs ${ADAPTER_CONFIG_FILE})`, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new PeftError("ADAPTER_BAD_CONFIG", `${configPath}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
  const config = validateAdapterConfig(json, configPath);

  let weightsFile = ADAPTER_WEIGHTS_FILE;
  if (!(await exists(join(dir, weightsFile))) && (await exists(join(dir, ADAPTERHUB_WEIGHTS_FILE)))) weightsFile = ADAPTERHUB_WEIGHTS_FILE;
  const weightsPath = join(dir, weightsFile);
  if (!(await exists(weightsPath))) {
    const bin = join(dir, "adapter_model.bin");
    if (await exists(bin)) {
      throw new PeftError(
        "ADAPTER_UNSUPPORTED_FORMAT",
        `${bin} is a PyTorch pickle, which is unsupported (it can run code); convert it to ${ADAPTER_WEIGHTS_FILE} ` +
          `(e.g. load it with PEFT and save_pretrained(..., safe_serialization=True))`,
      );
    }
    throw new PeftError("ADAPTER_NOT_FOUND", `${weightsPath} is missing (an adapter directory needs ${ADAPTER_WEIGHTS_FILE})`);
  }
  const st = await readSafetensors(weightsPath, undefined, ADAPTER_SAFETENSORS_LIMITS);
  const tensors = new Map<string, AdapterTensor>();
  const pause = eventLoopYielder(); // a server validating a big upload keeps answering meanwhile
  try {
    for (const [key, t] of st.tensors) {
      if (!["F32", "F16", "BF16", "F64"].includes(t.dtype)) {
        throw new PeftError("ADAPTER_BAD_TENSOR", `${weightsPath}: tensor ${key} has dtype ${t.dtype}; adapter tensors must be floats`);
      }
      tensors.set(key, { shape: [...t.shape], data: await st.readF32(key) });
      await pause();
    }
  } finally {
    await st.close();
  }
  return { config, tensors, weightsFile };
}

