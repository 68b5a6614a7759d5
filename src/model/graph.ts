/**
 * Reverse-mode autodiff over the backend's ops, small enough to hold in your head.
 *
 * The block and every PEFT hook are written once as calls on a Graph. Without gradients
 * (inference, eval, the CPU reference) each call just runs the op and intermediates are freed
 * as soon as the forward code frees them. With gradients, each op whose inputs need a gradient
 * records a node with what its backward needs (saved values) and a backward rule written in the
 * backend's ops; `backward(out, dOut)` replays the nodes in reverse. Only values downstream of a
 * trainable parameter need gradients, so nothing is computed for frozen weights, and the
 * backward stops below the lowest adapted layer.
 *
 * Ownership: every op returns a value holding one forward reference; the forward code calls
 * `free(v)` when it is done with it. A node that saves a value holds another reference. A
 * buffer goes back to the pool when no reference is left. Ops that "consume" their accumulator
 * (matmulAdd, baseLinearAdd, rope) take over the caller's reference and write in place when
 * nothing else holds the buffer (inference: the residual stream is accumulated in place).
 */
import { PeftError } from "../errors.ts";
import { type Activation, type AttentionArgs, type Backend, colsOf, type MatmulArgs, type RopeArgs, rowsOf } from "./backend.ts";

/** A trainable (or frozen) tensor that lives outside the graph; gradients accumulate into `grad`. */
export interface Param<T> {
  value: T;
  /** Gradient accumulation buffer, same shape as value: present = trainable. */
  grad?: T;
}

export class V<T> {
  /** Forward references plus saves by nodes. */
  refs = 1;
  constructor(
    public t: T | null,
    readonly shape: number[],
    readonly requiresGrad: boolean,
    /** The graph releases the buffer when the last reference goes (false for weights and params). */
    readonly owned: boolean,
    readonly param?: Param<T>,
  ) {}
  get rows(): number {
    return rowsOf(this.shape);
  }
  get cols(): number {
    return colsOf(this.shape);
  }
  /** The live buffer (throws on a freed value: a use-after-free in the model code). */
  get value(): T {
    if (this.t === null) throw new PeftError("GRAPH_FREED", "graph: a value was used after it was freed");
    return this.t;
  }
}

interface Node<T> {
  out: V<T>;
  saved: V<T>[];
  backward(dy: T, acc: Acc<T>): void;
}

export interface GraphOptions {
  /** Record nodes for backward. */
  grad: boolean;
  /** Dropout active (training) or identity (eval, inference). */
  training: boolean;
  /** Seed of this pass: hooks derive their dropout masks from it (same seed, same masks). */
  seed: number;
}

/** Gradient bookkeeping during backward: grads per value, shared buffers counted. */
export class Acc<T> {
  readonly grads = new Map<V<T>, T>();
  private readonly holders = new Map<T, number>();
  /** Buffers owned by someone else (a checkpointed block's incoming gradient): never released here. */
  private readonly borrowed = new Set<T>();
  constructor(private readonly be: Backend<T>) {}

  borrow(t: T) {
    this.borrowed.add(t);
  }
  isBorrowed(t: T): boolean {
    return this.borrowed.has(t);
  }
  private hold(t: T) {
    this.holders.set(t, (this.holders.get(t) ?? 0) + 1);
  }
  /** Drops one holder of t; the last one releases it (unless borrowed). */
  drop(t: T) {
    const n = (this.holders.get(t) ?? 0) - 1;
    if (n > 0) return void this.holders.set(t, n);
    this.holders.delete(t);
    if (!this.borrowed.has(t)) this.be.release(t);
  }
  /** Forgets t without releasing it (its ownership moves elsewhere). */
  disown(t: T) {
    this.holders.delete(t);
  }

  /** A buffer the rule may accumulate v's gradient into (its param grad, or an unshared grad). */
  private target(v: V<T>): T | undefined {
    if (v.param?.grad) return v.param.grad;
    const g = this.grads.get(v);
    return g !== undefined && this.holders.get(g) === 1 && !this.borrowed.has(g) ? g : undefined;
  }

