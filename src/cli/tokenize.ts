/**
 * `tokenize --vocab <gguf|tokenizer.json> [--no-special] [--no-parse-special] [--decode] "text"`:
 * prints the ids (and each token) of the text, or with --decode the text of space-separated ids.
 */
import { PeftError } from "../errors.ts";
import { Tokenizer } from "../tokenizer/mod.ts";
import { type Command, parseFlags } from "./flags.ts";

export const TOKENIZE = {
  name: "tokenize",
  summary: "print the token ids (and each token) of a text, or with --decode the text of ids",
  usage: '--vocab <model.gguf|tokenizer.json> [flags] "text"',
  positionals: 'text: what to encode (several arguments are joined with spaces); with --decode, ids like "1 2 3"',
  flags: {
    vocab: { type: "string", required: true, value: "<model.gguf|tokenizer.json>", aliases: ["model", "tokenizer"], description: "vocabulary: a GGUF file's tokenizer or a Hugging Face tokenizer.json" },
    "no-special": { type: "boolean", description: "do not add BOS/EOS" },
    "no-parse-special": { type: "boolean", description: "treat special-token text like </s> in the input as plain text" },
    decode: { type: "boolean", description: "decode the ids given as text instead of encoding" },
    json: { type: "boolean", description: "print the ids as one JSON array" },
  },
} as const satisfies Command;

export async function main(args: string[]): Promise<void> {
  const f = parseFlags(TOKENIZE, args);
  if (!f) return;
  const { values, positionals } = f;
  const tok = await Tokenizer.fromFile(values.vocab);
  const text = positionals.join(" ");
  if (values.decode) {
    const ids = text.trim().split(/[\s,]+/).filter(Boolean).map((s) => {
      const n = Number(s);
      if (!Number.isInteger(n)) throw new PeftError("USAGE", `tokenize --decode: ${JSON.stringify(s)} is not a token id`);
      return n;
    });
    console.log(tok.decode(ids));
    return;
  }
  const ids = tok.encode(text, { addSpecial: !values["no-special"], parseSpecial: !values["no-parse-special"] });
  if (values.json) {
    console.log(JSON.stringify(ids));
    return;
  }
  console.log(ids.join(" "));
  console.log(ids.map((id) => `${id}\t${JSON.stringify(tok.idToToken(id))}`).join("\n"));
  console.error(`${ids.length} tokens`);
}
