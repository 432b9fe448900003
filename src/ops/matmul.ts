/** matmul: batched, numpy style. [..., M, K] × [..., K, N] → [..., M, N]; the batch dims (all
 *  but the last two) broadcast, so [B,T,K] × [K,N] applies one weight to every row and
 *  [2,1,M,K] × [3,K,N] gives [2,3,M,N]. Both operands have rank ≥ 2: a vector is ambiguous
 *  (row or column?), so the user reshapes it and says which. The kernel is a tiled GEMM
 *  (compiler/wgsl/kernels/matmul.ts). */
import { formatTypes } from "../ir/errors.ts";
import { broadcastShapes } from "../ir/shape.ts";
import type { Dim } from "../ir/types.ts";
import { defineOp, fail, FLOAT, requireDtype } from "./def.ts";
import { forEachIndex, tensor64, type Tensor64 } from "./tensor64.ts";

export const matmul = defineOp({
  name: "matmul",
  arity: 2,
  attrs: {},
  infer: (ins) => {
    const [a, b] = ins;
    const both = `(${formatTypes(ins)})`;
    if (a.shape.length < 2 || b.shape.length < 2) fail(`matmul needs operands of rank ≥ 2; reshape a vector to [1,K] or [K,1] ${both}`);
    const dtype = requireDtype(ins, FLOAT, "matmul");
    const [m, k] = a.shape.slice(-2);
    const [k2, n] = b.shape.slice(-2);
    if (k !== k2) fail(`inner dims differ ${both}`);
    const batch = broadcastShapes([a.shape.slice(0, -2), b.shape.slice(0, -2)]);
    if (!batch) fail(`batch dims do not broadcast ${both}`);
    return { dtype, shape: [...batch, m, n] satisfies Dim[] };
  },
  reference: ([a, b], _attrs, out) => {
    const r = tensor64(out.dtype, out.shape);
    const batch = out.shape.slice(0, -2);
    const [m, n] = out.shape.slice(-2);
    const k = a.shape[a.shape.length - 1];
    forEachIndex(batch, (idx, flat) => {
      const pa = batchOffset(a, idx) * m * k;
      const pb = batchOffset(b, idx) * k * n;
      const pr = flat * m * n;
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let l = 0; l < k; l++) s += a.data[pa + i * k + l] * b.data[pb + l * n + j];
          r.data[pr + i * n + j] = s;
        }
      }
    });
    return r;
  },
  pattern: { kind: "gemm" },
  lower: { kind: "kernel", kernel: "matmul" },
  // C = A·B: ∂A = G·Bᵀ, ∂B = Aᵀ·G (the transposes are strided loads in the GEMM), each summed
  // over the batch dims its operand was broadcast along: [B,T,K] × [K,N] sums ∂B over B and T.
  vjp: ({ g, ins: [a, b] }) => [g.matmul(b.transpose()).sumTo(a.shape), a.transpose().matmul(g).sumTo(b.shape)],
});

/** Which matrix of `t` (rank ≥ 2) the output batch index `idx` reads: numpy broadcasting of
 *  the batch dims, aligned on the right, size-1 dims repeated. */
function batchOffset(t: Tensor64, idx: readonly number[]): number {
  const dims = t.shape.slice(0, -2);
  const off = idx.length - dims.length;
  let f = 0;
  dims.forEach((d, a) => (f = f * d + (d === 1 ? 0 : idx[a + off])));
  return f;
}
