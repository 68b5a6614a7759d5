/**
 * Small dense linear algebra on the host (f64): a truncated SVD of a low-rank product B·A, which
 * is all that combining LoRA adapters needs (rank-k approximations of Σ cᵢ·Bᵢ·Aᵢ). With
 * B [m, R] and A [R, n] the product has rank <= R, so the SVD reduces to R×R work:
 *   B = Qb·Rb, Aᵀ = Qa·Ra (Gram-Schmidt), Rb·Raᵀ = U·S·Vᵀ (one-sided Jacobi)
 *   B·A = (Qb·U)·S·(Qa·V)ᵀ
 */

/** Columns of a row-major [rows, cols] matrix orthonormalised in place (modified Gram-Schmidt); returns R [cols, cols]. */
function qr(M: Float64Array, rows: number, cols: number): Float64Array {
  const R = new Float64Array(cols * cols);
  for (let j = 0; j < cols; j++) {
    for (let i = 0; i < j; i++) {
      let d = 0;
      for (let r = 0; r < rows; r++) d += M[r * cols + i] * M[r * cols + j];
      R[i * cols + j] = d;
      for (let r = 0; r < rows; r++) M[r * cols + j] -= d * M[r * cols + i];
    }
    let n = 0;
    for (let r = 0; r < rows; r++) n += M[r * cols + j] ** 2;
    n = Math.sqrt(n);
    R[j * cols + j] = n;
    for (let r = 0; r < rows; r++) M[r * cols + j] = n > 1e-300 ? M[r * cols + j] / n : 0;
  }
  return R;
}

/** One-sided Jacobi SVD of a square [k, k] matrix: M = U·diag(S)·Vᵀ, S descending. */
function jacobiSvd(M: Float64Array, k: number): { U: Float64Array; S: Float64Array; V: Float64Array } {
  const U = M.slice(), V = new Float64Array(k * k);
  for (let i = 0; i < k; i++) V[i * k + i] = 1;
  for (let sweep = 0; sweep < 60; sweep++) {
    let off = 0;
    for (let p = 0; p < k - 1; p++) {
      for (let q = p + 1; q < k; q++) {
        let a = 0, b = 0, c = 0;
        for (let r = 0; r < k; r++) {
          a += U[r * k + p] ** 2;
          b += U[r * k + q] ** 2;
          c += U[r * k + p] * U[r * k + q];
        }
        if (Math.abs(c) <= 1e-15 * Math.sqrt(a * b)) continue;
        off = Math.max(off, Math.abs(c) / Math.sqrt(a * b));
        const zeta = (b - a) / (2 * c);
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const cs = 1 / Math.sqrt(1 + t * t), sn = cs * t;
        for (const X of [U, V]) {
          for (let r = 0; r < k; r++) {
            const xp = X[r * k + p], xq = X[r * k + q];
            X[r * k + p] = cs * xp - sn * xq;
            X[r * k + q] = sn * xp + cs * xq;
          }
        }
      }
    }
    if (off < 1e-14) break;
  }
  const S = new Float64Array(k);
  for (let j = 0; j < k; j++) {
    let n = 0;
    for (let r = 0; r < k; r++) n += U[r * k + j] ** 2;
    S[j] = Math.sqrt(n);
    for (let r = 0; r < k; r++) U[r * k + j] = S[j] > 1e-300 ? U[r * k + j] / S[j] : 0;
  }
  // Sort descending by singular value.
  const order = [...S.keys()].sort((x, y) => S[y] - S[x]);
  const perm = (X: Float64Array) => {
    const out = new Float64Array(k * k);
    for (let r = 0; r < k; r++) order.forEach((src, dst) => out[r * k + dst] = X[r * k + src]);
    return out;
  };
  return { U: perm(U), S: Float64Array.from(order.map((i) => S[i])), V: perm(V) };
}

/**
 * The best rank-`rank` factorisation of B·A (B [m, R], A [R, n], row-major): returns
 * Bk = U·S [m, rank] and Ak = Vᵀ [rank, n], so Bk·Ak is the truncated SVD of B·A.
 */
export function truncatedSvdOfProduct(B: Float64Array, A: Float64Array, m: number, R: number, n: number, rank: number): { B: Float32Array; A: Float32Array } {
  const Qb = B.slice();
  const Rb = qr(Qb, m, R);
  const Qa = new Float64Array(n * R);
  for (let i = 0; i < R; i++) for (let j = 0; j < n; j++) Qa[j * R + i] = A[i * n + j];
  const Ra = qr(Qa, n, R);
  const M = new Float64Array(R * R); // Rb · Raᵀ
  for (let i = 0; i < R; i++) {
    for (let j = 0; j < R; j++) {
      let s = 0;
      for (let t = 0; t < R; t++) s += Rb[i * R + t] * Ra[j * R + t];
      M[i * R + j] = s;
    }
  }
  const { U, S, V } = jacobiSvd(M, R);
  const Bk = new Float32Array(m * rank), Ak = new Float32Array(rank * n);
  for (let c = 0; c < Math.min(rank, R); c++) {
    for (let r = 0; r < m; r++) {
      let s = 0;
      for (let t = 0; t < R; t++) s += Qb[r * R + t] * U[t * R + c];
      Bk[r * rank + c] = s * S[c];
    }
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < R; t++) s += Qa[j * R + t] * V[t * R + c];
      Ak[c * n + j] = s;
    }
  }
  return { B: Bk, A: Ak };
}