  /** Adds a gradient contribution computed by `fn` (into the target buffer when there is one). */
  accumulate(v: V<T>, fn: (into: T | undefined) => T): void {
    if (!v.requiresGrad) return;
    const into = this.target(v);
    const r = fn(into);
    if (into === undefined) this.add(v, r);
  }

  /** Adds an owned gradient tensor `g` (given up by the caller) to v's gradient. */
  add(v: V<T>, g: T): void {
    if (!v.requiresGrad) return void this.be.release(g);
    if (!this.merge(v, g)) {
      this.grads.set(v, g);
      this.hold(g);
      return;
    }
    this.be.release(g);
  }

  /** Adds dy to v's gradient without taking it: v shares dy when it has no gradient yet. */
  pass(v: V<T>, dy: T): void {
    if (!v.requiresGrad) return;
    if (!this.merge(v, dy)) {
      this.grads.set(v, dy);
      this.hold(dy);
    }
  }

  /** Adds g into v's existing gradient (param grad, unshared grad, or a new sum); false when v has none. */
  private merge(v: V<T>, g: T): boolean {
    if (v.param?.grad) {
      this.be.addInto(v.param.grad, g);
      return true;
    }
    const have = this.grads.get(v);
    if (have === undefined) return false;
    if (this.target(v) === have) {
      this.be.addInto(have, g);
    } else {
      const sum = this.be.add(have, g);
      this.grads.set(v, sum);
      this.hold(sum);
      this.drop(have);
    }
    return true;
  }

  /** Removes and returns v's gradient (still counted as held: `drop` or `disown` it). */
  take(v: V<T>): T | undefined {
    const g = this.grads.get(v);
    if (g !== undefined) this.grads.delete(v);
    return g;
  }

  releaseAll() {
    for (const g of this.grads.values()) this.drop(g);
    this.grads.clear();
  }
}

export class Graph<T> {
  private nodes: Node<T>[] = [];
  private memos = new Map<unknown, V<T>>();

  constructor(readonly be: Backend<T>, readonly o: GraphOptions) {}

  get grad(): boolean {
    return this.o.grad;
  }
  get training(): boolean {
    return this.o.training;
  }
  get seed(): number {
    return this.o.seed;
  }

  // ------------------------------------------------------------------ values

  /** A frozen tensor owned elsewhere (weights, KV cache): never released, never differentiated. */
  constant(t: T): V<T> {
    return new V(t, this.be.shape(t), false, false);
  }

  /** A parameter owned elsewhere: differentiated (into p.grad) when the graph records and p.grad is set. */
  param(p: Param<T>): V<T> {
    return new V(p.value, this.be.shape(p.value), this.o.grad && !!p.grad, false, p);
  }

  /** An owned tensor entering the graph (released when its references end). */
  input(t: T, requiresGrad = false): V<T> {
    return new V(t, this.be.shape(t), this.o.grad && requiresGrad, true);
  }

  /** The forward code is done with v. */
  free(v: V<T>): void {
    if (--v.refs > 0) return;
    if (v.refs < 0) throw new PeftError("GRAPH_FREED", "graph: a value was freed twice");
    if (v.owned && v.t !== null) this.be.release(v.t);
    v.t = null;
  }

  /** Another forward reference to v (free it separately). */
  keep(v: V<T>): V<T> {
    v.refs++;
    return v;
  }

  /** Takes the buffer out of an owned value (the caller becomes its owner); v must hold its last reference. */
  detach(v: V<T>): T {
    if (v.refs !== 1 || !v.owned) throw new PeftError("GRAPH_FREED", "graph: detach needs the last reference of an owned value");
    const t = v.value;
    v.t = null;
    v.refs = 0;
    return t;
  }

  private out(t: T, requiresGrad: boolean): V<T> {
    return new V(t, this.be.shape(t), this.o.grad && requiresGrad, true);
  }

  /** Records a node when some input needs a gradient; saves what its backward reads. */
  private record(out: V<T>, inputs: V<T>[], saved: V<T>[], backward: (dy: T, acc: Acc<T>) => void): V<T> {
    if (!this.o.grad || !inputs.some((v) => v.requiresGrad)) return out;
    for (const s of saved) s.refs++;
    this.nodes.push({ out, saved, backward });
    return out;
  }

  private needs(...vs: V<T>[]): boolean {
    return this.o.grad && vs.some((v) => v.requiresGrad);
  }

