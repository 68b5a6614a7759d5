/**
 * Dynamic loss scaling for computeDtype "f16" (the rule of torch.cuda.amp.GradScaler).
 *
 * With f16 compute the backward narrows each gradient to f16 before it meets a base weight; f16
 * has 11 significant bits and flushes below 6e-8, so the small gradients of a mean loss would
 * lose precision or vanish. The loss gradient is multiplied by `scale` instead (every gradient
 * after it scales along, the backward is linear in it), and the optimizer divides it out of the
 * f32 LoRA gradients. A step whose gradients overflowed (a non-finite norm) is skipped and the
 * scale halves; after `growthInterval` good steps in a row it doubles.
 */
export interface LossScaleState {
  scale: number;
  /** Good steps since the last change. */
  goodSteps: number;
}

export interface LossScalerOptions {
  /** GradScaler's defaults: 2^16, x2 every 2000 good steps, x0.5 on overflow. */
  initScale?: number;
  growthFactor?: number;
  backoffFactor?: number;
  growthInterval?: number;
}

export class LossScaler {
  scale: number;
  goodSteps = 0;
  private readonly growthFactor: number;
  private readonly backoffFactor: number;
  private readonly growthInterval: number;

  constructor(o: LossScalerOptions = {}) {
    this.scale = o.initScale ?? 2 ** 16;
    this.growthFactor = o.growthFactor ?? 2;
    this.backoffFactor = o.backoffFactor ?? 0.5;
    this.growthInterval = o.growthInterval ?? 2000;
  }

  /** Records a step's outcome: true (finite gradients) means the step is taken. */
  update(finite: boolean): boolean {
    if (!finite) {
      this.scale *= this.backoffFactor;
      this.goodSteps = 0;
      return false;
    }
    if (++this.goodSteps >= this.growthInterval) {
      this.scale *= this.growthFactor;
      this.goodSteps = 0;
    }
    return true;
  }

  state(): LossScaleState {
    return { scale: this.scale, goodSteps: this.goodSteps };
  }

  restore(s: LossScaleState): void {
    this.scale = s.scale;
    this.goodSteps = s.goodSteps;
  }
}
