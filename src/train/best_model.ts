/**
 * load_best_model_at_end and early stopping, with transformers' rules: an evaluation is a new
 * best when it beats the best so far (lower eval loss); early stopping counts evaluations that do
 * not beat the previous best by more than the threshold and stops after `patience` of them in a
 * row (EarlyStoppingCallback); the best checkpoint is the checkpoint saved at the step of the best
 * evaluation. The state travels in trainer_state.json so a resumed run continues the count.
 */
export interface BestModelState {
  bestMetric?: number;
  bestStep?: number;
  bestCheckpoint?: string;
  /** Evaluations in a row without enough improvement (early stopping). */
  patienceCounter: number;
}

export class BestModelTracker {
  state: BestModelState = { patienceCounter: 0 };

  constructor(readonly o: { patience?: number; threshold: number }) {}

  /** Records an evaluation; returns true when it is a new best. */
  observe(step: number, metric: number): boolean {
    const best = this.state.bestMetric;
    const improved = best === undefined || metric < best;
    if (best === undefined || (improved && Math.abs(metric - best) > this.o.threshold)) this.state.patienceCounter = 0;
    else this.state.patienceCounter++;
    if (improved) Object.assign(this.state, { bestMetric: metric, bestStep: step });
    return improved;
  }

  /** A checkpoint was saved at `step`: it is the best one when the best evaluation was at that step. */
  saved(step: number, dir: string): void {
    if (this.state.bestStep === step) this.state.bestCheckpoint = dir;
  }

  get shouldStop(): boolean {
    return this.o.patience !== undefined && this.state.patienceCounter >= this.o.patience;
  }
}
