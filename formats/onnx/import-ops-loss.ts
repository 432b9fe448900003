/** ONNX's losses, as its spec defines them over a one-hot of the targets (Kiln's iota = target):
 *    NegativeLogLikelihoodLoss: loss[n, d…] = −input[n, target[n, d…], d…] · weight[target]
 *    SoftmaxCrossEntropyLoss:   the same of logSoftmax(scores) along axis 1 (also an output)
 *  A target equal to ignore_index adds nothing and weighs nothing; "mean" divides by the summed
 *  weights of the targets counted (their number, without weights). */
import { logSoftmax } from "../../src/api/composites.ts";
import type { Tensor } from "../../src/api/builder.ts";
import type { Emitted, OpCtx, OpTable } from "./import-context.ts";

function nll(c: OpCtx, logp: Tensor, target: Tensor, weight: Tensor | undefined): Tensor {
  const reduction = c.attr.string("reduction", "mean");
  const ignore = c.attr.intOr("ignore_index");
  if (logp.rank < 2) c.fail(`input has rank ${logp.rank}; it needs [N, C, …]`);
  if (target.rank !== logp.rank - 1) c.fail(`target has rank ${target.rank}, input ${logp.rank}: the target drops axis 1`);
  if (target.dtype !== "i32") c.fail(`target must be an integer tensor, got ${target.dtype}`);
  const ones = Array<number>(logp.rank - 2).fill(1);
  const hot = c.g.iota(logp.shape, 1).eq(target.reshape([target.shape[0], 1, ...target.shape.slice(1)]));
  const picked = hot.select(logp, 0).sum(1);
  let w = weight ? hot.select(weight.reshape([weight.shape[0], ...ones]), 0).sum(1) : undefined;
  if (ignore !== undefined) {
    const valid = target.ne(ignore);
    w = w ? valid.select(w, 0) : valid.cast(logp.dtype);
  }
  const loss = w ? picked.neg().mul(w) : picked.neg();
  if (reduction === "none") return loss;
  if (reduction === "sum") return loss.sum();
  if (reduction === "mean") return w ? loss.sum().div(w.sum()) : loss.mean();
  return c.fail(`reduction "${reduction}" is not one of none, sum, mean`);
}

function softmaxCrossEntropy(c: OpCtx): Emitted[] {
  const scores = c.t(0);
  const logp = logSoftmax(scores, 1);
  return [nll(c, logp, c.t(1), c.has(2) ? c.t(2) : undefined), logp];
}

export const LOSS_OPS: OpTable = {
  NegativeLogLikelihoodLoss: { since: [12, 13, 22], emit: (c) => [nll(c, c.t(0), c.t(1), c.has(2) ? c.t(2) : undefined)] },
  SoftmaxCrossEntropyLoss: { since: [12, 13], emit: softmaxCrossEntropy },
};
