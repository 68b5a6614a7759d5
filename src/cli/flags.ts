/**
 * The command line's flags, declared once per command as a table: each row gives the flag's type,
 * default, units and a one-line description, and the table yields both the parser and the --help
 * text, so adding a flag is one row. Values may start with "-" (`--lr -1e-3`, `--prompt "-x"`).
 * Every user mistake (an unknown flag, a missing or malformed value) is one PeftError with code
 * USAGE, which the CLI prints as one line and exits with code 2; an unknown flag names the
 * nearest known one.
 */
import { PeftError } from "../errors.ts";

export interface Flag {
  /** "int" and "number" are checked and converted; "bytes" takes 536870912, 512MiB, 2GiB, 1.5GB. */
  type: "string" | "number" | "int" | "boolean" | "bytes";
  /** One line for --help. */
  description: string;
  /** Placeholder in --help ("<path>"); derived from the choices or the type when absent. */
  value?: string;
  /** The value when the flag is not given (and what --help shows). */
  default?: string | number;
  /** What --help shows as the default when the value is computed elsewhere ("the model's"). */
  defaultText?: string;
  /** Units of the value, shown in --help ("tokens", "ms"). */
  units?: string;
  choices?: readonly string[];
  min?: number;
  max?: number;
  required?: boolean;
  /** Names users of other tools type (mlx-lm, transformers, llama.cpp); only used for suggestions. */
  aliases?: readonly string[];
  /** --help section. */
  group?: string;
}

export interface Command {
  name: string;
  /** One line: what the command does. */
  summary: string;
  /** The usage line after the command name, e.g. `--model <path> --prompt "text" [flags]`. */
  usage: string;
  flags: Record<string, Flag>;
  /** Describes the free arguments when the command takes any (otherwise they are an error). */
  positionals?: string;
  /** Lines printed after the flags (examples, notes). */
  notes?: readonly string[];
}

type ValueOf<F extends Flag> = F["type"] extends "boolean" ? boolean : F["type"] extends "string" ? string : number;
type Always<F extends Flag> = F extends { type: "boolean" } | { default: string | number } | { required: true } ? true : false;
/** Parsed values: present for booleans, flags with a default and required flags; else maybe undefined. */
export type FlagValues<C extends Command> = {
  [K in keyof C["flags"]]: Always<C["flags"][K]> extends true ? ValueOf<C["flags"][K]> : ValueOf<C["flags"][K]> | undefined;
};

export function usageError(message: string): PeftError {
  return new PeftError("USAGE", message);
}

/**
 * Parses `args` against the command's table; prints the help and returns null on -h/--help.
 * `file` holds values from a config file (already converted): flags on the command line win over
 * them, and they win over the defaults. `given` lists the flags the command line set.
 */
export function parseFlags<C extends Command>(
  cmd: C,
  args: readonly string[],
  file: Record<string, unknown> = {},
): { values: FlagValues<C>; positionals: string[]; given: Set<string> } | null {
  if (args.some((a) => a === "-h" || a === "--help")) {
    console.log(helpText(cmd));
    return null;
  }
  const raw = new Map<string, string | true>();
  const positionals: string[] = [];
  let previous: string | undefined; // the last flag seen, for "takes no value" hints
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    const isFlag = a.startsWith("--") ? a.length > 2 : a.startsWith("-") && a.length > 1 && !isNumeric(a);
    if (isFlag) {
      const body = a.replace(/^--?/, "");
      const eq = body.indexOf("=");
      const name = eq < 0 ? body : body.slice(0, eq);
      const flag = a.startsWith("--") && Object.hasOwn(cmd.flags, name) ? cmd.flags[name] : undefined;
      if (!flag) throw usageError(`unknown flag ${a.slice(0, a.length - body.length)}${name}${suggestion(cmd, name)}`);
      previous = name;
      if (flag.type === "boolean") {
        if (eq >= 0) throw usageError(`--${name} takes no value`);
        raw.set(name, true);
        continue;
      }
      const v = eq >= 0 ? body.slice(eq + 1) : args[++i];
      if (v === undefined) throw usageError(`--${name} needs a value: ${placeholder(flag)}`);
      raw.set(name, v);
      continue;
    }
    if (!cmd.positionals) {
      const hint = previous && cmd.flags[previous].type === "boolean" ? ` (--${previous} takes no value)` : " (flags start with --)";
      throw usageError(`unexpected argument ${JSON.stringify(a)}${hint}; see ${cmd.name} --help`);
    }
    positionals.push(a);
  }
  const values: Record<string, unknown> = {};
  for (const [name, flag] of Object.entries(cmd.flags)) {
    const v = raw.get(name);
    if (v !== undefined) values[name] = flag.type === "boolean" ? true : convertValue(`--${name}`, flag, v as string);
    else if (file[name] !== undefined) values[name] = file[name];
    else if (flag.type === "boolean") values[name] = false;
    else if (flag.default !== undefined) values[name] = flag.default;
    else if (flag.required) throw usageError(`--${name} is required: ${placeholder(flag)} (see ${cmd.name} --help)`);
  }
  return { values: values as FlagValues<C>, positionals, given: new Set(raw.keys()) };
}

