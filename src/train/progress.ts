/**
 * Training progress for people and for files:
 *  - ProgressReporter: one self-rewriting line on a terminal (\r, progress bar), plain lines
 *    otherwise (CI logs, pipes): `step 12/150 | loss 2.3456 | lr 1.2e-4 | 1,234 tok/s | ETA 1m23s`;
 *    tok/s counts training time only (evaluations excluded), and the ETA adds the evaluations
 *    still to come at the measured cost of the earlier ones;
 *  - MetricsWriter: appends one JSON object a line to <outputDir>/metrics.jsonl.
 */
import { appendFile, join, mkdir, open, stdout } from "../util/host.ts";
import { PeftError } from "../errors.ts";

/** "45s", "1m23s", "2h05m". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** 1234.5 -> "1,235". */
export function formatThousands(n: number): string {
  return Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** 0.00012 -> "1.2e-4" (short, fixed width enough for a progress line). */
export function formatLr(lr: number): string {
  return lr === 0 ? "0" : lr.toExponential(1).replace("e+", "e");
}

export interface StepInfo {
  /** Optimizer steps done (1-based after the first update). */
  step: number;
  loss: number;
  lr: number;
  /** Tokens processed by this step (all micro-batches), for the throughput figure. */
  tokens: number;
}

export interface ProgressOptions {
  total: number;
  /** Steps done before this run (a resumed run): rates and the ETA count this run's steps only. */
  startStep?: number;
  /**
   * When evaluations happen, for the ETA: every `evalSteps` steps before the last (0: none
   * between) and once at the end. Undefined: no evaluations.
   */
  evalSteps?: number;
  /** Seconds an evaluation takes, until this run measures one (a resumed run: see meanEvalSeconds). */
  evalSecondsEstimate?: number;
  /** Defaults to whether stdout is a terminal. */
  tty?: boolean;
  /** Defaults to writing to stdout. */
  write?: (s: string) => void;
  /** Clock in milliseconds (for tests); defaults to performance.now. */
  now?: () => number;
  /** Plain-line mode prints every Nth step (and the last); default every step. */
  every?: number;
}

const BAR_WIDTH = 24;

export class ProgressReporter {
  private readonly total: number;
  private readonly tty: boolean;
  private readonly write: (s: string) => void;
  private readonly now: () => number;
  private readonly every: number;
  private readonly start: number;
  private readonly startStep: number;
  private readonly evalSteps: number | undefined;
  private readonly evalEstimate: number;
  private tokens = 0;
  private evalSeconds = 0;
  private evalCount = 0;
  private lineOpen = false;

  constructor(o: ProgressOptions) {
    this.total = o.total;
    this.tty = o.tty ?? stdout.isTTY;
    this.write = o.write ?? ((s) => stdout.write(s));
    this.now = o.now ?? (() => performance.now());
    this.every = Math.max(1, o.every ?? 1);
    this.start = this.now();
    this.startStep = o.startStep ?? 0;
    this.evalSteps = o.evalSteps;
    this.evalEstimate = o.evalSecondsEstimate ?? 0;
  }

  /** Records an evaluation's wall time: left out of tok/s, and the cost per evaluation in the ETA. */
  evaluated(seconds: number): void {
    this.evalSeconds += seconds;
    this.evalCount++;
  }

  /**
   * Evaluations still to come once `step` is reported (the trainer evaluates after reporting): the
   * periodic ones at steps >= `step` before the last, and the final one.
   */
  private evalsLeft(step: number): number {
    if (this.evalSteps === undefined) return 0;
    const periodic = this.evalSteps > 0 ? Math.floor((this.total - 1) / this.evalSteps) - Math.floor((step - 1) / this.evalSteps) : 0;
    return Math.max(0, periodic) + 1;
  }

  /** Seconds to the end: this run's training seconds per step, plus the evaluations left at their mean cost. */
  eta(step: number): number {
    const done = step - this.startStep;
    if (done <= 0) return NaN;
    const perEval = this.evalCount ? this.evalSeconds / this.evalCount : this.evalEstimate;
    return (this.trainSeconds() / done) * (this.total - step) + perEval * this.evalsLeft(step);
  }

  /** The status line for a step (after its tokens were counted), without bar or line ending. */
  private line(info: StepInfo): string {
    const tokPerS = this.tokensPerSecond();
    const eta = this.eta(info.step);
    return [
      `step ${info.step}/${this.total}`,
      `loss ${info.loss.toFixed(4)}`,
      `lr ${formatLr(info.lr)}`,
      `${formatThousands(tokPerS)} tok/s`,
      `ETA ${formatDuration(eta)}`,
    ].join(" | ");
  }

  /** Reports a finished optimizer step; returns the tokens/s figure it showed. */
  step(info: StepInfo): number {
    this.tokens += info.tokens;
    const text = this.line(info);
    const tokPerS = this.tokensPerSecond();
    if (this.tty) {
      const done = Math.round((BAR_WIDTH * Math.min(info.step, this.total)) / this.total);
      const bar = "█".repeat(done) + "░".repeat(BAR_WIDTH - done);
      this.write(`\r\x1b[K${bar} ${text}`);
      this.lineOpen = true;
      if (info.step >= this.total) this.finish();
    } else if (info.step % this.every === 0 || info.step >= this.total) {
      this.write(`${text}\n`);
    }
    return tokPerS;
  }

  /** A message on its own line (eval results, checkpoints), not overwritten by the bar. */
  log(message: string): void {
    if (this.lineOpen) this.write("\n");
    this.lineOpen = false;
    this.write(`${message}\n`);
  }

  /** Ends the bar's line. */
  finish(): void {
    if (this.lineOpen) this.write("\n");
    this.lineOpen = false;
  }

  /** Training tokens per second of training time (evaluations excluded). */
  tokensPerSecond(): number {
    const t = this.trainSeconds();
    return t > 0 ? this.tokens / t : 0;
  }

  /** Wall seconds since the start less the time spent evaluating. */
  trainSeconds(): number {
    return this.elapsedSeconds() - this.evalSeconds;
  }

  elapsedSeconds(): number {
    return (this.now() - this.start) / 1000;
  }
}

/** "eval step 50 | loss 2.1234 | ppl 8.36" */
export function formatEval(step: number, loss: number): string {
  return `eval step ${step} | loss ${loss.toFixed(4)} | ppl ${Math.exp(loss).toFixed(2)}`;
}

/** One line of metrics.jsonl. Train records carry loss/lr/tokens_per_s, eval records eval_loss/eval_ppl. */
export interface MetricRecord {
  step: number;
  loss?: number;
  lr?: number;
  tokens_per_s?: number;
  eval_loss?: number;
  eval_ppl?: number;
  /** Epochs done at this step (fractional, as transformers logs it). */
  epoch?: number;
  /** Seconds of training since the run first started (continued across resumes). */
  time?: number;
}

export class MetricsWriter {
  readonly path: string;
  private readonly start: number;

  private constructor(path: string, startTime: number) {
    this.path = path;
    this.start = performance.now() - startTime * 1000;
  }

  /**
   * Creates outputDir (and parents) and metrics.jsonl in it, truncating an old one unless
   * `append` (resuming a run). `startTime`: the seconds already trained (a resumed run's last
   * `time`), where `time` continues. Throws PeftError("OUTPUT_DIR_NOT_WRITABLE") naming the directory.
   */
  static async open(outputDir: string, opts: { append?: boolean; startTime?: number } = {}): Promise<MetricsWriter> {
    const path = join(outputDir, "metrics.jsonl");
    try {
      await mkdir(outputDir, { recursive: true });
      const h = await open(path, opts.append ? "a" : "w");
      await h.close();
    } catch (e) {
      throw new PeftError(
        "OUTPUT_DIR_NOT_WRITABLE",
        `output directory ${outputDir} is not writable: ${(e as Error).message}`,
        { cause: e },
      );
    }
    return new MetricsWriter(path, opts.startTime ?? 0);
  }

  /** Appends one record; fills `time` and eval_ppl = exp(eval_loss) when absent. */
  async write(record: MetricRecord): Promise<MetricRecord> {
    const r: MetricRecord = { ...record };
    if (r.eval_loss !== undefined && r.eval_ppl === undefined) r.eval_ppl = Math.exp(r.eval_loss);
    r.time ??= Math.round((performance.now() - this.start)) / 1000;
    try {
      await appendFile(this.path, JSON.stringify(r) + "\n");
    } catch (e) {
      throw new PeftError("WRITE_FAILED", `cannot append to ${this.path}: ${(e as Error).message}`, { cause: e });
    }
    return r;
  }
}

/**
 * Mean seconds of the evaluations recorded in metrics (an eval record's time less the record's
 * before it), for a resumed run's ETA before it evaluates; undefined when there are none.
 */
export function meanEvalSeconds(records: readonly MetricRecord[]): number | undefined {
  const d: number[] = [];
  records.forEach((r, i) => {
    if (r.eval_loss !== undefined && r.time !== undefined) d.push(r.time - (i > 0 ? records[i - 1].time ?? 0 : 0));
  });
  return d.length ? d.reduce((a, b) => a + b, 0) / d.length : undefined;
}

/** Reads metrics.jsonl back (for the loss curve or a resumed run); skips a torn last line. */
export function parseMetrics(text: string): MetricRecord[] {
  const out: MetricRecord[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      const r = JSON.parse(line);
      if (r && typeof r.step === "number") out.push(r);
    } catch {
      // a run killed mid-write leaves a partial last line; the rest is still good
    }
  }
  return out;
}
