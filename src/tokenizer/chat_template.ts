/**
 * Chat templates: the Jinja source from tokenizer.chat_template (GGUF) or chat_template
 * (tokenizer_config.json), rendered with @huggingface/jinja as transformers does.
 */
import { Template } from "@huggingface/jinja";
import { PeftError } from "../errors.ts";

export interface ChatMessage {
  role: string;
  content: string;
  [key: string]: unknown;
}

export interface ChatTemplateOptions {
  /** Append the assistant turn opener. Default true. */
  addGenerationPrompt?: boolean;
  /** Extra template variables (tools, enable_thinking, ...). */
  extra?: Record<string, unknown>;
}

/**
 * Templates for models whose vocabulary has none, chosen by name (CLI: --chat-template <name>).
 * "plain" is what the server falls back to (src/serve/engine.ts defaultChatPrompt): BOS, then
 * "role: content\n" per message, then "assistant:"; "chatml" is ChatML (<|im_start|>role ...).
 */
export const NAMED_CHAT_TEMPLATES: Readonly<Record<string, string>> = {
  plain: "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}",
  chatml: "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
};

const compiled = new Map<string, Template>();

export function renderChatTemplate(
  source: string,
  messages: ChatMessage[],
  tokens: { bos: string; eos: string },
  options: ChatTemplateOptions = {},
  where = "chat template",
): string {
  if (!Array.isArray(messages)) throw new PeftError("CHAT_BAD_MESSAGES", "applyChatTemplate: messages must be an array");
  messages.forEach((m, i) => {
    if (typeof m?.role !== "string" || typeof m?.content !== "string") {
      throw new PeftError("CHAT_BAD_MESSAGES", `applyChatTemplate: messages[${i}] needs string role and content`);
    }
  });
  let t = compiled.get(source);
  if (!t) {
    try {
      t = new Template(source);
    } catch (e) {
      throw new PeftError("CHAT_TEMPLATE_SYNTAX", `${where}: cannot parse the Jinja template (${(e as Error).message})`);
    }
    compiled.set(source, t);
  }
  try {
    return t.render({
      ...options.extra,
      messages,
      add_generation_prompt: options.addGenerationPrompt ?? true,
      bos_token: tokens.bos,
      eos_token: tokens.eos,
    });
  } catch (e) {
    throw new PeftError("CHAT_TEMPLATE_RENDER", `${where}: rendering failed (${(e as Error).message})`);
  }
}
