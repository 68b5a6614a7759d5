/**
 * What every method's config normalization shares: PEFT's common keys and defaults (task_type,
 * inference_mode, base_model_name_or_path, ...), target_modules / layers_to_transform, and the
 * rule for unknown keys (accepted when PEFT writes them with an inert value, kept for the
 * round-trip; otherwise an error naming the key).
 */
import { PeftError } from "../errors.ts";

/** Keys PEFT writes into adapter_config.json whose value changes nothing for us: kept as given. */
const PASSTHROUGH = new Set(["megatron_core", "qalora_group_size", "runtime_config", "revision", "auto_mapping", "peft_version"]);

/** Values that mean "feature off" in PEFT configs. */
export function isInert(v: unknown): boolean {
  if (v === null || v === false || v === undefined) return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === "object") return Object.keys(v as object).length === 0;
  return false;
}

export const COMMON_DEFAULTS = { task_type: "CAUSAL_LM", inference_mode: false, base_model_name_or_path: null } as const;

export class ConfigReader {
  /** The user's config over the defaults ({key: undefined} means the default). */
  readonly u: Record<string, unknown>;
  private readonly known: Set<string>;

  constructor(
    /** The method as users know it, for messages ("LoRA", "(IA)³"). */
    readonly method: string,
    /** Error code, e.g. LORA_CONFIG. */
    readonly code: string,
    readonly peftType: string,
    readonly user: Record<string, unknown>,
    defaults: Record<string, unknown>,
  ) {
    if (user === null || typeof user !== "object" || Array.isArray(user)) this.bad("", `must be an object, got ${JSON.stringify(user)}`);
    const all = { peft_type: peftType, ...COMMON_DEFAULTS, ...defaults };
    this.known = new Set(Object.keys(all));
    this.u = { ...all, ...user };
    for (const [k, v] of Object.entries(user)) if (v === undefined) this.u[k] = (all as Record<string, unknown>)[k];
    const t = this.u.peft_type;
    if (typeof t !== "string" || t.toUpperCase() !== peftType) this.bad("peft_type", `'${t}' is not ${peftType}`);
    if (typeof this.u.task_type !== "string") this.bad("task_type", `must be a string, got ${JSON.stringify(this.u.task_type)}`);
    this.bool("inference_mode");
    const base = this.u.base_model_name_or_path;
    if (base !== null && typeof base !== "string") this.bad("base_model_name_or_path", `must be a string or null, got ${JSON.stringify(base)}`);
  }

  bad(param: string, message: string): never {
    throw new PeftError(this.code, `${this.method} config: ${param} ${message}`);
  }

  /** Declares a key the method reads (beyond its defaults). */
  know(...keys: string[]): this {
    for (const k of keys) this.known.add(k);
    return this;
  }

  bool(key: string): boolean {
    const v = this.u[key];
    if (typeof v !== "boolean") this.bad(key, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  /** A list of module names (deduplicated, as PEFT keeps a set), a regex string, or `fallback` when null. */
  targets(key: string, fallback: string[] | string): string[] | string {
    const t = this.u[key];
    if (t === undefined || t === null) return Array.isArray(fallback) ? [...fallback] : fallback;
    if (typeof t === "string") {
      if (t === "") this.bad(key, "must not be empty");
      return t;
    }
    if (!Array.isArray(t) || !t.every((x) => typeof x === "string" && x !== "")) {
      this.bad(key, `must be a list of module names, a regex string or "all-linear", got ${JSON.stringify(t)}`);
    }
    if (t.length === 0) this.bad(key, "must not be an empty list");
    return [...new Set(t as string[])];
  }

  /** layers_to_transform: null, an index, or a list of indices (sorted, deduplicated). */
  layers(key = "layers_to_transform"): number[] | null {
    const l = this.u[key];
    if (l === undefined || l === null) return null;
    const list = typeof l === "number" ? [l] : l;
    if (!Array.isArray(list) || list.length === 0 || !list.every((x) => Number.isInteger(x) && x >= 0)) {
      this.bad(key, `must be a layer index or a non-empty list of them, got ${JSON.stringify(l)}`);
    }
    return [...new Set(list as number[])].sort((a, b) => a - b);
  }

  /** PEFT refuses layers_to_transform with a regex target_modules ("all-linear" is not a regex). */
  checkLayersWithRegex(targets: string[] | string, layers: number[] | null): void {
    if (typeof targets === "string" && layers !== null && targets !== "all-linear") {
      this.bad("layers_to_transform", "cannot be used when target_modules is a regex string (put the layer numbers in the regex)");
    }
  }

  /** Unknown keys: kept when PEFT writes them inert (or they are pure metadata), else an error naming them. */
  extras(): Record<string, unknown> {
    const extra: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(this.user)) {
      if (this.known.has(k)) continue;
      if (k === "layers_pattern" && (v === "layers" || (Array.isArray(v) && v.length === 1 && v[0] === "layers"))) {
        extra[k] = v; // llama's layer container is "layers", PEFT's own default for it
        continue;
      }
      if (!PASSTHROUGH.has(k) && !isInert(v)) this.bad(k, `is not a supported ${this.method} option (value ${JSON.stringify(v)})`);
      extra[k] = v;
    }
    return extra;
  }

  /** The common keys, normalized. */
  common(): { peft_type: string; task_type: string; inference_mode: boolean; base_model_name_or_path: string | null } {
    return {
      peft_type: this.peftType,
      task_type: this.u.task_type as string,
      inference_mode: this.u.inference_mode as boolean,
      base_model_name_or_path: this.u.base_model_name_or_path as string | null,
    };
  }
}