  /** True when v's buffer may be written in place by a consuming op (only the caller holds it). */
  private consumable(v: V<T>): boolean {
    return v.owned && v.refs === 1 && v.t !== null;
  }

  // ------------------------------------------------------------------ ops

  /** alpha·op(a)·op(b). */
  matmul(a: V<T>, b: V<T>, o: { transA?: boolean; transB?: boolean; alpha?: number } = {}): V<T> {
    const args = matmulArgs(a, b, o);
    const y = this.out(this.be.matmul(a.value, b.value, args), a.requiresGrad || b.requiresGrad);
    return this.record(y, [a, b], [...(b.requiresGrad ? [a] : []), ...(a.requiresGrad ? [b] : [])], (dy, acc) => {
      matmulGrads(this.be, a, b, args, dy, acc);
    });
  }

  /** acc + alpha·op(a)·op(b); consumes acc (written in place when nothing else holds it). */
  matmulAdd(acc: V<T>, a: V<T>, b: V<T>, o: { transA?: boolean; transB?: boolean; alpha?: number } = {}): V<T> {
    const args = matmulArgs(a, b, o);
    const buf = this.takeForWrite(acc);
    this.be.matmul(a.value, b.value, args, buf);
    const y = this.out(buf, acc.requiresGrad || a.requiresGrad || b.requiresGrad);
    return this.record(y, [acc, a, b], [...(b.requiresGrad ? [a] : []), ...(a.requiresGrad ? [b] : [])], (dy, g) => {
      g.pass(acc, dy);
      matmulGrads(this.be, a, b, args, dy, g);
    });
  }

  /** y = x·Wᵀ for the frozen base linear `name`. */
  baseLinear(x: V<T>, name: string): V<T> {
    const y = this.out(this.be.baseLinear(x.value, name, x.rows), x.requiresGrad);
    return this.record(y, [x], [], (dy, acc) => {
      acc.accumulate(x, (into) => this.be.baseLinearBackward(dy, name, x.rows, into));
    });
  }

  /** acc + x·Wᵀ; consumes acc (in place when nothing else holds it: the residual stream in inference). */
  baseLinearAdd(acc: V<T>, x: V<T>, name: string): V<T> {
    let t: T;
    if (this.consumable(acc)) {
      t = this.takeForWrite(acc);
      this.be.baseLinear(x.value, name, x.rows, t);
    } else {
      const yb = this.be.baseLinear(x.value, name, x.rows);
      t = this.be.add(acc.value, yb);
      this.be.release(yb);
      this.free(acc);
    }
    const y = this.out(t, acc.requiresGrad || x.requiresGrad);
    return this.record(y, [acc, x], [], (dy, g) => {
      g.pass(acc, dy);
      g.accumulate(x, (into) => this.be.baseLinearBackward(dy, name, x.rows, into));
    });
  }

  add(a: V<T>, b: V<T>): V<T> {
    const y = this.out(this.be.add(a.value, b.value), a.requiresGrad || b.requiresGrad);
    return this.record(y, [a, b], [], (dy, acc) => {
      acc.pass(a, dy);
      acc.pass(b, dy);
    });
  }

  /** a + alpha·b. */
  axpy(a: V<T>, b: V<T>, alpha: number): V<T> {
    const y = this.out(this.be.add(a.value, b.value, alpha), a.requiresGrad || b.requiresGrad);
    return this.record(y, [a, b], [], (dy, acc) => {
      acc.pass(a, dy);
      if (b.requiresGrad) acc.add(b, this.be.scale(dy, alpha));
    });
  }

  /** Elementwise a / b for a constant b (no gradient flows into b). */
  div(a: V<T>, b: V<T>): V<T> {
    if (b.requiresGrad) throw new PeftError("GRAPH_UNSUPPORTED", "graph: div has no gradient for its divisor");
    const y = this.out(this.be.div(a.value, b.value), a.requiresGrad);
    return this.record(y, [a], [b], (dy, acc) => acc.add(a, this.be.div(dy, b.value)));
  }

  scale(x: V<T>, s: number): V<T> {
    const y = this.out(this.be.scale(x.value, s), x.requiresGrad);
    return this.record(y, [x], [], (dy, acc) => acc.add(x, this.be.scale(dy, s)));
  }

