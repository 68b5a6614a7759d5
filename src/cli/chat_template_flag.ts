/** --chat-template <file.jinja|name>, for train ({"messages"} data) and serve (chat requests). */
import { readFile } from "node:fs/promises";
import { PeftError } from "../errors.ts";
import { NAMED_CHAT_TEMPLATES } from "../tokenizer/mod.ts";
import type { Flag } from "./flags.ts";

const NAMES = Object.keys(NAMED_CHAT_TEMPLATES);

export function chatTemplateFlag(group: string, use: string): Flag & { type: "string" } {
  return {
    type: "string", value: `<file.jinja|${NAMES.join("|")}>`, defaultText: "the model's", group,
    description: `chat template ${use}: a Jinja file, or plain (serve's fallback for models without one: "role: content" lines) or chatml`,
  };
}

/** The Jinja source a --chat-template value names: a named template, else a file. */
export async function resolveChatTemplate(v: string | undefined): Promise<string | undefined> {
  if (v === undefined) return undefined;
  if (Object.hasOwn(NAMED_CHAT_TEMPLATES, v)) return NAMED_CHAT_TEMPLATES[v];
  try {
    return await readFile(v, "utf8");
  } catch {
    throw new PeftError("FILE_NOT_FOUND", `--chat-template ${v}: no such file, and not one of ${NAMES.join(", ")}`);
  }
}
