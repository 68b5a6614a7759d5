import assert from "node:assert/strict";
import { lrAt, type LrSchedulerName, totalOptimizerSteps, validateSchedule, warmupStepsFor } from "../../src/train/schedule.ts";
import { PeftError } from "../../src/errors.ts";

// Reference values printed by a Python script with transformers' optimization.py lambdas
// (_get_linear_schedule_with_warmup_lr_lambda, _get_cosine_schedule_with_warmup_lr_lambda with
// num_cycles=0.5, _get_constant_schedule_with_warmup_lr_lambda) and warmup = ceil(total * ratio).
// Rows: [step, linear, cosine, constant_with_warmup] for learning rate 2e-4.
const HF: { total: number; ratio: number; warmup: number; rows: [number, number, number, number][] }[] = [
  {
    total: 100, ratio: 0.03, warmup: 3, rows: [
      [0, 0, 0, 0],
      [1, 6.666666666666667e-05, 6.666666666666667e-05, 6.666666666666667e-05],
      [2, 0.00013333333333333334, 0.00013333333333333334, 0.00013333333333333334],
      [3, 0.0002, 0.0002, 0.0002],
      [4, 0.00019793814432989693, 0.00019994755690455152, 0.0002],
      [50, 0.00010309278350515463, 0.00010485622221144484, 0.0002],
      [99, 2.061855670103093e-06, 5.2443095448506674e-08, 0.0002],
      [100, 0, 0, 0.0002],
    ],
  },
  {
    total: 10, ratio: 0.25, warmup: 3, rows: [
      [0, 0, 0, 0],
      [1, 6.666666666666667e-05, 6.666666666666667e-05, 6.666666666666667e-05],
      [4, 0.00017142857142857143, 0.0001900968867902419, 0.0002],
      [5, 0.00014285714285714287, 0.00016234898018587337, 0.0002],
      [9, 2.857142857142857e-05, 9.903113209758096e-06, 0.0002],
      [10, 0, 0, 0.0002],
    ],
  },
  {
    total: 7, ratio: 0, warmup: 0, rows: [
      [0, 0.0002, 0.0002, 0.0002],
      [1, 0.00017142857142857143, 0.0001900968867902419, 0.0002],
      [3, 0.00011428571428571428, 0.00012225209339563145, 0.0002],
      [6, 2.857142857142857e-05, 9.903113209758096e-06, 0.0002],
      [7, 0, 0, 0.0002],
    ],
  },
];

function near(a: number, b: number, what: string) {
  assert.ok(Math.abs(a - b) <= 1e-15 + 1e-12 * Math.abs(b), `${what}: ${a} != ${b}`);
}

Deno.test("lrAt matches transformers' schedules with warmup ratio", () => {
  for (const c of HF) {
    const base = { learningRate: 2e-4, totalSteps: c.total, warmupRatio: c.ratio };
    assert.equal(warmupStepsFor({ ...base, lrScheduler: "linear" }), c.warmup);
    for (const [step, lin, cos, cww] of c.rows) {
      const names: [LrSchedulerName, number][] = [["linear", lin], ["cosine", cos], ["constant_with_warmup", cww]];
      for (const [name, want] of names) near(lrAt(step, { ...base, lrScheduler: name }), want, `${name} total ${c.total} step ${step}`);
      // get_constant_schedule ignores warmup entirely
      assert.equal(lrAt(step, { ...base, lrScheduler: "constant" }), 2e-4);
    }
  }
});

Deno.test("warmupSteps wins over warmupRatio, as in TrainingArguments.get_warmup_steps", () => {
  const o = { learningRate: 1, lrScheduler: "linear" as const, totalSteps: 100, warmupSteps: 10, warmupRatio: 0.5 };
  assert.equal(warmupStepsFor(o), 10);
  near(lrAt(5, o), 0.5, "half way through warmup");
  near(lrAt(10, o), 1, "end of warmup");
  near(lrAt(55, o), 0.5, "half way through decay");
});

Deno.test("totalOptimizerSteps rounds partial accumulations up per epoch", () => {
  assert.equal(totalOptimizerSteps({ microBatchesPerEpoch: 10, gradientAccumulationSteps: 2, epochs: 1 }), 5);
  assert.equal(totalOptimizerSteps({ microBatchesPerEpoch: 11, gradientAccumulationSteps: 2, epochs: 3 }), 18);
  assert.equal(totalOptimizerSteps({ microBatchesPerEpoch: 1, gradientAccumulationSteps: 8, epochs: 1 }), 1);
  assert.equal(totalOptimizerSteps({ microBatchesPerEpoch: 10, gradientAccumulationSteps: 1, epochs: 0.5 }), 5);
  assert.throws(() => totalOptimizerSteps({ microBatchesPerEpoch: 10, gradientAccumulationSteps: 0, epochs: 1 }), /gradientAccumulationSteps/);
});

Deno.test("validateSchedule names the bad option", () => {
  const ok = { learningRate: 1e-3, lrScheduler: "cosine" as const, totalSteps: 10 };
  validateSchedule(ok);
  const bad: [object, RegExp][] = [
    [{ learningRate: -1 }, /learningRate/],
    [{ lrScheduler: "polynomial" }, /lrScheduler 'polynomial' is not one of constant, constant_with_warmup, linear, cosine/],
    [{ totalSteps: 0 }, /totalSteps/],
    [{ warmupSteps: 1.5 }, /warmupSteps/],
    [{ warmupRatio: 2 }, /warmupRatio/],
  ];
  for (const [patch, re] of bad) {
    assert.throws(() => validateSchedule({ ...ok, ...patch } as typeof ok), (e: unknown) => e instanceof PeftError && re.test(e.message));
  }
});