  mul(a: V<T>, b: V<T>): V<T> {
    const y = this.out(this.be.mul(a.value, b.value), a.requiresGrad || b.requiresGrad);
    return this.record(y, [a, b], [...(b.requiresGrad ? [a] : []), ...(a.requiresGrad ? [b] : [])], (dy, acc) => {
      if (a.requiresGrad) acc.add(a, this.be.mul(dy, b.value));
      if (b.requiresGrad) acc.add(b, this.be.mul(dy, a.value));
    });
  }

  /** Inverted dropout with the counter-based mask of `seed`; identity (another reference) when not training. */
  dropout(x: V<T>, p: number, seed: number): V<T> {
    if (!this.o.training || p === 0) return this.keep(x);
    const y = this.out(this.be.dropout(x.value, p, seed), x.requiresGrad);
    return this.record(y, [x], [], (dy, acc) => acc.add(x, this.be.dropout(dy, p, seed)));
  }

  /** y[r, c] = x[r, c]·v[c]. */
  mulCols(x: V<T>, v: V<T>): V<T> {
    const rows = x.rows, cols = x.cols;
    checkVector(v, cols, "mulCols");
    const y = this.out(this.be.mulCols(x.value, v.value, rows, cols), x.requiresGrad || v.requiresGrad);
    return this.record(y, [x, v], [...(v.requiresGrad ? [x] : []), ...(x.requiresGrad ? [v] : [])], (dy, acc) => {
      if (x.requiresGrad) acc.add(x, this.be.mulCols(dy, v.value, rows, cols));
      acc.accumulate(v, (into) => this.be.colSum(dy, x.value, rows, cols, into));
    });
  }

  /** y[r, c] = x[r, c] + v[c] (a bias). */
  addCols(x: V<T>, v: V<T>): V<T> {
    const rows = x.rows, cols = x.cols;
    checkVector(v, cols, "addCols");
    const y = this.out(this.be.addCols(x.value, v.value, rows, cols), x.requiresGrad || v.requiresGrad);
    return this.record(y, [x, v], [], (dy, acc) => {
      acc.pass(x, dy);
      acc.accumulate(v, (into) => this.be.colSum(dy, undefined, rows, cols, into));
    });
  }

  /** RMSNorm of the rows of x with weight w ([cols]). */
  rmsnorm(x: V<T>, w: V<T>, eps: number): V<T> {
    const N = x.rows, C = x.cols;
    checkVector(w, C, "rmsnorm");
    const { y: yt, rstd: rt } = this.be.rmsnorm(x.value, w.value, N, C, eps);
    const rstd = this.out(rt, false);
    const y = this.out(yt, x.requiresGrad || w.requiresGrad);
    this.record(y, [x, w], [x, w, rstd], (dy, acc) => {
      const { dx, dw } = this.be.rmsnormBackward(dy, x.value, w.value, rstd.value, N, C, w.requiresGrad);
      acc.add(x, dx);
      if (dw !== undefined) acc.add(w, dw);
    });
    this.free(rstd);
    return y;
  }

  /** RoPE at the positions of `o`; consumes x (rotated in place when nothing else holds it). */
  rope(x: V<T>, o: Omit<RopeArgs, "inverse">): V<T> {
    const inPlace = this.consumable(x);
    const t = this.be.rope(x.value, o, inPlace);
    if (inPlace) x.t = null, x.refs = 0;
    else this.free(x);
    const y = this.out(t, x.requiresGrad);
    return this.record(y, [x], [], (dy, acc) => acc.add(x, this.be.rope(dy, { ...o, inverse: true }, false)));
  }

  /** Causal attention; keys/values laid out per `o` (prefix rows first when pos0 > 0). */
  attention(q: V<T>, k: V<T>, v: V<T>, o: AttentionArgs): V<T> {
    const r = this.be.attention(q.value, k.value, v.value, o);
    const lse = this.out(r.lse, false);
    const y = this.out(r.out, q.requiresGrad || k.requiresGrad || v.requiresGrad);
    this.record(y, [q, k, v], [q, k, v, y, lse], (dy, acc) => {
      const g = this.be.attentionBackward(dy, q.value, k.value, v.value, y.value, lse.value, o);
      acc.add(q, g.dq);
      acc.add(k, g.dk);
      acc.add(v, g.dv);
    });
    this.free(lse);
    return y;
  }

