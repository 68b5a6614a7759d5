/**
 * One error family for everything a user can get wrong: a file, a field, a parameter.
 * `code` is stable and machine-readable (e.g. GGUF_TRUNCATED); the message names the thing.
 */
export class PeftError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PeftError";
    this.code = code;
  }
}

/** Throws a PeftError with `code` unless `cond` holds. */
export function check(cond: unknown, code: string, message: string | (() => string)): asserts cond {
  if (!cond) throw new PeftError(code, typeof message === "function" ? message() : message);
}
