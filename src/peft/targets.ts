/**
 * Which block linears a method adapts (LoRA, (IA)³, BitFit, partial), decided exactly as HF PEFT decides
 * (tuners_utils.check_target_module_exists) over llama's module keys
 * `model.layers.{i}.self_attn.q_proj` ... `model.layers.{i}.mlp.down_proj`:
 *  - a list: a key matches when it equals a name or ends with "." + name;
 *  - a string: a regex that must match the whole key (Python's re.fullmatch);
 *  - "all-linear": every block linear (never lm_head, as PEFT excludes the output layer).
 * layers_to_transform then keeps only the listed layer indices.
 */
import { PeftError } from "../errors.ts";
import { HF_MODULE_PARENT, type LlamaConfig, linearModules, linearShape } from "../model/config.ts";

/** The target keys every linear-targeting method shares (PEFT's names). */
export interface TargetSpec {
  target_modules: string[] | string;
  layers_to_transform: number[] | null;
}

/** Names the method in messages and error codes (LoRA -> LORA_UNKNOWN_TARGET). */
export interface TargetLabel {
  name: string;
  code: string;
}
const LORA_LABEL: TargetLabel = { name: "LoRA", code: "LORA" };

export interface LoraTarget {
  layer: number;
  /** HF module name: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj. */
  module: string;
  inFeatures: number;
  outFeatures: number;
}

/** HF/PEFT module key of a block linear, e.g. "model.layers.3.self_attn.q_proj". */
export function moduleKey(layer: number, module: string): string {
  return `model.layers.${layer}.${HF_MODULE_PARENT[module]}.${module}`;
}

/** Modules that exist in llama but cannot carry LoRA here, with the reason. */
const UNSUPPORTED: Record<string, string> = {
  lm_head: "LoRA on the output layer is not supported (PEFT also leaves it out of all-linear)",
  embed_tokens: "LoRA on the embedding is not supported",
};

function available(model: LlamaConfig): string {
  return linearModules(model).join(", ");
}

/** Compiles a PEFT regex target with fullmatch semantics. */
function fullmatch(pattern: string, label: TargetLabel): RegExp {
  try {
    return new RegExp(`^(?:${pattern})$`);
  } catch (e) {
    throw new PeftError(`${label.code}_CONFIG`, `${label.name} config: target_modules regex ${JSON.stringify(pattern)} is invalid: ${(e as Error).message}`);
  }
}

/** The adapted linears in layer order, then in the family's linear order within a layer. */
export function resolveTargets(cfg: TargetSpec, model: LlamaConfig, label: TargetLabel = LORA_LABEL): LoraTarget[] {
  const keys: { layer: number; module: string; key: string }[] = [];
  for (let layer = 0; layer < model.nLayers; layer++) {
    for (const module of linearModules(model)) keys.push({ layer, module, key: moduleKey(layer, module) });
  }

  let matches: (key: string) => boolean;
  const tm = cfg.target_modules;
  if (tm === "all-linear") {
    matches = () => true;
  } else if (typeof tm === "string") {
    const re = fullmatch(tm, label);
    matches = (key) => re.test(key);
  } else {
    for (const name of tm) {
      const reason = UNSUPPORTED[name.split(".").pop()!];
      if (reason) throw new PeftError(`${label.code}_UNKNOWN_TARGET`, `${label.name} target_modules: '${name}': ${reason.replace("LoRA", label.name)}`);
      if (!keys.some(({ key }) => key === name || key.endsWith(`.${name}`))) {
        throw new PeftError(
          `${label.code}_UNKNOWN_TARGET`,
          `${label.name} target_modules: '${name}' matches no module of this model; available module names: ${available(model)}`,
        );
      }
    }
    const names = new Set(tm);
    matches = (key) => names.has(key) || tm.some((name) => key.endsWith(`.${name}`));
  }

  const layers = cfg.layers_to_transform;
  if (layers) {
    const outOfRange = layers.filter((l) => l >= model.nLayers);
    if (outOfRange.length) {
      throw new PeftError(
        `${label.code}_CONFIG`,
        `${label.name} config: layers_to_transform ${JSON.stringify(outOfRange)} out of range: the model has layers 0..${model.nLayers - 1}`,
      );
    }
  }
  const keep = layers ? new Set(layers) : null;

  const out: LoraTarget[] = [];
  for (const { layer, module, key } of keys) {
    if (keep && !keep.has(layer)) continue;
    if (!matches(key)) continue;
    const [outFeatures, inFeatures] = linearShape(model, module);
    out.push({ layer, module, inFeatures, outFeatures });
  }
  if (out.length === 0) {
    throw new PeftError(
      `${label.code}_NO_TARGET`,
      `${label.name} target_modules ${JSON.stringify(tm)} matched no module of this model (keys look like ${moduleKey(0, linearModules(model)[0])}); ` +
        `available module names: ${available(model)}`,
    );
  }
  return out;
}

/** Trainable parameters: r·(in + out) per adapted linear, plus one magnitude per output row with DoRA. */
export function countTrainable(targets: readonly LoraTarget[], r: number, opts: { useDora?: boolean } = {}): number {
  let n = 0;
  for (const t of targets) n += r * (t.inFeatures + t.outFeatures) + (opts.useDora ? t.outFeatures : 0);
  return n;
}

/**
 * PEFT's print_trainable_parameters line:
 * f"trainable params: {trainable:,d} || all params: {all:,d} || trainable%: {100 * trainable / all:.4f}".
 * `all` counts base and adapter parameters together, as PEFT does.
 */
export function formatTrainableParameters(trainable: number, all: number): string {
  return `trainable params: ${thousands(trainable)} || all params: ${thousands(all)} || trainable%: ${pythonFixed(100 * trainable / all, 4)}`;
}

/** Python's "{:,d}". */
function thousands(n: number): string {
  if (!Number.isSafeInteger(n)) throw new PeftError("BAD_ARGUMENT", `parameter count must be an integer, got ${n}`);
  const s = Math.abs(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return n < 0 ? `-${s}` : s;
}

/**
 * Python's f"{x:.{digits}f}": rounds the exact binary value half-to-even. JS toFixed rounds exact
 * ties up instead (0.03125 -> "0.0313" where Python prints "0.0312"), so round the decimal
 * expansion ourselves; toFixed(100) is exact for the doubles a percentage can be.
 */
function pythonFixed(x: number, digits: number): string {
  if (!Number.isFinite(x)) return x !== x ? "nan" : x > 0 ? "inf" : "-inf";
  const neg = x < 0 || Object.is(x, -0);
  const [ip, fp] = Math.abs(x).toFixed(100).split(".");
  const keep = ip + fp.slice(0, digits);
  const rest = fp.slice(digits);
  const tie = /^50*$/.test(rest);
  const up = rest[0] > "5" || (rest[0] === "5" && !tie) || (tie && Number(keep[keep.length - 1]) % 2 === 1);
  const s = (BigInt(keep) + (up ? 1n : 0n)).toString().padStart(digits + 1, "0");
  const out = `${s.slice(0, s.length - digits)}.${s.slice(s.length - digits)}`;
  return neg ? `-${out}` : out;
}
