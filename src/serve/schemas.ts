/**
 * Request bodies of the OpenAI-compatible endpoints, validated strictly with zod: every field is
 * typed and ranged; unknown fields are refused; OpenAI fields this server does not implement are
 * accepted only at their neutral value (e.g. presence_penalty 0, n 1).
 */
import { z } from "zod";

const nullish = <T extends z.ZodType>(t: T) => t.nullable().optional();

const sampling = {
  model: z.string().min(1).max(200),
  max_tokens: nullish(z.number().int().min(1).max(1_000_000)),
  temperature: nullish(z.number().min(0).max(2)),
  top_p: nullish(z.number().gt(0).max(1)),
  top_k: nullish(z.number().int().min(0).max(1_000_000)),
  seed: nullish(z.number().int().min(-(2 ** 31)).max(2 ** 32 - 1)),
  stop: nullish(z.union([z.string().min(1).max(256), z.array(z.string().min(1).max(256)).max(4)])),
  n: nullish(z.literal(1, { error: "only n=1 is supported" })),
  stream: nullish(z.boolean()),
  stream_options: nullish(z.object({ include_usage: z.boolean().optional() }).strict()),
  presence_penalty: nullish(z.literal(0, { error: "only presence_penalty=0 is supported" })),
  frequency_penalty: nullish(z.literal(0, { error: "only frequency_penalty=0 is supported" })),
  logit_bias: nullish(z.object({}).strict()),
  user: nullish(z.string().max(256)),
  /** Adapters combined for this request with scales (llama.cpp server's `lora` field; ids are adapter names). */
  lora: nullish(z.array(z.object({ id: z.string().min(1).max(200), scale: z.number().min(-100).max(100) }).strict()).min(1).max(8)),
};

export const CompletionRequest = z.object({
  ...sampling,
  prompt: z.union([
    z.string().max(1_000_000),
    z.array(z.string().max(1_000_000)).length(1, { error: "a prompt array must hold exactly one prompt (batched prompts are not supported)" }),
    z.array(z.number().int().min(0)).min(1).max(1_000_000),
  ]),
  echo: nullish(z.literal(false, { error: "echo is not supported" })),
  best_of: nullish(z.literal(1, { error: "only best_of=1 is supported" })),
  logprobs: nullish(z.literal(0, { error: "logprobs are not supported" })),
  suffix: z.null().optional(),
}).strict();
export type CompletionRequest = z.infer<typeof CompletionRequest>;

const textPart = z.object({ type: z.literal("text"), text: z.string().max(1_000_000) }).strict();

export const ChatRequest = z.object({
  ...sampling,
  max_completion_tokens: nullish(z.number().int().min(1).max(1_000_000)),
  messages: z.array(
    z.object({
      role: z.enum(["system", "developer", "user", "assistant"]),
      content: z.union([z.string().max(1_000_000), z.array(textPart).max(64)]),
      name: z.string().max(64).optional(),
    }).strict(),
  ).min(1).max(1024),
  logprobs: nullish(z.literal(false, { error: "logprobs are not supported" })),
  top_logprobs: nullish(z.literal(0)),
}).strict();
export type ChatRequest = z.infer<typeof ChatRequest>;

export const AdapterPathRequest = z.object({
  id: z.string().min(1).max(200),
  /** A PEFT directory inside the server's adapters directory (relative to it, or absolute). */
  path: z.string().min(1).max(4096),
}).strict();

/** "field.path: message" for the first issue, and the field path (OpenAI's `param`). */
export function describeIssue(err: z.ZodError): { message: string; param: string | null } {
  const issue = err.issues[0];
  const param = issue?.path.length ? issue.path.map(String).join(".") : null;
  let message = issue?.message ?? "invalid request";
  if (issue?.code === "unrecognized_keys") message = `unknown field(s): ${issue.keys.join(", ")}`;
  return { message: param ? `${param}: ${message}` : message, param };
}
