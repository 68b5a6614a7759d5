/**
 * End-of-generation tokens per vocabulary, as llama.cpp decides them (llama-vocab.cpp
 * special_eog_ids): the EOS, the EOT / EOM ids a GGUF names (tokenizer.ggml.eot_token_id,
 * eom_token_id), and tokens spelled like the families' turn ends — Llama 3's <|eot_id|> and
 * <|eom_id|>, Qwen2's <|im_end|> and <|endoftext|>, Phi-3's <|end|> — plus, for HF directories,
 * generation_config.json's eos_token_id (a number or a list, as transformers' generate() stops).
 */
import { PeftError } from "../errors.ts";

/** Token texts llama.cpp treats as end of generation (the subset these families use). */
export const EOG_TEXTS: readonly string[] = [
  "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<|endoftext|>", "<|end_of_text|>", "<end_of_turn>", "<EOT>",
];

/** The given ids (those >= 0) and every token whose text is in EOG_TEXTS, sorted, unique. */
export function endOfGenerationIds(tokens: readonly string[], ids: readonly number[]): number[] {
  const out = new Set(ids.filter((id) => id >= 0));
  const texts = new Set(EOG_TEXTS);
  tokens.forEach((t, id) => {
    if (texts.has(t)) out.add(id);
  });
  return [...out].sort((a, b) => a - b);
}

/** generation_config.json's eos_token_id (number, list or absent) as ids in the vocabulary, else one error naming the file. */
export function generationConfigEosIds(text: string, file: string, vocabSize: number): number[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new PeftError("TOKENIZER_BAD_CONFIG", `${file}: not valid JSON (${(e as Error).message})`);
  }
  const v = (json as Record<string, unknown> | null)?.eos_token_id;
  if (v === undefined || v === null) return [];
  const ids = Array.isArray(v) ? v : [v];
  for (const id of ids) {
    if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= vocabSize) {
      throw new PeftError("TOKENIZER_BAD_CONFIG", `${file}: eos_token_id ${JSON.stringify(id)?.slice(0, 30)} is not a token id of the vocabulary (0..${vocabSize - 1})`);
    }
  }
  return ids as number[];
}
