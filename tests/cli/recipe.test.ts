/**
 * YAML recipes: LLaMA-Factory's keys onto the train/distill flags, their defaults, refusals that
 * name the key; seed 002's file (the issue's appendix, local paths) runs as written and makes a
 * QLoRA adapter, and its config.resolved.yaml reruns to the same losses; distill and eval from
 * the command line.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DISTILL } from "../../src/cli/distill.ts";
import { parseFlags } from "../../src/cli/flags.ts";
import { applyRecipeDefaults, mapRecipe, readRecipe } from "../../src/cli/recipe.ts";
import { checkRunFlags, TRAIN, writeRunConfig } from "../../src/cli/train.ts";
import { PeftError } from "../../src/errors.ts";
import { SHARED, STORIES } from "../helpers.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const deno = join(root, "node_modules/.bin/deno");
const SHAKESPEARE = `${SHARED}data/tinyshakespeare.txt`;

const map = (doc: Record<string, unknown>, allowUnknown = false) => mapRecipe("r.yaml", doc, TRAIN, "train", { allowUnknown });
const refuses = (doc: Record<string, unknown>, re: RegExp) =>
  assert.throws(() => map(doc), (e: unknown) => e instanceof PeftError && e.code === "CONFIG_INVALID" && re.test(e.message), `${JSON.stringify(doc)} -> ${re}`);

Deno.test("recipe: LLaMA-Factory and transformers keys map onto the flags; own keys are the flags' names", () => {
  const r = map({
    model_name_or_path: "m.gguf", finetuning_type: "lora", lora_rank: 64, lora_target: "all", quantization_bit: 4, quantization_type: "fp4",
    stage: "sft", dataset: "d.txt", template: "qwen", cutoff_len: 1024, output_dir: "out", per_device_train_batch_size: 2, gradient_accumulation_steps: 4,
    learning_rate: "1e-4", num_train_epochs: 2.5, max_steps: -1, lr_scheduler_type: "cosine", warmup_ratio: 0.1, logging_steps: 10, save_steps: 100,
    val_size: 0.1, seed: 7, optim: "paged_adamw_32bit", bf16: true, gradient_checkpointing: true, save_total_limit: 2, load_best_model_at_end: true,
    eval_strategy: "steps", eval_steps: 50, group_by_length: true, early_stopping_steps: 3, report_to: "none", overwrite_output_dir: true, use_unsloth: false,
    adam_beta2: 0.95, packing: false,
  });
  assert.deepEqual(r.values, {
    model: "m.gguf", "peft-type": "lora", r: 64, "target-modules": "all-linear", quantize: "fp4", "double-quant": true, data: "d.txt",
    "chat-template": "chatml", "seq-len": 1024, out: "out", "batch-size": 2, "grad-accum": 4, lr: 1e-4, epochs: 2.5, "lr-scheduler": "cosine",
    "warmup-ratio": 0.1, "save-steps": 100, "eval-fraction": 0.1, seed: 7, optimizer: "paged_adamw", "compute-dtype": "auto",
    "gradient-checkpointing": true, "save-total-limit": 2, "load-best-model-at-end": true, "eval-strategy": "steps", "eval-steps": 50,
    "group-by-length": true, "early-stopping-patience": 3, "adam-beta2": 0.95, packing: false,
  });
  assert.ok(r.notes.some((n) => /no effect here: logging_steps .*report_to .*overwrite_output_dir/.test(n)), r.notes.join("\n"));
  assert.ok(r.notes.some((n) => /bf16: WebGPU has no bf16/.test(n)));
  assert.equal(map({ optim: "paged_adamw_8bit" }).values.optimizer, "adamw_8bit");
  assert.equal(map({ optim: "adamw_torch" }).values.optimizer, "adamw");
  assert.equal(map({ fp16: true }).values["compute-dtype"], "f16");
  assert.deepEqual(map({ quantization_bit: 4, double_quantization: false }).values, { quantize: "nf4", "double-quant": false });
  assert.deepEqual(map({ use_dora: true, lora_rank: 4 }).values, { "peft-type": "dora", r: 4 });
  assert.deepEqual(map({ max_steps: 20, num_train_epochs: 3 }).values, { "max-steps": 20, epochs: 3 }, "both is fine, as in transformers");
  assert.deepEqual(map({ seq_len: 64, peft_type: "ia3", lora_alpha: 8, dataset_dir: "data", dataset: "x.jsonl" }).values, { "seq-len": 64, "peft-type": "ia3", "lora-alpha": 8, data: "data/x.jsonl" });
});

Deno.test("recipe: finetuning_type freeze (last N layers, or -N first) and full map to partial fine-tuning", () => {
  assert.deepEqual(map({ finetuning_type: "freeze" }).values, { "peft-type": "partial", "last-layers": 2, "target-modules": "all" });
  assert.deepEqual(map({ finetuning_type: "freeze", freeze_trainable_layers: -3, freeze_trainable_modules: "mlp,self_attn" }).values, {
    "peft-type": "partial", layers: "0,1,2", "target-modules": "gate_proj,up_proj,down_proj,q_proj,k_proj,v_proj,o_proj",
  });
  assert.deepEqual(map({ finetuning_type: "full" }).values, { "peft-type": "full" });
  refuses({ finetuning_type: "freeze", lora_rank: 8 }, /r\.yaml: lora_rank: is a LoRA setting; finetuning_type is freeze/);
  refuses({ freeze_trainable_layers: 2 }, /freeze_trainable_layers: is a setting of finetuning_type freeze/);
  refuses({ finetuning_type: "oft" }, /finetuning_type: "oft" is not supported here: lora, freeze or full/);
});

Deno.test("recipe: unknown keys (nearest known key), unsupported keys, wrong types and contradictions name the key", () => {
  refuses({ lora_rnak: 8, learnig_rate: 1e-4 }, /unknown key lora_rnak \(did you mean lora_rank\?\); unknown key learnig_rate \(did you mean learning_rate\?\).*--allow-unknown/);
  refuses({ deepspeed: "ds_z3.json" }, /deepspeed: "ds_z3.json" is not supported here \(one device/);
  refuses({ use_unsloth: true }, /use_unsloth: true is not supported here/);
  refuses({ lora_rank: "sixty" }, /r\.yaml: lora_rank: must be a number, got "sixty"/);
  refuses({ lora_rank: 8.5 }, /lora_rank: must be a whole number, got 8\.5/);
  refuses({ lora_rank: 0 }, /lora_rank: must be >= 1, got 0/);
  refuses({ packing: "yes please" }, /packing: must be true or false/);
  refuses({ lr_scheduler_type: "polynomial" }, /lr_scheduler_type: must be one of constant, constant_with_warmup, linear, cosine, got "polynomial"/);
  refuses({ quantization_bit: 3 }, /quantization_bit: 3 is not supported: 4 only/);
  refuses({ quantization_bit: 8 }, /quantization_bit: 8 is not supported/);
  refuses({ quantization_type: "nf4" }, /quantization_type: needs quantization_bit: 4/);
  refuses({ fp16: true, bf16: true }, /bf16: fp16 and bf16 are both true/);
  refuses({ cutoff_len: 64, seq_len: 32 }, /sets --seq-len, and so does cutoff_len|sets --seq-len, and so does seq_len/);
  refuses({ optim: "sgd" }, /optim: "sgd" is not supported: adamw_torch/);
  refuses({ stage: "dpo" }, /stage: "dpo" is not a train stage/);
  refuses({ stage: "kd" }, /stage: "kd" is not a train stage: run it with distill --config/);
  refuses({ val_size: 100 }, /val_size: 100 examples: a count is not supported/);
  refuses({ template: "llama3" }, /template: "llama3" is not known here/);
  refuses({ teacher_model_name_or_path: "t.gguf" }, /train has no --teacher/);
  // --allow-unknown: a warning, and the rest of the file still counts
  const warn = console.warn;
  const lines: string[] = [];
  console.warn = (s: string) => lines.push(s);
  try {
    assert.deepEqual(map({ lora_rnak: 8, deepspeed: "x.json", lora_rank: 4 }, true).values, { r: 4 });
  } finally {
    console.warn = warn;
  }
  assert.match(lines.join("\n"), /warning: .*unknown key lora_rnak.*deepspeed.*ignored \(--allow-unknown\)/);
});

Deno.test("recipe: keys left out take LLaMA-Factory's defaults; distill reads stage kd and the teacher keys", () => {
  const v: Record<string, unknown> = { "peft-type": "lora", r: 16, lr: 2e-4, epochs: 1, "seq-len": 256, "lora-alpha": 16, "lora-dropout": 0.05, quantize: "nf4", "double-quant": false };
  const lines = applyRecipeDefaults(v, new Set(["r", "quantize"]));
  assert.deepEqual(
    { lr: v.lr, epochs: v.epochs, seq: v["seq-len"], alpha: v["lora-alpha"], dropout: v["lora-dropout"], targets: v["target-modules"], dq: v["double-quant"] },
    { lr: 5e-5, epochs: 3, seq: 2048, alpha: 32, dropout: 0, targets: "all-linear", dq: true },
  );
  assert.match(lines[0], /LLaMA-Factory's defaults: learning_rate 0\.00005, num_train_epochs 3, cutoff_len 2048/);
  const kd = mapRecipe("kd.yaml", { stage: "kd", teacher_model_name_or_path: "t.gguf", teacher_adapter_name_or_path: "a", beta: 0, temperature: 2, ce_weight: 0.1 }, DISTILL, "kd", {
    allowUnknown: false,
  });
  assert.deepEqual(kd.values, { teacher: "t.gguf", "teacher-adapter": "a", beta: 0, temperature: 2, "ce-weight": 0.1 });
});

Deno.test("config.resolved.yaml holds the settings that apply (no LoRA keys for ia3, no method keys with --init-adapter) and reads back to the same flags", async () => {
  const dir = await mkdtemp(join(tmpdir(), "peft-resolved-"));
  try {
    for (const [extra, absent] of [[["--peft-type", "ia3", "--seq-len", "64"], ["r", "lora_alpha", "lora_dropout", "use_rslora"]], [["--init-adapter", "a"], ["peft_type", "r", "target_modules"]]] as const) {
      const v = parseFlags(TRAIN, ["--model", "m.gguf", "--data", "d.txt", "--out", dir, ...extra])!.values;
      await writeRunConfig(TRAIN, v, "test");
      const path = join(dir, "config.resolved.yaml");
      const text = await readFile(path, "utf8");
      for (const k of absent) assert.doesNotMatch(text, new RegExp(`^${k}:`, "m"), `${extra}: no ${k}`);
      const back = await readRecipe(path, TRAIN, "train", { allowUnknown: false });
      for (const [flag, value] of Object.entries(back.values)) assert.deepEqual(value, (v as Record<string, unknown>)[flag], `--${flag}`);
      const again = parseFlags(TRAIN, [], back.values)!;
      checkRunFlags(again.values, new Set(Object.keys(back.values))); // no contradiction on the rerun
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

function cli(args: string[]) {
  const r = spawnSync(deno, ["run", "-A", "src/cli/bin.ts", ...args], { cwd: root, encoding: "utf8", timeout: 300_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The issue's appendix: seed 002's file, with the shared model and data. */
