/**
 * The loss curve as a self-contained SVG (no scripts, fonts or external references), written
 * beside metrics.jsonl: train loss (raw, faint, plus a TensorBoard-style debiased EMA when the
 * run is long enough to be noisy) and eval loss (line with markers), with axes, nice ticks,
 * grid, labels and a legend.
 */
import { join } from "../util/host.ts";
import { writeFileAtomic } from "../io/bytes.ts";
import type { MetricRecord } from "./progress.ts";

export interface LossPoint {
  step: number;
  loss?: number;
  evalLoss?: number;
}

export interface LossSvgOptions {
  title?: string;
  width?: number;
  height?: number;
  /** EMA weight for the smoothed train line (TensorBoard's slider); 0 disables it. Default 0.6. */
  smoothing?: number;
}

const COLORS = { train: "#2563eb", eval: "#ea580c", axis: "#334155", grid: "#e2e8f0", text: "#0f172a", muted: "#64748b" };
const FONT = `system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif`;
/** Below this many train points the raw line is drawn solid and no smoothed line is added. */
const SMOOTH_MIN_POINTS = 12;

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/**
 * ~`count` round tick values (1, 2, 2.5, 5 × 10^k) covering [lo, hi]. `minStep` 1 is for integer
 * axes (steps): the spacing is then a whole number too (2 or 5, never 2.5).
 */
export function niceTicks(lo: number, hi: number, count = 5, minStep = 0): number[] {
  if (!(hi > lo)) return [lo];
  const raw = Math.max((hi - lo) / count, minStep);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const integer = minStep >= 1;
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw && (!integer || Number.isInteger(s)))!;
  const out: number[] = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  if (out[out.length - 1] < hi - step * 1e-9) out.push(+(out[out.length - 1] + step).toPrecision(12));
  return out;
}

/** Tick text with just enough decimals for the tick spacing (0.25 steps need two). */
function tickLabel(v: number, step: number, thousands = false): string {
  const e = Math.floor(Math.log10(step));
  const mant = step / 10 ** e;
  const decimals = Math.max(0, -e + (Math.abs(mant - Math.round(mant)) > 1e-9 ? 1 : 0));
  if (thousands && v !== 0) return `${+(v / 1000).toPrecision(4)}k`;
  return v.toFixed(Math.min(decimals, 8));
}

/** TensorBoard's smoothing: EMA with debiasing so the start is not pulled toward 0. */
function ema(values: number[], weight: number): number[] {
  let last = 0, n = 0;
  return values.map((v) => {
    last = last * weight + (1 - weight) * v;
    n++;
    return last / (1 - weight ** n);
  });
}

function path(xs: number[], ys: number[]): string {
  return xs.map((x, i) => `${i ? "L" : "M"}${x.toFixed(1)},${ys[i].toFixed(1)}`).join("");
}