  swiglu(gate: V<T>, up: V<T>): V<T> {
    const y = this.out(this.be.swiglu(gate.value, up.value), gate.requiresGrad || up.requiresGrad);
    return this.record(y, [gate, up], [gate, up], (dy, acc) => {
      const { dgate, dup } = this.be.swigluBackward(dy, gate.value, up.value);
      acc.add(gate, dgate);
      acc.add(up, dup);
    });
  }

  /** Rows of the table at `ids` (a backend ids tensor, owned by the caller). */
  embedding(table: V<T>, ids: T): V<T> {
    const y = this.out(this.be.embedding(table.value, ids), table.requiresGrad);
    return this.record(y, [table], [], (dy) => {
      if (table.param?.grad) this.be.embeddingBackward(dy, ids, table.param.grad);
    });
  }

  /**
   * A new [rows, cols] value made of blocks of other values (slices, concatenations, virtual-token
   * rows). Each piece copies `rows × cols` from (srcRow, srcCol) of its value to (dstRow, dstCol);
   * the backward copies the gradient blocks back, accumulating.
   */
  private assemble(shape: [number, number], pieces: { v: V<T>; rows: number; cols: number; srcRow: number; srcCol: number; dstRow: number; dstCol: number }[], covered: boolean): V<T> {
    const out = covered ? this.be.empty(shape) : this.be.zeros(shape);
    for (const p of pieces) {
      this.be.copyBlock(p.v.value, out, { rows: p.rows, cols: p.cols, srcCols: p.v.cols, srcRow: p.srcRow, srcCol: p.srcCol, dstCols: shape[1], dstRow: p.dstRow, dstCol: p.dstCol });
    }
    const y = this.out(out, pieces.some((p) => p.v.requiresGrad));
    const inputs = [...new Set(pieces.map((p) => p.v))];
    return this.record(y, inputs, [], (dy, acc) => {
      for (const v of inputs) {
        acc.accumulate(v, (into) => {
          const g = into ?? this.be.zeros(v.shape);
          for (const p of pieces.filter((q) => q.v === v)) {
            this.be.copyBlock(dy, g, { rows: p.rows, cols: p.cols, srcCols: shape[1], srcRow: p.dstRow, srcCol: p.dstCol, dstCols: v.cols, dstRow: p.srcRow, dstCol: p.srcCol, accumulate: true });
          }
          return g;
        });
      }
    });
  }

  /** Rows [row0, row0 + rows) of x. */
  sliceRows(x: V<T>, row0: number, rows: number): V<T> {
    return this.assemble([rows, x.cols], [{ v: x, rows, cols: x.cols, srcRow: row0, srcCol: 0, dstRow: 0, dstCol: 0 }], true);
  }

  /** Columns [col0, col0 + cols) of x. */
  sliceCols(x: V<T>, col0: number, cols: number): V<T> {
    return this.assemble([x.rows, cols], [{ v: x, rows: x.rows, cols, srcRow: 0, srcCol: col0, dstRow: 0, dstCol: 0 }], true);
  }

  /** The rows of several values stacked (same column count). */
  concatRows(parts: V<T>[]): V<T> {
    const C = parts[0].cols;
    if (parts.some((p) => p.cols !== C)) throw new PeftError("BAD_SHAPE", `graph concatRows: parts have ${parts.map((p) => p.cols).join(", ")} columns`);
    let r = 0;
    const pieces = parts.map((v) => ({ v, rows: v.rows, cols: C, srcRow: 0, srcCol: 0, dstRow: (r += v.rows) - v.rows, dstCol: 0 }));
    return this.assemble([r, C], pieces, true);
  }

  /** Several values side by side (same row count). */
  concatCols(parts: V<T>[]): V<T> {
    const R = parts[0].rows;
    if (parts.some((p) => p.rows !== R)) throw new PeftError("BAD_SHAPE", `graph concatCols: parts have ${parts.map((p) => p.rows).join(", ")} rows`);
    let c = 0;
    const pieces = parts.map((v) => ({ v, rows: R, cols: v.cols, srcRow: 0, srcCol: 0, dstRow: 0, dstCol: (c += v.cols) - v.cols }));
    return this.assemble([R, c], pieces, true);
  }

