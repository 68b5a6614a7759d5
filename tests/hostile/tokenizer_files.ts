/**
 * tokenizer.json files made from the shared real vocabularies: the GPT-2 GGUF vocab as a
 * byte-level BPE tokenizer.json (vocab, merges, ByteLevel pre-tokenizer and decoder, as
 * transformers writes GPT-2's), and stories260K's SentencePiece vocab as a Llama-2 style one
 * (tests/tokenizer/spm_json_fixture.ts).
 */
import { readGGUF } from "../../src/io/gguf.ts";
import { SHARED, STORIES } from "../helpers.ts";
import { spmTokenizerJson } from "../tokenizer/spm_json_fixture.ts";

export async function gpt2TokenizerJson(): Promise<Record<string, unknown>> {
  const g = await readGGUF(`${SHARED}tokenizers/ggml-vocab-gpt-2.gguf`);
  const tokens = g.get<string[]>("tokenizer.ggml.tokens")!;
  const merges = g.get<string[]>("tokenizer.ggml.merges")!;
  await g.close();
  const vocab: Record<string, number> = {};
  tokens.forEach((t, i) => (vocab[t] = i));
  const endOfText = tokens.length - 1;
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [{ id: endOfText, content: tokens[endOfText], single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "", fuse_unk: false, byte_fallback: false, vocab, merges },
  };
}

export async function storiesTokenizerJson(): Promise<Record<string, unknown>> {
  const g = await readGGUF(STORIES);
  const json = JSON.parse(spmTokenizerJson(g, "legacy"));
  await g.close();
  return json;
}