function isNumeric(s: string): boolean {
  return s.trim() !== "" && Number.isFinite(Number(s));
}

const BYTE_UNITS: Record<string, number> = { b: 1, kb: 1e3, kib: 1024, mb: 1e6, mib: 2 ** 20, gb: 1e9, gib: 2 ** 30 };

/**
 * A flag's value from its text, checked against its type, range and choices; `label` names it in
 * the error (`--lr` on the command line, `learning_rate` in a config file).
 */
export function convertValue(label: string, flag: Flag, v: string): string | number {
  let out: string | number = v;
  if (flag.type === "bytes") {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$/i.exec(v);
    if (!m) throw usageError(`${label}: ${JSON.stringify(v)} is not a size (e.g. 536870912, 512MiB, 2GiB)`);
    out = Math.floor(Number(m[1]) * BYTE_UNITS[(m[2] ?? "B").toLowerCase()]);
  } else if (flag.type === "number" || flag.type === "int") {
    if (!isNumeric(v)) throw usageError(`${label} must be a number, got ${JSON.stringify(v)}`);
    out = Number(v);
    if (flag.type === "int" && !Number.isInteger(out)) throw usageError(`${label} must be a whole number, got ${v}`);
  }
  if (typeof out === "number") {
    if (flag.min !== undefined && out < flag.min) throw usageError(`${label} must be >= ${flag.min}, got ${v}`);
    if (flag.max !== undefined && out > flag.max) throw usageError(`${label} must be <= ${flag.max}, got ${v}`);
  }
  if (flag.choices && !flag.choices.includes(v)) throw usageError(`${label} must be one of ${flag.choices.join(", ")}, got ${JSON.stringify(v)}`);
  return out;
}

function placeholder(flag: Flag): string {
  if (flag.value) return flag.value;
  if (flag.choices) return `<${flag.choices.join("|")}>`;
  return flag.type === "int" || flag.type === "number" ? "<n>" : flag.type === "bytes" ? "<size>" : "<text>";
}

// ---------------------------------------------------------------- suggestions

/** Edit distance (insertions, deletions, substitutions). */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

/** " (did you mean --lr?)" for the nearest flag (an alias, a close spelling, a prefix), else a pointer to --help. */
function suggestion(cmd: Command, typed: string): string {
  const t = typed.toLowerCase().replace(/_/g, "-");
  let best: { name: string; score: number } | undefined;
  for (const [name, flag] of Object.entries(cmd.flags)) {
    let score = editDistance(t, name);
    if (flag.aliases?.includes(t)) score = 0;
    else if (name.startsWith(t) || t.startsWith(name)) score = Math.min(score, 1);
    if (score <= Math.max(2, Math.floor(name.length / 3)) && (!best || score < best.score)) best = { name, score };
  }
  return best ? ` (did you mean --${best.name}?)` : `; see ${cmd.name} --help`;
}

// ---------------------------------------------------------------- help

/** The --help text: summary, usage, flags by group (placeholder, description, default, units), notes. */
export function helpText(cmd: Command): string {
  const rows: { group: string; left: string; right: string }[] = [];
  for (const [name, flag] of Object.entries(cmd.flags)) {
    const left = `--${name}${flag.type === "boolean" ? "" : ` ${placeholder(flag)}`}`;
    const d = flag.default;
    const shown = flag.defaultText ?? (typeof d === "string" && (d === "" || /\s/.test(d)) ? JSON.stringify(d) : d?.toString());
    const extra = [flag.units, flag.required ? "required" : shown === undefined ? undefined : `default ${shown}`].filter(Boolean).join(", ");
    rows.push({ group: flag.group ?? "options", left, right: extra ? `${flag.description} (${extra})` : flag.description });
  }
  rows.push({ group: "options", left: "-h, --help", right: "print this help" });
  const width = Math.min(34, Math.max(...rows.map((r) => r.left.length)) + 2);
  const lines = [`${cmd.name}: ${cmd.summary}`, "", `usage: ${cmd.name} ${cmd.usage}`];
  if (cmd.positionals) lines.push(`  ${cmd.positionals}`);
  for (const group of [...new Set(rows.map((r) => r.group))]) {
    lines.push("", `${group}:`);
    for (const r of rows.filter((x) => x.group === group)) {
      lines.push(r.left.length + 2 > width ? `  ${r.left}\n  ${" ".repeat(width)}${r.right}` : `  ${r.left.padEnd(width)}${r.right}`);
    }
  }
  if (cmd.notes?.length) lines.push("", ...cmd.notes);
  return lines.join("\n");
}