  /** x with some of its row ranges replaced by other values (ranges in any order, never overlapping). */
  replaceRows(x: V<T>, parts: readonly { row0: number; v: V<T> }[]): V<T> {
    const R = x.rows, C = x.cols;
    const pieces = [];
    let r = 0;
    for (const p of [...parts].sort((a, b) => a.row0 - b.row0)) {
      if (p.v.cols !== C || p.row0 < r || p.row0 + p.v.rows > R) {
        throw new PeftError("BAD_SHAPE", `graph replaceRows: [${p.v.shape}] at row ${p.row0} does not fit x [${x.shape}] (or overlaps)`);
      }
      if (p.row0 > r) pieces.push({ v: x, rows: p.row0 - r, cols: C, srcRow: r, srcCol: 0, dstRow: r, dstCol: 0 });
      pieces.push({ v: p.v, rows: p.v.rows, cols: C, srcRow: 0, srcCol: 0, dstRow: p.row0, dstCol: 0 });
      r = p.row0 + p.v.rows;
    }
    if (r < R) pieces.push({ v: x, rows: R - r, cols: C, srcRow: r, srcCol: 0, dstRow: r, dstCol: 0 });
    return this.assemble([R, C], pieces, true);
  }

  /** For B sequences of x ([B·T, C]): the P rows of `prefix` ([P, C]) before each one's T rows -> [B·(P+T), C]. */
  prefixRows(prefix: V<T>, x: V<T>, B: number): V<T> {
    const P = prefix.rows, C = x.cols, T = x.rows / B;
    if (prefix.cols !== C || !Number.isInteger(T)) throw new PeftError("BAD_SHAPE", `graph prefixRows: prefix [${prefix.shape}] before ${B} sequences of x [${x.shape}]`);
    const pieces = [];
    for (let b = 0; b < B; b++) {
      pieces.push({ v: prefix, rows: P, cols: C, srcRow: 0, srcCol: 0, dstRow: b * (P + T), dstCol: 0 });
      pieces.push({ v: x, rows: T, cols: C, srcRow: b * T, srcCol: 0, dstRow: b * (P + T) + P, dstCol: 0 });
    }
    return this.assemble([B * (P + T), C], pieces, true);
  }

  /** A pointwise nonlinearity (relu, tanh, sigmoid, silu, gelu). */
  act(x: V<T>, fn: Activation): V<T> {
    const y = this.out(this.be.activation(x.value, fn), x.requiresGrad);
    return this.record(y, [x], [x], (dy, acc) => acc.add(x, this.be.activationBackward(dy, x.value, fn)));
  }

  /** Gives acc's buffer to a writer: itself when nothing else holds it, else a copy (acc is freed). */
  private takeForWrite(acc: V<T>): T {
    if (this.consumable(acc)) {
      const t = acc.t!;
      acc.t = null;
      acc.refs = 0;
      return t;
    }
    const t = this.be.copy(acc.value);
    this.free(acc);
    return t;
  }

  // ------------------------------------------------------------------ checkpointing

  /**
   * y = fn(x) without keeping fn's intermediates: the forward runs without recording, and the
   * backward runs fn again with recording (same seed, so the same dropout masks) to get the
   * gradients of x and of fn's parameters. Consumes x, as fn consumes its input (fn gets a
   * value it may free but never writes in place).
   */
  checkpoint(x: V<T>, fn: (g: Graph<T>, x: V<T>) => V<T>): V<T> {
    if (!this.o.grad) return fn(this, x);
    const sub = new Graph(this.be, { ...this.o, grad: false });
    const ys = fn(sub, sub.constant(x.value));
    const y = this.out(sub.detach(ys), true);
    sub.dispose();
    this.record(y, [y], [x], (dy, acc) => {
      const again = new Graph(this.be, this.o);
      const xi = new V<T>(x.value, x.shape, x.requiresGrad, false);
      const yi = fn(again, xi);
      const inner = again.backward(yi, dy, { retainGrads: [xi], borrowed: true });
      again.free(yi);
      again.dispose();
      const gx = inner.take(xi);
      if (gx !== undefined) {
        if (inner.isBorrowed(gx)) acc.pass(x, gx);
        else {
          inner.disown(gx);
          acc.add(x, gx);
        }
      }
      inner.releaseAll();
    });
    this.free(x);
    return y;
  }

