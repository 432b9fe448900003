/** Composites: graph functions over primitives, not new kernels. Their gradients come from the
 *  primitives' rules; fusion makes them as fast as a hand-written kernel would be. */
import { KilnError } from "../ir/errors.ts";
import { formatType, normAxis, shapeEq } from "../ir/shape.ts";
import type { Tensor } from "./builder.ts";
import { customGradient } from "./grad.ts";
import { oneHot } from "./one-hot.ts";

export { oneHot };

const axisOf = (x: Tensor, axis: number): number => {
  const a = normAxis(axis, x.rank);
  if (a === undefined) throw new KilnError(`axis ${axis} is out of range for a tensor of rank ${x.rank}`);
  return a;
};

/** The max over `axes` (kept), through which no gradient flows. The shift by it below cancels
 *  mathematically, so its gradient terms sum to zero: stopping them keeps the backward graph
 *  small and exact, as JAX does. */
const shift = (x: Tensor, axes: number | readonly number[]): Tensor => x.max(axes, true).stopGradient();

/** Subtracting the row max first keeps exp from overflowing: softmax(x) = softmax(x − max x). */
export function softmax(x: Tensor, axis = -1): Tensor {
  const a = axisOf(x, axis);
  const e = x.sub(shift(x, a)).exp();
  return e.div(e.sum(a, true));
}

/** log softmax(x) = (x − m) − log Σ exp(x − m), m = max x: no exp overflow, no log(0). */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  const a = axisOf(x, axis);
  const z = x.sub(shift(x, a));
  return z.sub(z.exp().sum(a, true).log());
}

/** log Σ exp(x) = m + log Σ exp(x − m), m = max x. */
export function logsumexp(x: Tensor, axes: number | readonly number[] = -1, keepdims = false): Tensor {
  const list = (typeof axes === "number" ? [axes] : axes).map((a) => axisOf(x, a));
  const m = shift(x, list);
  const r = x.sub(m).exp().sum(list, true).log().add(m);
  return keepdims ? r : r.reshape(x.shape.filter((_, i) => !list.includes(i)));
}

/** x where x > 0, else alpha·x. */
export function leakyRelu(x: Tensor, alpha = 0.01): Tensor {
  return x.gt(0).select(x, x.mul(alpha));
}

/** Batch normalisation with given statistics, over the last axis (channels):
 *  (x − mean) / √(variance + ε) · gamma + beta, each of mean, variance, gamma, beta [C] (or
 *  broadcastable). The batchNorm layer (./layers.ts) calls it with the batch's statistics in
 *  training and the moving ones in inference; use it directly in a graph or a custom layer. */
export function batchNormalization(
  x: Tensor,
  stats: { mean: Tensor; variance: Tensor; gamma?: Tensor; beta?: Tensor; epsilon?: number },
): Tensor {
  const eps = stats.epsilon ?? 1e-3;
  if (!(Number.isFinite(eps) && eps > 0)) throw new KilnError(`batchNormalization: epsilon must be a number > 0, got ${eps}`);
  let scale = stats.variance.add(eps).rsqrt();
  if (stats.gamma) scale = scale.mul(stats.gamma);
  const y = x.sub(stats.mean).mul(scale);
  return stats.beta ? y.add(stats.beta) : y;
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

// ---- losses: scalars, the mean over examples ----

function sameShape(what: string, a: Tensor, b: Tensor): void {
  if (!shapeEq(a.shape, b.shape)) throw new KilnError(`${what}: shapes differ (${formatType(a.type)} vs ${formatType(b.type)})`);
}

/** Cross-entropy of softmax(logits) against `labels`, a probability distribution along `axis`
 *  of logits' shape: the mean over the other axes of −Σ labels · logSoftmax(logits).
 *  Its gradient with respect to the logits is the textbook (softmax(logits) − labels) / count,
 *  as TF's softmax_cross_entropy_with_logits gives it: the chain rule alone would give
 *  softmax·Σlabels − labels, equal only because the labels sum to 1, which is this function's
 *  contract (one-hot rows and label smoothing keep it). */
export function softmaxCrossEntropy(logits: Tensor, labels: Tensor, axis = -1): Tensor {
  sameShape("softmaxCrossEntropy", logits, labels);
  return crossEntropyRows(logits, labels, axisOf(logits, axis)).mean();
}

/** −Σ labels · logSoftmax(logits) along `axis`, with the gradient rule above; wrt the labels
 *  it is −logSoftmax(logits). */
function crossEntropyRows(logits: Tensor, labels: Tensor, axis: number): Tensor {
  const logP = logSoftmax(logits, axis);
  const rows = labels.mul(logP).sum(axis).neg();
  return customGradient(rows, [logits, labels], (g) => {
    const gk = g.reshape(logits.shape.map((d, i) => (i === axis ? 1 : d))).expand(logits.shape);
    return [gk.mul(softmax(logits, axis).sub(labels)), gk.mul(logP).neg()];
  });
}

/** softmaxCrossEntropy with the labels as i32 class indices, of logits' shape without the last
 *  axis; the mean is over all of them. An index outside 0..C−1 (−1 for padding, say) adds
 *  nothing to the loss and gets no gradient: its row is masked, so the gradient stays
 *  (softmax − onehot) / count on the valid rows. */
export function sparseSoftmaxCrossEntropy(logits: Tensor, labels: Tensor): Tensor {
  if (logits.rank === 0 || labels.dtype !== "i32" || !shapeEq(labels.shape, logits.shape.slice(0, -1))) {
    throw new KilnError(
      `sparseSoftmaxCrossEntropy: needs i32 labels of the logits' shape without the last axis (logits ${formatType(logits.type)}, labels ${formatType(labels.type)})`,
    );
  }
  const classes = logits.shape[logits.rank - 1];
  const valid = labels.ge(0).and(labels.lt(typeof classes === "number" ? classes : logits.builder.iota([classes], 0).max().add(1)));
  const rows = crossEntropyRows(logits, oneHot(labels, classes), logits.rank - 1);
  return valid.select(rows, 0).mean();
}

/** Binary cross-entropy of sigmoid(z) against labels y in [0, 1], stable for any |z|:
 *      mean( max(z, 0) − z·y + log(1 + exp(−|z|)) )
 *  with max(z, 0) = z·p and |z| = z·(2p − 1), p = [z ≥ 0] (no gradient of its own): the kinks of
 *  max and abs at 0 then cancel exactly, and the gradient is sigmoid(z) − y everywhere, z = 0 too. */
export function sigmoidBinaryCrossEntropy(logits: Tensor, labels: Tensor): Tensor {
  sameShape("sigmoidBinaryCrossEntropy", logits, labels);
  const p = logits.ge(0).cast("f32");
  const absZ = logits.mul(p.mul(2).sub(1));
  return logits.mul(p).sub(logits.mul(labels)).add(absZ.neg().exp().add(1).log()).mean();
}

/** Mean squared error. The shapes must match: a broadcast ([B,1] against [B]) is a classic bug. */
export function mse(pred: Tensor, target: Tensor): Tensor {
  sameShape("mse", pred, target);
  const d = pred.sub(target);
  return d.mul(d).mean();
}
