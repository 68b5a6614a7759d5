/**
 * Every PEFT method from the command line: `train --peft-type X` fine-tunes stories260K on
 * tinyshakespeare and lowers the eval loss, saves the adapter, and a fresh `generate --adapter`
 * process gives exactly the text the training process sampled with it (same seed and settings).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SHARED, STORIES } from "../helpers.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const deno = join(root, "node_modules/.bin/deno");
const PROMPT = "ROMEO:";

function cli(args: string[]) {
  const r = spawnSync(deno, ["run", "-A", "src/cli/bin.ts", ...args], { cwd: root, encoding: "utf8", timeout: 300_000 });
  assert.equal(r.status, 0, `${args.slice(0, 1)} exited ${r.status}: ${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

const METHODS: [string, string, string, string][] = [
  // peft type, learning rate (each family's usual scale), peft_type on disk, a key it writes
  ["lora", "5e-3", "LORA", "lora_B.weight"],
  ["dora", "5e-3", "LORA", "lora_magnitude_vector"],
  ["ia3", "3e-2", "IA3", "ia3_l"],
  ["bitfit", "1e-2", "BITFIT", "q_proj.bias"],
  ["ln_tuning", "1e-2", "LN_TUNING", "ln_tuning_layers.weight"],
  ["partial", "2e-3", "PARTIAL", "down_proj.weight"],
  ["prompt_tuning", "3e-2", "PROMPT_TUNING", "prompt_embeddings"],
  ["p_tuning", "1e-2", "P_TUNING", "prompt_embeddings"],
  ["prefix_tuning", "1e-2", "PREFIX_TUNING", "prompt_embeddings"],
  ["bottleneck", "1e-2", "BOTTLENECK", "output_adapters"],
  ["mam", "5e-3", "HYBRID", "prefix/prompt_embeddings"],
];

for (const [type, lr, peftType, key] of METHODS) {
  Deno.test(`CLI: train --peft-type ${type} lowers eval loss; a fresh generate --adapter gives the trained process's text`, async () => {
    const out = await mkdtemp(join(tmpdir(), `cli-${type}-`));
    try {
      const extra = type === "partial" ? ["--last-layers", "1"] : /tuning|mam/.test(type) ? ["--num-virtual-tokens", "8"] : [];
      if (type === "prefix_tuning" || type === "mam") extra.push("--prefix-projection", "--encoder-hidden-size", "32");
      if (type === "bottleneck") extra.push("--bottleneck", "double_seq_bn");
      const stdout = cli([
        "train", "--model", STORIES, "--data", `${SHARED}data/tinyshakespeare.txt`, "--out", out, "--peft-type", type, ...extra,
        "--max-steps", "8", "--seq-len", "64", "--batch-size", "4", "--lr", lr, "--max-examples", "120", "--eval-fraction", "0.1",
        "--max-eval-batches", "2", "--seed", "5", "--sample", PROMPT,
      ]);
      const evals = [...stdout.matchAll(/eval step \d+ \| loss ([\d.]+)/g)].map((m) => Number(m[1]));
      assert.ok(evals.length >= 2 && evals.at(-1)! < evals[0], `${type}: eval loss ${evals.join(" -> ")}`);
      const cfg = JSON.parse(await readFile(join(out, "adapter", "adapter_config.json"), "utf8"));
      assert.equal(cfg.peft_type, peftType);
      if (type === "dora") assert.equal(cfg.use_dora, true);
      const st = await readFile(join(out, "adapter", type === "bottleneck" ? "adapter.safetensors" : "adapter_model.safetensors"));
      assert.ok(new TextDecoder().decode(st.subarray(0, 20000)).includes(key), `${type}: the file holds ${key} tensors`);
      const sampled = stdout.slice(stdout.indexOf("[sample] ") + "[sample] ".length).replace(/\n$/, "");
      const again = cli([
        "generate", "--model", STORIES, "--adapter", join(out, "adapter"), "--prompt", PROMPT,
        "--temperature", "0.8", "--top-p", "0.9", "--seed", "1", "--max-tokens", "64",
      ]).replace(/\n$/, "");
      assert.equal(again, sampled, `${type}: reloaded adapter in a fresh process`);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
}

Deno.test("train flags -> PEFT config: --peft-type full is partial fine-tuning of every block module; choosing modules there is a usage error", async () => {
  const { adapterConfig, TRAIN } = await import("../../src/cli/train.ts");
  const { parseFlags } = await import("../../src/cli/flags.ts");
  const values = (...a: string[]) => parseFlags(TRAIN, ["--model", STORIES, "--data", "x.txt", "--out", "runs/x", ...a])!.values;
  assert.deepEqual(adapterConfig(values("--peft-type", "full"), 5), { peft_type: "PARTIAL", target_modules: "all", layers_to_transform: null });
  assert.deepEqual(adapterConfig(values("--peft-type", "partial", "--last-layers", "2"), 5), { peft_type: "PARTIAL", target_modules: undefined, layers_to_transform: [3, 4] });
  assert.throws(() => adapterConfig(values("--peft-type", "full", "--layers", "1"), 5), /--peft-type partial/);
});
