import assert from "node:assert/strict";
import { LLAMA_DEFAULT_TARGETS, loraScale, normalizeLoraConfig } from "../../src/peft/lora/config.ts";
import { PeftError } from "../../src/errors.ts";

function throwsNaming(fn: () => unknown, re: RegExp) {
  assert.throws(fn, (e: unknown) => e instanceof PeftError && e.code === "LORA_CONFIG" && re.test(e.message));
}

Deno.test("normalizeLoraConfig fills PEFT's defaults", () => {
  const c = normalizeLoraConfig({});
  assert.equal(c.peft_type, "LORA");
  assert.equal(c.task_type, "CAUSAL_LM");
  assert.equal(c.r, 8);
  assert.equal(c.lora_alpha, 8);
  assert.equal(c.lora_dropout, 0);
  assert.equal(c.bias, "none");
  assert.equal(c.use_rslora, false);
  assert.equal(c.use_dora, false);
  assert.equal(c.init_lora_weights, true);
  assert.deepEqual(c.target_modules, LLAMA_DEFAULT_TARGETS);
  assert.deepEqual(c.target_modules, ["q_proj", "v_proj"]);
  assert.equal(c.layers_to_transform, null);
  assert.equal(c.modules_to_save, null);
  assert.equal(c.fan_in_fan_out, false);
});

Deno.test("normalizeLoraConfig keeps the issue's config and round-trips through JSON", () => {
  const c = normalizeLoraConfig({ peft_type: "LORA", r: 8, lora_alpha: 16, lora_dropout: 0.05, target_modules: ["q_proj", "v_proj"] });
  assert.equal(c.r, 8);
  assert.equal(c.lora_alpha, 16);
  assert.equal(c.lora_dropout, 0.05);
  assert.equal(loraScale(c), 2);
  const again = normalizeLoraConfig(JSON.parse(JSON.stringify(c)));
  assert.deepEqual(again, c);
  // an int layers_to_transform becomes a list, duplicates in target_modules collapse
  const d = normalizeLoraConfig({ layers_to_transform: 3, target_modules: ["q_proj", "q_proj", "o_proj"] });
  assert.deepEqual(d.layers_to_transform, [3]);
  assert.deepEqual(d.target_modules, ["q_proj", "o_proj"]);
});

Deno.test("normalizeLoraConfig accepts a PEFT adapter_config.json with its inert extra keys", () => {
  // Shape of adapter_config.json as PEFT 0.13 writes it.
  const peftJson = {
    alpha_pattern: {}, auto_mapping: null, base_model_name_or_path: "meta-llama/Llama-2-7b-hf", bias: "none",
    fan_in_fan_out: false, inference_mode: true, init_lora_weights: true, layer_replication: null,
    layers_pattern: null, layers_to_transform: null, loftq_config: {}, lora_alpha: 32, lora_dropout: 0.1,
    megatron_config: null, megatron_core: "megatron.core", modules_to_save: null, peft_type: "LORA", r: 16,
    rank_pattern: {}, revision: null, target_modules: ["v_proj", "q_proj"], task_type: "CAUSAL_LM",
    use_dora: false, use_rslora: true,
  };
  const c = normalizeLoraConfig(peftJson);
  assert.equal(c.megatron_core, "megatron.core"); // kept for the round-trip
  assert.equal(c.r, 16);
  assert.equal(c.base_model_name_or_path, "meta-llama/Llama-2-7b-hf");
  assert.equal(c.rank_pattern && Object.keys(c.rank_pattern as object).length, 0);
  assert.equal(loraScale(c), 32 / 4); // rsLoRA: alpha / sqrt(r)
  throwsNaming(() => normalizeLoraConfig({ rank_pattern: { q_proj: 4 } }), /rank_pattern is not a supported LoRA option/);
  throwsNaming(() => normalizeLoraConfig({ lora_alhpa: 16 }), /lora_alhpa is not a supported LoRA option/);
  throwsNaming(() => normalizeLoraConfig({ layers_pattern: "h" }), /layers_pattern is not a supported LoRA option/);
  assert.equal(normalizeLoraConfig({ layers_pattern: "layers" }).layers_pattern, "layers");
});

Deno.test("normalizeLoraConfig rejects bad values naming the parameter", () => {
  throwsNaming(() => normalizeLoraConfig({ r: 0 }), /r must be a positive integer, got 0/);
  throwsNaming(() => normalizeLoraConfig({ r: -4 }), /r must be a positive integer/);
  throwsNaming(() => normalizeLoraConfig({ r: 2.5 }), /r must be a positive integer/);
  throwsNaming(() => normalizeLoraConfig({ r: "8" }), /r must be a positive integer, got "8"/);
  throwsNaming(() => normalizeLoraConfig({ lora_alpha: "16" }), /lora_alpha must be a finite number/);
  throwsNaming(() => normalizeLoraConfig({ lora_alpha: NaN }), /lora_alpha/);
  throwsNaming(() => normalizeLoraConfig({ lora_dropout: 1 }), /lora_dropout must be in \[0, 1\)/);
  throwsNaming(() => normalizeLoraConfig({ lora_dropout: -0.1 }), /lora_dropout/);
  throwsNaming(() => normalizeLoraConfig({ bias: "all" }), /bias 'all' is not supported/);
  throwsNaming(() => normalizeLoraConfig({ bias: "lora_only" }), /bias 'lora_only' is not supported/);
  throwsNaming(() => normalizeLoraConfig({ peft_type: "IA3" }), /peft_type 'IA3' is not LORA/);
  throwsNaming(() => normalizeLoraConfig({ init_lora_weights: "pissa" }), /init_lora_weights "pissa" is not supported/);
  throwsNaming(() => normalizeLoraConfig({ target_modules: [] }), /target_modules must not be an empty list/);
  throwsNaming(() => normalizeLoraConfig({ target_modules: [3] }), /target_modules must be a list/);
  throwsNaming(() => normalizeLoraConfig({ layers_to_transform: [-1] }), /layers_to_transform/);
  throwsNaming(() => normalizeLoraConfig({ target_modules: ".*q_proj", layers_to_transform: [0] }), /layers_to_transform cannot be used/);
  throwsNaming(() => normalizeLoraConfig({ use_rslora: "yes" }), /use_rslora must be true or false/);
  throwsNaming(() => normalizeLoraConfig({ fan_in_fan_out: true }), /fan_in_fan_out/);
  throwsNaming(() => normalizeLoraConfig({ modules_to_save: ["lm_head"] }), /modules_to_save/);
});

Deno.test("loraScale: alpha/r, or alpha/sqrt(r) with rsLoRA", () => {
  assert.equal(loraScale(normalizeLoraConfig({ r: 16, lora_alpha: 32 })), 2);
  assert.equal(loraScale(normalizeLoraConfig({ r: 16, lora_alpha: 32, use_rslora: true })), 8);
  assert.equal(loraScale(normalizeLoraConfig({})), 1);
});
