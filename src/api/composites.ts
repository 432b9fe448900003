/** Composites: graph functions over primitives, not new kernels. Their gradients come from the
 *  primitives' rules; fusion makes them as fast as a hand-written kernel would be. */
import { KilnError } from "../ir/errors.ts";
import { normAxis } from "../ir/shape.ts";
import type { DType } from "../ir/types.ts";
import type { Tensor } from "./builder.ts";

const axisOf = (x: Tensor, axis: number): number => {
  const a = normAxis(axis, x.rank);
  if (a === undefined) throw new KilnError(`axis ${axis} is out of range for a tensor of rank ${x.rank}`);
  return a;
};

/** Subtracting the row max first keeps exp from overflowing: softmax(x) = softmax(x − max x). */
export function softmax(x: Tensor, axis = -1): Tensor {
  const a = axisOf(x, axis);
  const e = x.sub(x.max(a, true)).exp();
  return e.div(e.sum(a, true));
}

/** log softmax(x) = (x − m) − log Σ exp(x − m), m = max x: no exp overflow, no log(0). */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  const a = axisOf(x, axis);
  const z = x.sub(x.max(a, true));
  return z.sub(z.exp().sum(a, true).log());
}

/** log Σ exp(x) = m + log Σ exp(x − m), m = max x. */
export function logsumexp(x: Tensor, axes: number | readonly number[] = -1, keepdims = false): Tensor {
  const list = (typeof axes === "number" ? [axes] : axes).map((a) => axisOf(x, a));
  const m = x.max(list, true);
  const r = x.sub(m).exp().sum(list, true).log().add(m);
  return keepdims ? r : r.reshape(x.shape.filter((_, i) => !list.includes(i)));
}

/** x where x > 0, else alpha·x. */
export function leakyRelu(x: Tensor, alpha = 0.01): Tensor {
  return x.gt(0).select(x, x.mul(alpha));
}

/** Maxout: the max over groups of `pieces` consecutive units of the last axis,
 *  [..., C] → [..., C / pieces]. */
export function maxout(x: Tensor, pieces: number): Tensor {
  const c = x.shape[x.rank - 1];
  if (typeof c !== "number" || !Number.isInteger(pieces) || pieces < 1 || c % pieces !== 0) {
    throw new KilnError(`maxout: the last axis (${c}) must be a static multiple of pieces (${pieces})`);
  }
  return x.reshape([...x.shape.slice(0, -1), c / pieces, pieces]).max(-1);
}

/** oneHot(indices, depth): [...S] i32 → [...S, depth], 1 where the new axis's position equals
 *  the index, else 0; an index outside 0..depth-1 gives a row of zeros. An iota compared with
 *  the indices expanded along the new axis, then cast: no primitive of its own. */
export function oneHot(indices: Tensor, depth: number, dtype: DType = "f32"): Tensor {
  if (indices.dtype !== "i32") throw new KilnError(`oneHot: indices must be i32, got ${indices.dtype}`);
  if (!Number.isInteger(depth) || depth < 1) throw new KilnError(`oneHot: depth must be a positive integer, got ${depth}`);
  const shape = [...indices.shape, depth];
  const positions = indices.builder.iota(shape, indices.rank, "i32");
  return positions.eq(indices.reshape([...indices.shape, 1]).expand(shape)).cast(dtype);
}
