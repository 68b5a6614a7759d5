/**
 * `tokenize --vocab <gguf|tokenizer.json> [--no-special] [--no-parse-special] [--decode] "text"`:
 * prints the ids (and each token) of the text, or with --decode the text of space-separated ids.
 */
import { parseArgs } from "node:util";
import { PeftError } from "../errors.ts";
import { Tokenizer } from "../tokenizer/mod.ts";

export async function main(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      vocab: { type: "string" },
      "no-special": { type: "boolean", default: false },
      "no-parse-special": { type: "boolean", default: false },
      decode: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log('usage: tokenize --vocab <model.gguf|tokenizer.json> [--no-special] [--no-parse-special] [--json] "text"\n       tokenize --vocab <...> --decode "1 2 3"');
    return;
  }
  if (!values.vocab) throw new PeftError("CLI_BAD_ARGS", "tokenize: --vocab <gguf|tokenizer.json> is required");
  const tok = await Tokenizer.fromFile(values.vocab);
  const text = positionals.join(" ");
  if (values.decode) {
    const ids = text.trim().split(/[\s,]+/).filter(Boolean).map((s) => {
      const n = Number(s);
      if (!Number.isInteger(n)) throw new PeftError("CLI_BAD_ARGS", `tokenize --decode: ${JSON.stringify(s)} is not a token id`);
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