const SEED_002 = (out: string) => `model_name_or_path: ${STORIES}
finetuning_type: lora
quantization_bit: 4
lora_rank: 64
lora_target: all
stage: sft
dataset: ${SHAKESPEARE}
template: qwen
output_dir: ${out}
`;

Deno.test("seed 002's recipe runs as written (QLoRA adapter); config.resolved.yaml reruns to the same losses", async () => {
  const dir = await mkdtemp(join(tmpdir(), "peft-recipe-"));
  try {
    const recipe = join(dir, "peft_lora.yaml");
    await writeFile(recipe, SEED_002(join(dir, "saves")));
    // the file as written; the command line shortens the run (and overrides the file)
    const first = cli(["train", "--config", recipe, "--max-steps", "3", "--seq-len", "32", "--batch-size", "4"]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /base linears in nf4 \+ double quant/);
    assert.match(first.stdout, /LoRA r=64 alpha=128/);
    const cfg = JSON.parse(await readFile(join(dir, "saves", "adapter", "adapter_config.json"), "utf8"));
    assert.equal(cfg.peft_type, "LORA");
    assert.equal(cfg.r, 64);
    assert.equal(cfg.target_modules, "all-linear", "lora_target: all");
    const resolved = await readFile(join(dir, "saves", "config.resolved.yaml"), "utf8");
    for (const line of ["quantize: nf4", "double_quant: true", "r: 64", "lora_alpha: 128", "chat_template: chatml", "max_steps: 3", "seq_len: 32"]) {
      assert.ok(resolved.includes(`\n${line}\n`), `config.resolved.yaml has ${line}:\n${resolved}`);
    }
    const again = cli(["train", "--config", join(dir, "saves", "config.resolved.yaml"), "--out", join(dir, "again")]);
    assert.equal(again.code, 0, again.stderr);
    const losses = async (d: string) => (await readFile(join(d, "metrics.jsonl"), "utf8")).trim().split("\n").map((l) => JSON.parse(l).loss).filter((x) => x !== undefined);
    const a = await losses(join(dir, "saves")), b = await losses(join(dir, "again"));
    assert.equal(a.length, 3);
    assert.deepEqual(b, a, "the resolved config reruns to the same losses");

    const bad = join(dir, "bad.yaml");
    await writeFile(bad, SEED_002(join(dir, "x")).replace("quantization_bit: 4", "quantization_bit: 3").replace("lora_rank", "lora_rnak"));
    const r = cli(["train", "--config", bad]);
    assert.equal(r.code, 1);
    const lines = r.stderr.split("\n").filter((l) => l.trim());
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /^error \[CONFIG_INVALID\]: .*bad\.yaml: quantization_bit: 3 is not supported: 4 only/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test("CLI: distill a teacher adapter into a student, then eval both beside the base in one table", async () => {
  const dir = await mkdtemp(join(tmpdir(), "peft-kd-cli-"));
  try {
    const common = ["--data", SHAKESPEARE, "--seq-len", "32", "--batch-size", "4", "--max-examples", "200", "--target-modules", "q_proj,v_proj", "--seed", "3"];
    const teacher = cli(["train", "--model", STORIES, "--out", join(dir, "teacher"), ...common, "--lr", "1e-2", "--max-steps", "6", "--eval-fraction", "0"]);
    assert.equal(teacher.code, 0, teacher.stderr);
    const kd = cli([
      "distill", "--model", STORIES, "--teacher-adapter", join(dir, "teacher", "adapter"), "--out", join(dir, "kd"), ...common, "--beta", "0",
      "--lr", "1e-2", "--max-steps", "4", "--eval-fraction", "0.1", "--max-eval-batches", "1",
    ]);
    assert.equal(kd.code, 0, kd.stderr);
    const m = /eval distillation loss ([\d.]+) -> ([\d.]+)/.exec(kd.stdout);
    assert.ok(m && Number(m[2]) < Number(m[1]), kd.stdout);
    assert.match(await readFile(join(dir, "kd", "config.resolved.yaml"), "utf8"), /\nteacher_adapter: .*teacher\/adapter\n[\s\S]*\nbeta: 0\n/);
    const ev = cli(["eval", "--model", STORIES, "--data", SHAKESPEARE, "--adapter", join(dir, "kd", "adapter"), "--compare", join(dir, "teacher", "adapter"), "--max-examples", "4", "--seq-len", "32", "--json"]);
    assert.equal(ev.code, 0, ev.stderr);
    const rows = ev.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(rows.map((r) => r.model), ["base", join(dir, "kd", "adapter"), join(dir, "teacher", "adapter")]);
    for (const r of rows) {
      assert.ok(r.loss > 0 && Math.abs(r.perplexity - Math.exp(r.loss)) < 1e-6 * r.perplexity && r.loss_tokens === 4 * 32 && r.tokens_per_s > 0, JSON.stringify(r));
    }
    const table = cli(["eval", "--model", STORIES, "--data", SHAKESPEARE, "--adapter", join(dir, "kd", "adapter"), "--max-examples", "2", "--seq-len", "16"]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /\| model +\| +loss \| perplexity \| scored tokens \| tokens \| tokens\/s \|\n/);
    assert.match(table.stdout, /\n\| base +\| +[\d.]+ \| +[\d.]+ \| +32 \| +32 \| +[\d.]+ \|\n/);
    const noTeacher = cli(["distill", "--model", STORIES, "--data", SHAKESPEARE, "--out", join(dir, "x")]);
    assert.equal(noTeacher.code, 2);
    assert.match(noTeacher.stderr, /^error \[USAGE\]: distill needs a teacher: --teacher <model>, --teacher-adapter <dir> \(on the student's base\), or --teacher-logits <file>\n$/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
