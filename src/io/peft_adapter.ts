/**
 * Hugging Face PEFT adapters: `adapter_config.json` + `adapter_model.safetensors`, read and
 * written as bytes <-> host tensors, whatever the method: as a directory (path), or as the two
 * files' bytes / Blobs / Files (a web page: picked files in, downloads out). Tensors keep their
 * on-disk names; which names and shapes a method expects, and the q/k row order, are src/peft's
 * business.
 */
import { join, mkdir, readFile, stat } from "../util/host.ts";
import { PeftError } from "../errors.ts";
import { type ByteInput, eventLoopYielder, inputName, writeFileAtomic } from "./bytes.ts";
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
  /**
   * Where the config and the weights came from (paths or file names), for messages. A directory's
   * weights file is adapter_model.safetensors, or AdapterHub's adapter.safetensors.
   */
  configName: string;
  weightsName: string;
}

/** AdapterHub's (`adapters` library) file names: bottleneck adapters are saved its way. */
export const ADAPTERHUB_WEIGHTS_FILE = "adapter.safetensors";

export const ADAPTER_CONFIG_FILE = "adapter_config.json";
export const ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors";

/** A file's contents without a path: bytes, or a Blob / File. */
export type FileContents = Exclude<ByteInput, string>;

/**
 * An adapter's two files as contents, under their file names (e.g. files a page's user picked):
 * the config and the weights, adapter_model.safetensors (PEFT) or adapter.safetensors (AdapterHub's
 * bottleneck adapters; used only without adapter_model.safetensors, as in a directory).
 */
export interface AdapterFiles {
  "adapter_config.json": FileContents;
  "adapter_model.safetensors"?: FileContents;
  "adapter.safetensors"?: FileContents;
}

/**
 * The two files' bytes, as saving without a directory returns them (ready to download, zip or load
 * back), under the names a directory save gives them: adapter_config.json and the method's weights
 * file (adapter_model.safetensors; adapter.safetensors for AdapterHub's bottleneck adapters).
 */
export interface AdapterFileBytes {
  "adapter_config.json": Uint8Array<ArrayBuffer>;
  [weightsFile: string]: Uint8Array<ArrayBuffer>;
}

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

/**
 * The two files' bytes for a config and tensors (keys must already be PEFT names), under their
 * file names: adapter_config.json and `weightsFile`. `where` labels messages.
 */
export function encodeAdapterFiles(
  config: PeftAdapterConfig, tensors: Map<string, AdapterTensor>, where = ADAPTER_CONFIG_FILE, weightsFile = ADAPTER_WEIGHTS_FILE,
): AdapterFileBytes {
  const parts = encodeParts(config, tensors, where);
  return { [ADAPTER_CONFIG_FILE]: parts.config, [weightsFile]: concat(parts.weights) };
}

/** The config's bytes and the safetensors file as chunks (a directory save writes them without joining). */
function encodeParts(config: PeftAdapterConfig, tensors: Map<string, AdapterTensor>, where: string) {
  validateAdapterConfig(config, where);
  const list: SafetensorsWriteTensor[] = [];
  for (const key of [...tensors.keys()].sort()) {
    const t = tensors.get(key)!;
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (!(t.data instanceof Float32Array) || t.data.length !== n) {
      throw new PeftError("ADAPTER_SHAPE_MISMATCH", `adapter tensor ${key}: shape [${t.shape}] needs ${n} f32 values, got ${t.data?.length}`);
    }
    list.push({ name: key, dtype: "F32", shape: t.shape, data: t.data });
  }
  return { config: new TextEncoder().encode(JSON.stringify(config, null, 2) + "\n"), weights: encodeSafetensors(list, { format: "pt" }) };
}

function concat(chunks: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** Writes an adapter directory (mkdir -p; each file atomic). Tensor keys must already be PEFT names. */
export async function saveAdapterDir(dir: string, config: PeftAdapterConfig, tensors: Map<string, AdapterTensor>, weightsFile = ADAPTER_WEIGHTS_FILE): Promise<void> {
  const parts = encodeParts(config, tensors, join(dir, ADAPTER_CONFIG_FILE));
  try {
    await mkdir(dir, { recursive: true });
  } catch (e) {
    throw new PeftError("WRITE_FAILED", `cannot create adapter directory ${dir}: ${(e as Error).message}`, { cause: e });
  }
  // Weights first, config last: a directory with a config always has its weights.
  await writeFileAtomic(join(dir, weightsFile), parts.weights);
  await writeFileAtomic(join(dir, ADAPTER_CONFIG_FILE), parts.config);
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
  const config = parseAdapterConfig(text, configPath);

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
  return { config, tensors: await readAdapterTensors(weightsPath), configName: configPath, weightsName: weightsPath };
}

/**
 * Reads an adapter from its two files' contents (bytes, Blobs or Files): the config (common fields
 * checked) and every tensor as f32. Messages name the Files' own names, else the PEFT file names.
 */
export async function readAdapterFiles(files: AdapterFiles): Promise<PeftAdapter> {
  if (files === null || typeof files !== "object") {
    throw new PeftError("ADAPTER_NOT_FOUND", `an adapter is a directory path or {"${ADAPTER_CONFIG_FILE}", "${ADAPTER_WEIGHTS_FILE}"} file contents, got ${String(files)}`);
  }
  const weightsKey = files[ADAPTER_WEIGHTS_FILE] === undefined && files[ADAPTERHUB_WEIGHTS_FILE] !== undefined ? ADAPTERHUB_WEIGHTS_FILE : ADAPTER_WEIGHTS_FILE;
  for (const key of [ADAPTER_CONFIG_FILE, weightsKey] as const) {
    const v = files[key] as unknown;
    if (!(v instanceof Uint8Array || v instanceof ArrayBuffer || (typeof Blob !== "undefined" && v instanceof Blob))) {
      throw new PeftError(
        "ADAPTER_NOT_FOUND",
        `${key} is ${v === undefined ? "missing" : `not bytes, a Blob or a File (${Object.prototype.toString.call(v)})`}: an adapter needs both ${ADAPTER_CONFIG_FILE} and ${ADAPTER_WEIGHTS_FILE} (or AdapterHub's ${ADAPTERHUB_WEIGHTS_FILE})`,
      );
    }
  }
  const configFile = files[ADAPTER_CONFIG_FILE], weightsFile = files[weightsKey]!;
  const configName = inputName(configFile, ADAPTER_CONFIG_FILE), weightsName = inputName(weightsFile, weightsKey);
  const configBytes = configFile instanceof Uint8Array ? configFile : configFile instanceof ArrayBuffer ? new Uint8Array(configFile) : new Uint8Array(await configFile.arrayBuffer());
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(configBytes);
  } catch (e) {
    throw new PeftError("ADAPTER_BAD_CONFIG", `${configName}: not UTF-8 text (is it the ${ADAPTER_CONFIG_FILE}?)`, { cause: e });
  }
  const config = parseAdapterConfig(text, configName);
  return { config, tensors: await readAdapterTensors(weightsFile, weightsName), configName, weightsName };
}

function parseAdapterConfig(text: string, configName: string): PeftAdapterConfig {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new PeftError("ADAPTER_BAD_CONFIG", `${configName}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
  return validateAdapterConfig(json, configName);
}

/** Every tensor of an adapter's safetensors as f32, under its file key (float dtypes only). */
async function readAdapterTensors(input: ByteInput, name?: string): Promise<Map<string, AdapterTensor>> {
  const st = await readSafetensors(input, name, ADAPTER_SAFETENSORS_LIMITS);
  const weightsPath = st.name;
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
  return tensors;
}

