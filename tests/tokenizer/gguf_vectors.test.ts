// llama.cpp's own tokenizer test vectors (../shared/tokenizers): every case must match.
import assert from "node:assert/strict";
import { readGGUF } from "../../src/io/gguf.ts";
import { Tokenizer } from "../../src/tokenizer/mod.ts";
import { SHARED } from "../helpers.ts";

for (const name of ["llama-spm", "gpt-2"]) {
  Deno.test(`ggml-vocab-${name}: 46/46 llama.cpp test vectors`, async () => {
    const base = `${SHARED}tokenizers/ggml-vocab-${name}.gguf`;
    const g = await readGGUF(base);
    const tok = Tokenizer.fromGGUF(g, base);
    await g.close();
    const inputs = (await Deno.readTextFile(`${base}.inp`)).split("\n__ggml_vocab_test__\n");
    const expected = (await Deno.readTextFile(`${base}.out`)).split("\n");
    assert.equal(inputs.length >= 46, true);
    const failures: string[] = [];
    for (let i = 0; i < 46; i++) {
      const got = tok.encode(inputs[i], { addSpecial: false, parseSpecial: false });
      const want = expected[i].trim() === "" ? [] : expected[i].trim().split(/\s+/).map(Number);
      if (got.join(" ") !== want.join(" ")) failures.push(`${JSON.stringify(inputs[i])}: got ${got} want ${want}`);
      // Both vocabs are lossless on these inputs.
      assert.equal(tok.decode(got), inputs[i], `decode(encode(${JSON.stringify(inputs[i])}))`);
    }
    assert.deepEqual(failures, []);
  });
}