  // ------------------------------------------------------------------ backward

  /**
   * Backpropagates dOut (the gradient of `out`) through every recorded node, accumulating into
   * the parameters' grad buffers. dOut is consumed unless `borrowed` (then it is never released
   * here). Gradients of `retainGrads` values stay in the returned accumulator (take them); the
   * rest are released.
   */
  backward(out: V<T>, dOut: T, o: { retainGrads?: V<T>[]; borrowed?: boolean } = {}): Acc<T> {
    const acc = new Acc(this.be);
    if (o.borrowed) acc.borrow(dOut);
    if (out.requiresGrad) acc.pass(out, dOut);
    else if (!o.borrowed) this.be.release(dOut);
    const keep = new Set(o.retainGrads ?? []);
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const n = this.nodes[i];
      const dy = acc.take(n.out);
      if (dy !== undefined) {
        n.backward(dy, acc);
        acc.drop(dy);
      }
      for (const s of n.saved) this.free(s);
    }
    this.nodes = [];
    for (const [v, g] of [...acc.grads]) {
      if (keep.has(v)) continue;
      acc.grads.delete(v);
      acc.drop(g);
    }
    return acc;
  }

  /**
   * A value computed once per pass (an adapter's prompt encoder output shared by every layer):
   * `make` runs on the first call; each call returns another reference (free it). The pass's own
   * reference goes at dispose.
   */
  memo(key: unknown, make: () => V<T>): V<T> {
    let v = this.memos.get(key);
    if (!v) this.memos.set(key, v = make());
    return this.keep(v);
  }

  /** Frees what recorded nodes and memos still hold (at the end of a pass, or one abandoned before its backward). */
  dispose(): void {
    for (const n of this.nodes) for (const s of n.saved) this.free(s);
    this.nodes = [];
    for (const v of this.memos.values()) this.free(v);
    this.memos.clear();
  }
}

function matmulArgs<T>(a: V<T>, b: V<T>, o: { transA?: boolean; transB?: boolean; alpha?: number }): MatmulArgs {
  const [ar, ac] = [a.rows, a.cols], [br, bc] = [b.rows, b.cols];
  const M = o.transA ? ac : ar, K = o.transA ? ar : ac;
  const Kb = o.transB ? bc : br, N = o.transB ? br : bc;
  if (K !== Kb) throw new PeftError("BAD_SHAPE", `graph matmul: op(a) is [${M}, ${K}] and op(b) is [${Kb}, ${N}]`);
  return { M, N, K, transA: !!o.transA, transB: !!o.transB, alpha: o.alpha ?? 1 };
}

/** Gradients of y = alpha·op(a)·op(b) into a and b. */
function matmulGrads<T>(be: Backend<T>, a: V<T>, b: V<T>, m: MatmulArgs, dy: T, acc: Acc<T>): void {
  const alpha = m.alpha ?? 1;
  // d op(a) = alpha·dy·op(b)ᵀ [M, K]; da = d op(a) (or its transpose).
  acc.accumulate(a, (into) =>
    m.transA
      ? be.matmul(b.value, dy, { M: m.K, N: m.M, K: m.N, transA: m.transB, transB: true, alpha }, into)
      : be.matmul(dy, b.value, { M: m.M, N: m.K, K: m.N, transB: !m.transB, alpha }, into));
  // d op(b) = alpha·op(a)ᵀ·dy [K, N]; db = d op(b) (or its transpose).
  acc.accumulate(b, (into) =>
    m.transB
      ? be.matmul(dy, a.value, { M: m.N, N: m.K, K: m.M, transA: true, transB: m.transA, alpha }, into)
      : be.matmul(a.value, dy, { M: m.K, N: m.N, K: m.M, transA: !m.transA, alpha }, into));
}

function checkVector<T>(v: V<T>, n: number, op: string): void {
  if (v.shape.reduce((a, b) => a * b, 1) !== n) {
    throw new PeftError("BAD_SHAPE", `graph ${op}: vector of shape [${v.shape}] does not match ${n} columns`);
  }
}
