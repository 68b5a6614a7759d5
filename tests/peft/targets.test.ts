import assert from "node:assert/strict";
import { countTrainable, formatTrainableParameters, moduleKey, resolveTargets } from "../../src/peft/targets.ts";
import { normalizeLoraConfig } from "../../src/peft/lora/config.ts";
import { configFromGGUF } from "../../src/model/weights.ts";
import { readGGUF } from "../../src/io/gguf.ts";
import { PeftError } from "../../src/errors.ts";
import { STORIES } from "../helpers.ts";

// The real tiny llama: dim 64, hidden 172, 5 layers, 8 heads, 4 kv heads (head dim 8).
const model = configFromGGUF(await readGGUF(STORIES));
const targets = (user: Record<string, unknown>) => resolveTargets(normalizeLoraConfig(user), model);
const names = (t: { layer: number; module: string }[]) => t.map((x) => `${x.layer}.${x.module}`);

Deno.test("resolveTargets: default q_proj/v_proj on every layer with stories260K shapes", () => {
  const t = targets({});
  assert.equal(t.length, 10);
  assert.deepEqual(t.slice(0, 2), [
    { layer: 0, module: "q_proj", inFeatures: 64, outFeatures: 64 },
    { layer: 0, module: "v_proj", inFeatures: 64, outFeatures: 32 },
  ]);
  assert.deepEqual(names(t).slice(-2), ["4.q_proj", "4.v_proj"]);
  assert.equal(countTrainable(t, 8), 5 * 8 * (64 + 64) + 5 * 8 * (64 + 32));
});

Deno.test("resolveTargets: list names match by suffix after a dot, as in PEFT", () => {
  assert.deepEqual(names(targets({ target_modules: ["mlp.down_proj"] })), [0, 1, 2, 3, 4].map((l) => `${l}.down_proj`));
  assert.deepEqual(names(targets({ target_modules: [moduleKey(2, "o_proj")] })), ["2.o_proj"]);
  const d = targets({ target_modules: ["down_proj", "gate_proj"], layers_to_transform: [1, 3] });
  assert.deepEqual(names(d), ["1.gate_proj", "1.down_proj", "3.gate_proj", "3.down_proj"]);
  assert.deepEqual(d[1], { layer: 1, module: "down_proj", inFeatures: 172, outFeatures: 64 });
  // "proj" alone is not a suffix after a dot of any key
  assert.throws(() => targets({ target_modules: ["proj"] }), (e: unknown) => e instanceof PeftError && e.code === "LORA_UNKNOWN_TARGET");
});

Deno.test("resolveTargets: a string is a regex that must fullmatch the module key", () => {
  assert.deepEqual(names(targets({ target_modules: String.raw`model\.layers\.[02]\.self_attn\.(q|k)_proj` })), [
    "0.q_proj", "0.k_proj", "2.q_proj", "2.k_proj",
  ]);
  assert.deepEqual(names(targets({ target_modules: ".*mlp.*" })).length, 15);
  // fullmatch: "q_proj" alone does not match "model.layers.0.self_attn.q_proj"
  assert.throws(() => targets({ target_modules: "q_proj" }), (e: unknown) =>
    e instanceof PeftError && e.code === "LORA_NO_TARGET" &&
    /available module names: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj/.test(e.message));
  assert.throws(() => targets({ target_modules: "(unclosed" }), /regex "\(unclosed" is invalid/);
});

Deno.test("resolveTargets: all-linear takes the seven block linears, never lm_head", () => {
  const t = targets({ target_modules: "all-linear" });
  assert.equal(t.length, 35);
  assert.ok(!t.some((x) => x.module === "lm_head"));
  const perLayer = 64 + 64 + 32 + 64 + 32 + 64 + 64 + 64 + 64 + 172 + 64 + 172 + 172 + 64;
  assert.equal(countTrainable(t, 4), 5 * 4 * perLayer);
  assert.equal(countTrainable(t, 4, { useDora: true }), 5 * 4 * perLayer + 5 * (64 + 32 + 32 + 64 + 172 + 172 + 64));
  assert.equal(targets({ target_modules: "all-linear", layers_to_transform: 4 }).length, 7);
});

Deno.test("resolveTargets: errors name the module and the available names", () => {
  assert.throws(() => targets({ target_modules: ["q_proj", "query_key_value"] }), (e: unknown) =>
    e instanceof PeftError && e.code === "LORA_UNKNOWN_TARGET" && /'query_key_value' matches no module/.test(e.message) &&
    /available module names: q_proj, k_proj/.test(e.message));
  assert.throws(() => targets({ target_modules: ["lm_head"] }), /'lm_head': LoRA on the output layer is not supported/);
  assert.throws(() => targets({ layers_to_transform: [5, 7] }), /layers_to_transform \[5,7\] out of range: the model has layers 0..4/);
});

Deno.test("formatTrainableParameters matches PEFT's print_trainable_parameters", () => {
  // Expected strings printed by Python with PEFT's f-string.
  assert.equal(formatTrainableParameters(8960, 1008960), "trainable params: 8,960 || all params: 1,008,960 || trainable%: 0.8880");
  assert.equal(formatTrainableParameters(1, 32), "trainable params: 1 || all params: 32 || trainable%: 3.1250");
  assert.equal(
    formatTrainableParameters(4194304, 6742609920),
    "trainable params: 4,194,304 || all params: 6,742,609,920 || trainable%: 0.0622",
  );
  // exact binary tie: Python rounds half to even (0.03125 -> 0.0312), toFixed would give 0.0313
  assert.match(formatTrainableParameters(1, 3200), /trainable%: 0\.0312$/);
  assert.match(formatTrainableParameters(3, 2000), /trainable%: 0\.1500$/);
});
