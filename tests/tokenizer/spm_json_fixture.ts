/**
 * A SentencePiece-style (Llama-2 / Mistral / TinyLlama) tokenizer.json built from the Llama
 * GGUF vocab in shared/ exactly as transformers' LlamaConverter builds it from
 * tokenizer.model: the vocab in id order, merges from SentencePieceExtractor (every split of
 * every piece into two vocab pieces, ordered by the merged piece's score, ties by the pieces'
 * ids), BPE with byte_fallback + fuse_unk, and the normalizer / pre_tokenizer / decoder /
 * post_processor of the legacy (Prepend + Replace) or the Metaspace (legacy=false) form.
 */
import type { GgufFile } from "../../src/io/gguf.ts";

export type SpmJsonStyle =
  /** Llama-2 / Mistral / TinyLlama files: normalizer Sequence[Prepend, Replace], no pre_tokenizer. */
  | "legacy"
  /** legacy=false conversions: Metaspace pre_tokenizer (prepend_scheme, split). */
  | { prependScheme: "first" | "always" | "never"; split: boolean };

export function spmTokenizerJson(g: GgufFile, style: SpmJsonStyle): string {
  const tokens = g.get<string[]>("tokenizer.ggml.tokens")!;
  const scores = g.get<number[]>("tokenizer.ggml.scores")!;
  const vocab: Record<string, number> = Object.create(null);
  tokens.forEach((t, i) => {
    if (!(t in vocab)) vocab[t] = i;
  });
  // SentencePieceExtractor.extract(vocab_scores): merges for each piece, stable-sorted by score.
  const merges: Array<[string, string, number]> = [];
  tokens.forEach((piece, i) => {
    const local: Array<[string, string, number]> = [];
    const chars = Array.from(piece);
    for (let k = 1; k < chars.length; k++) {
      const l = chars.slice(0, k).join(""), r = chars.slice(k).join("");
      if (l in vocab && r in vocab) local.push([l, r, scores[i]]);
    }
    local.sort((a, b) => vocab[a[0]] - vocab[b[0]] || vocab[a[1]] - vocab[b[1]]);
    merges.push(...local);
  });
  merges.sort((a, b) => b[2] - a[2]); // Array.prototype.sort is stable, like Python's sorted
  const special = (id: number) => ({ id, content: tokens[id], single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const meta = style === "legacy" ? null : { type: "Metaspace", replacement: "\u2581", prepend_scheme: style.prependScheme, split: style.split };
  return JSON.stringify({
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [special(0), special(1), special(2)],
    normalizer: style === "legacy"
      ? { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "\u2581" }, { type: "Replace", pattern: { String: " " }, content: "\u2581" }] }
      : null,
    pre_tokenizer: meta,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "<s>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: style === "legacy"
      ? {
        type: "Sequence",
        decoders: [
          { type: "Replace", pattern: { String: "\u2581" }, content: " " },
          { type: "ByteFallback" },
          { type: "Fuse" },
          { type: "Strip", content: " ", start: 1, stop: 0 },
        ],
      }
      : meta,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<unk>",
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges: merges.map(([l, r]) => [l, r]),
    },
  });
}