export function lossCurveSvg(points: readonly LossPoint[], opts: LossSvgOptions = {}): string {
  const W = opts.width ?? 800, H = opts.height ?? 450;
  const m = { left: 68, right: 28, top: 56, bottom: 54 };
  const pw = W - m.left - m.right, ph = H - m.top - m.bottom;
  const title = opts.title ?? "Loss";
  const smoothing = opts.smoothing ?? 0.6;

  const ok = (v: number | undefined): v is number => typeof v === "number" && Number.isFinite(v);
  const train = points.filter((p) => ok(p.loss) && Number.isFinite(p.step)).sort((a, b) => a.step - b.step);
  const evals = points.filter((p) => ok(p.evalLoss) && Number.isFinite(p.step)).sort((a, b) => a.step - b.step);
  const steps = [...train, ...evals].map((p) => p.step);
  const losses = [...train.map((p) => p.loss!), ...evals.map((p) => p.evalLoss!)];

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="${FONT}" role="img">`,
    `<title>${esc(title)}</title>`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${m.left}" y="30" font-size="17" font-weight="600" fill="${COLORS.text}">${esc(title)}</text>`,
  );
  const summary: string[] = [];
  if (train.length) summary.push(`train ${train[train.length - 1].loss!.toFixed(4)}`);
  if (evals.length) summary.push(`eval ${evals[evals.length - 1].evalLoss!.toFixed(4)}`);
  if (train.length || evals.length) summary.push(`step ${Math.max(...steps)}`);
  if (summary.length) {
    out.push(`<text x="${W - m.right}" y="30" font-size="12" text-anchor="end" fill="${COLORS.muted}">${esc(summary.join("  ·  "))}</text>`);
  }

  if (!losses.length) {
    out.push(
      `<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="${COLORS.grid}"/>`,
      `<text x="${m.left + pw / 2}" y="${m.top + ph / 2}" font-size="14" text-anchor="middle" fill="${COLORS.muted}">no data yet</text>`,
      `</svg>`,
    );
    return out.join("\n") + "\n";
  }

  let [x0, x1] = [Math.min(...steps), Math.max(...steps)];
  if (x1 === x0) [x0, x1] = [x0 - 1, x1 + 1];
  let [y0, y1] = [Math.min(...losses), Math.max(...losses)];
  const pad = (y1 - y0) * 0.05 || Math.abs(y0) * 0.05 || 0.5;
  [y0, y1] = [y0 - pad, y1 + pad];
  // steps are integers: never a 1.5 tick
  const xt = niceTicks(x0, x1, 6, 1).filter((v) => v >= x0 - 1e-9 && v <= x1 + 1e-9);
  const yt = niceTicks(y0, y1, 5);
  [y0, y1] = [Math.min(y0, yt[0]), Math.max(y1, yt[yt.length - 1])];
  const X = (s: number) => m.left + ((s - x0) / (x1 - x0)) * pw;
  const Y = (l: number) => m.top + ph - ((l - y0) / (y1 - y0)) * ph;
  const xStep = xt.length > 1 ? xt[1] - xt[0] : 1, yStep = yt.length > 1 ? yt[1] - yt[0] : 1;
  const xThousands = xt[xt.length - 1] >= 10000 && xStep >= 1000; // "5k, 10k" rather than "5000, 10k"

  // grid and ticks
  out.push(`<g font-size="11" fill="${COLORS.muted}">`);
  for (const v of yt) {
    const y = Y(v).toFixed(1);
    out.push(
      `<line x1="${m.left}" x2="${m.left + pw}" y1="${y}" y2="${y}" stroke="${COLORS.grid}"/>`,
      `<text x="${m.left - 8}" y="${y}" dy="0.32em" text-anchor="end">${tickLabel(v, yStep)}</text>`,
    );
  }
  for (const v of xt) {
    const x = X(v).toFixed(1);
    out.push(
      `<line x1="${x}" x2="${x}" y1="${m.top}" y2="${m.top + ph}" stroke="${COLORS.grid}"/>`,
      `<text x="${x}" y="${m.top + ph + 18}" text-anchor="middle">${tickLabel(v, xStep, xThousands)}</text>`,
    );
  }
  out.push(`</g>`);
  out.push(
    `<path d="M${m.left},${m.top}V${m.top + ph}H${m.left + pw}" fill="none" stroke="${COLORS.axis}" stroke-width="1"/>`,
    `<text x="${m.left + pw / 2}" y="${H - 12}" font-size="12" text-anchor="middle" fill="${COLORS.text}">step</text>`,
    `<text transform="translate(18 ${m.top + ph / 2}) rotate(-90)" font-size="12" text-anchor="middle" fill="${COLORS.text}">loss</text>`,
  );

  // curves, clipped to the plot area
  out.push(`<defs><clipPath id="plot"><rect x="${m.left}" y="${m.top - 4}" width="${pw + 4}" height="${ph + 8}"/></clipPath></defs>`);
  out.push(`<g clip-path="url(#plot)" fill="none" stroke-linejoin="round" stroke-linecap="round">`);
  const legend: { label: string; swatch: string }[] = [];
  if (train.length) {
    const tx = train.map((p) => X(p.step)), ty = train.map((p) => p.loss!);
    const smooth = smoothing > 0 && train.length >= SMOOTH_MIN_POINTS;
    if (smooth) {
      out.push(`<path d="${path(tx, ty.map(Y))}" stroke="${COLORS.train}" stroke-opacity="0.3" stroke-width="1.2"/>`);
      out.push(`<path d="${path(tx, ema(ty, smoothing).map(Y))}" stroke="${COLORS.train}" stroke-width="2.2"/>`);
      legend.push({ label: "train loss (smoothed)", swatch: `<line x1="0" x2="22" y1="0" y2="0" stroke="${COLORS.train}" stroke-width="2.2"/>` });
      legend.push({ label: "train loss", swatch: `<line x1="0" x2="22" y1="0" y2="0" stroke="${COLORS.train}" stroke-opacity="0.35" stroke-width="1.2"/>` });
    } else {
      out.push(`<path d="${path(tx, ty.map(Y))}" stroke="${COLORS.train}" stroke-width="2"/>`);
      if (train.length === 1) out.push(`<circle cx="${tx[0].toFixed(1)}" cy="${Y(ty[0]).toFixed(1)}" r="3" fill="${COLORS.train}"/>`);
      legend.push({ label: "train loss", swatch: `<line x1="0" x2="22" y1="0" y2="0" stroke="${COLORS.train}" stroke-width="2"/>` });
    }
  }
  if (evals.length) {
    const ex = evals.map((p) => X(p.step)), ey = evals.map((p) => Y(p.evalLoss!));
    out.push(`<path d="${path(ex, ey)}" stroke="${COLORS.eval}" stroke-width="2" stroke-dasharray="6 4"/>`);
    for (let i = 0; i < ex.length; i++) {
      out.push(`<circle cx="${ex[i].toFixed(1)}" cy="${ey[i].toFixed(1)}" r="4" fill="${COLORS.eval}" stroke="#ffffff" stroke-width="1.5"/>`);
    }
    legend.push({
      label: "eval loss",
      swatch: `<line x1="0" x2="22" y1="0" y2="0" stroke="${COLORS.eval}" stroke-width="2" stroke-dasharray="6 4"/>` +
        `<circle cx="11" cy="0" r="4" fill="${COLORS.eval}" stroke="#ffffff" stroke-width="1.5"/>`,
    });
  }
  out.push(`</g>`);

  // legend, top right inside the plot
  const lw = 30 + Math.max(...legend.map((l) => l.label.length)) * 6.6, lh = 12 + legend.length * 20;
  const lx = m.left + pw - lw - 10, ly = m.top + 10;
  out.push(`<g transform="translate(${lx.toFixed(1)} ${ly})" font-size="12" fill="${COLORS.text}">`);
  out.push(`<rect width="${lw.toFixed(1)}" height="${lh}" rx="6" fill="#ffffff" fill-opacity="0.9" stroke="${COLORS.grid}"/>`);
  legend.forEach((l, i) => {
    out.push(`<g transform="translate(10 ${16 + i * 20})">${l.swatch}<text x="30" y="0" dy="0.32em">${esc(l.label)}</text></g>`);
  });
  out.push(`</g>`, `</svg>`);
  return out.join("\n") + "\n";
}

/** Loss points from metrics.jsonl records (train records give loss, eval records evalLoss). */
export function pointsFromMetrics(records: readonly MetricRecord[]): LossPoint[] {
  return records.map((r) => ({ step: r.step, loss: r.loss, evalLoss: r.eval_loss }));
}

/** Writes <outputDir>/loss.svg atomically (a crash mid-write never leaves half a picture). */
export async function writeLossCurve(outputDir: string, points: readonly LossPoint[], opts: LossSvgOptions = {}): Promise<string> {
  const path = join(outputDir, "loss.svg");
  await writeFileAtomic(path, new TextEncoder().encode(lossCurveSvg(points, opts)));
  return path;
}
