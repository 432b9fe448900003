/** ONNX's dense and normalization ops, as Kiln matmuls and the compositions the spec writes.
 *  Layout stays ONNX's (NCHW): channel parameters broadcast as [C, 1, …, 1]. Inference only:
 *  a BatchNormalization or Dropout in training mode is refused. */
import { logSoftmax, softmax } from "../../src/api/composites.ts";
import type { Tensor } from "../../src/api/builder.ts";
import type { Emitted, OpCtx, OpTable } from "./import-context.ts";

/** ONNX MatMul: numpy's matmul, 1-D operands included (a vector is a row on the left, a
 *  column on the right, and its axis is dropped from the result). */
function matmul(c: OpCtx): Emitted[] {
  let [a, b] = [c.t(0), c.t(1)];
  if (a.rank === 0 || b.rank === 0) c.fail("MatMul needs operands of rank ≥ 1");
  const [va, vb] = [a.rank === 1, b.rank === 1];
  if (va) a = a.reshape([1, a.shape[0]]);
  if (vb) b = b.reshape([b.shape[0], 1]);
  let y = a.matmul(b);
  if (va || vb) {
    const s = y.shape;
    y = y.reshape(va && vb ? s.slice(0, -2) : va ? [...s.slice(0, -2), s[s.length - 1]] : s.slice(0, -1));
  }
  return [y];
}

/** Y = alpha · A' × B' + beta · C, A' = transA ? Aᵀ : A (both 2-D); C broadcasts to Y. */
function gemm(c: OpCtx): Emitted[] {
  const alpha = c.attr.float("alpha", 1);
  const beta = c.attr.float("beta", 1);
  let a = c.t(0);
  let b = c.t(1);
  if (a.rank !== 2 || b.rank !== 2) c.fail(`Gemm needs 2-D A and B (got ranks ${a.rank} and ${b.rank})`);
  if (c.version < 7) c.attr.int("broadcast", 0);
  if (c.attr.int("transA", 0)) a = a.transpose();
  if (c.attr.int("transB", 0)) b = b.transpose();
  let y = a.matmul(b);
  if (alpha !== 1) y = y.mul(alpha);
  if (c.has(2) && beta !== 0) {
    const cc = c.t(2);
    y = y.add(beta === 1 ? cc : cc.mul(beta));
  }
  return [y];
}

/** A per-channel vector [C] as [C, 1, …, 1] against a tensor of rank r with channels at axis 1. */
const channel = (v: Tensor, rank: number): Tensor => v.reshape([v.shape[0], ...Array<number>(Math.max(0, rank - 2)).fill(1)]);

function batchNorm(c: OpCtx): Emitted[] {
  const eps = c.attr.float("epsilon", 1e-5);
  c.attr.float("momentum", 0.9); // used only in training, which is refused below
  // Version 7's spatial=0 keeps statistics per element, not per channel.
  if (c.version < 9 && c.attr.int("spatial", 1) !== 1) c.refuse("spatial=0 (per-element statistics)");
  if (c.version >= 14 && c.attr.int("training_mode", 0) !== 0) c.refuse("training_mode=1 (Kiln imports inference graphs)");
  if (c.wants(1) || c.wants(2) || c.wants(3) || c.wants(4)) c.refuse("the running-statistics outputs (training mode)");
  const x = c.t(0);
  if (x.rank < 2) c.fail(`X has rank ${x.rank}; BatchNormalization needs [N, C, …]`);
  const [scale, bias, mean, variance] = [1, 2, 3, 4].map((i) => channel(c.t(i), x.rank));
  // (x − mean) · scale / √(var + ε) + bias
  return [
    x
      .sub(mean)
      .mul(scale.mul(variance.add(eps).rsqrt()))
      .add(bias),
  ];
}

/** Mean and biased variance over `axes`, kept. */
function moments(x: Tensor, axes: number[]): { mean: Tensor; variance: Tensor } {
  const mean = x.mean(axes, true);
  const d = x.sub(mean);
  return { mean, variance: d.mul(d).mean(axes, true) };
}

function instanceNorm(c: OpCtx): Emitted[] {
  const eps = c.attr.float("epsilon", 1e-5);
  const x = c.t(0);
  if (x.rank < 3) c.fail(`input has rank ${x.rank}; InstanceNormalization needs [N, C, D1, …]`);
  const axes = x.shape.map((_, a) => a).slice(2);
  const { mean, variance } = moments(x, axes);
  const [scale, bias] = [channel(c.t(1), x.rank), channel(c.t(2), x.rank)];
  return [x.sub(mean).mul(variance.add(eps).rsqrt()).mul(scale).add(bias)];
}

/** Normalizes over axes [axis, rank); outputs Y and optionally Mean and InvStdDev (kept dims). */
function layerNorm(c: OpCtx): Emitted[] {
  const x = c.t(0);
  const axis = c.axis(c.attr.int("axis", -1), x.rank);
  const eps = c.attr.float("epsilon", 1e-5);
  if (c.attr.int("stash_type", 1) !== 1) c.refuse("stash_type other than 1 (float32 statistics)");
  const axes = x.shape.map((_, a) => a).slice(axis);
  const { mean, variance } = moments(x, axes);
  const inv = variance.add(eps).rsqrt();
  let y = x.sub(mean).mul(inv).mul(c.t(1));
  if (c.has(2)) y = y.add(c.t(2));
  return [y, mean, inv];
}

/** X / √(mean(X²) + ε) · scale over axes [axis, rank). */
function rmsNorm(c: OpCtx): Emitted[] {
  const x = c.t(0);
  const axis = c.axis(c.attr.int("axis", -1), x.rank);
  const eps = c.attr.float("epsilon", 1e-5);
  if (c.attr.int("stash_type", 1) !== 1) c.refuse("stash_type other than 1 (float32 statistics)");
  const axes = x.shape.map((_, a) => a).slice(axis);
  return [x.mul(x.mul(x).mean(axes, true).add(eps).rsqrt()).mul(c.t(1))];
}

function lpNorm(c: OpCtx): Emitted[] {
  const x = c.t(0);
  const axis = c.axis(c.attr.int("axis", -1), x.rank);
  const p = c.attr.int("p", 2);
  if (p !== 1 && p !== 2) c.fail(`p is ${p}; LpNormalization takes 1 or 2`);
  const norm = p === 1 ? x.abs().sum(axis, true) : x.mul(x).sum(axis, true).sqrt();
  // A zero norm gives 0, as ONNX's reference does.
  return [norm.eq(0).select(0, x.div(norm))];
}

/** (X − E[X]) / (√(E[X²] − E[X]²) + 1e-9) over `axes`, as ONNX's function body writes it. */
function meanVarianceNorm(c: OpCtx): Emitted[] {
  const x = c.t(0);
  const axes = c.axes(c.attr.ints("axes") ?? [0, 2, 3], x.rank);
  const mean = x.mean(axes, true);
  const variance = x.mul(x).mean(axes, true).sub(mean.mul(mean));
  return [x.sub(mean).div(variance.sqrt().add(1e-9))];
}

/** Channels in `num_groups` groups, each normalized over its channels and the spatial axes;
 *  scale and bias are per group before version 21, per channel since. */
function groupNorm(c: OpCtx): Emitted[] {
  const x = c.t(0);
  const groups = c.attr.int("num_groups", 0);
  const eps = c.attr.float("epsilon", 1e-5);
  if (c.version >= 21 && c.attr.int("stash_type", 1) !== 1) c.refuse("stash_type other than 1 (float32 statistics)");
  const ch = x.shape[1];
  if (x.rank < 2 || typeof ch !== "number" || groups < 1 || ch % groups !== 0) {
    return c.fail(`channels ${ch} do not split into ${groups} groups (input [${x.shape}])`);
  }
  const rest = x.shape.slice(2);
  const grouped = x.reshape([x.shape[0], groups, ch / groups, ...rest]);
  const axes = grouped.shape.map((_, a) => a).slice(2);
  const { mean, variance } = moments(grouped, axes);
  const normed = grouped.sub(mean).mul(variance.add(eps).rsqrt());
  if (c.version < 21) {
    const per = (v: Tensor) => v.reshape([groups, ...Array<number>(axes.length).fill(1)]);
    return [
      normed
        .mul(per(c.t(1)))
        .add(per(c.t(2)))
        .reshape(x.shape),
    ];
  }
  return [
    normed
      .reshape(x.shape)
      .mul(channel(c.t(1), x.rank))
      .add(channel(c.t(2), x.rank)),
  ];
}

const spatial = (x: Tensor) => x.shape.map((_, a) => a).slice(2);

/** Softmax and LogSoftmax: before opset 13 the input is flattened to 2-D at `axis` (default 1)
 *  and normalized over the whole second part, i.e. over axes [axis, rank); since 13 over the one
 *  axis (default −1). */
const softmaxLike = (since: number[], one: (x: Tensor, axis: number) => Tensor, log: boolean) => ({
  since,
  emit: (c: OpCtx): Emitted[] => {
    const x = c.t(0);
    if (c.version >= 13) return [one(x, c.axis(c.attr.int("axis", -1), x.rank))];
    const axis = c.axis(c.attr.int("axis", 1), x.rank);
    const axes = x.shape.map((_, a) => a).slice(axis);
    if (axes.length === 1) return [one(x, axis)];
    const z = x.sub(x.max(axes, true).stopGradient());
    const sum = z.exp().sum(axes, true);
    return [log ? z.sub(sum.log()) : z.exp().div(sum)];
  },
});

function dropout(c: OpCtx): Emitted[] {
  c.attr.intOr("seed");
  if (c.version < 12) c.attr.float("ratio", 0.5);
  if (c.version < 7) c.attr.int("is_test", 1);
  if (c.has(2)) {
    const [mode] = c.ints(2, "training_mode");
    // Training with ratio 0 drops nothing: the identity, as at inference.
    const ratio = c.has(1) ? Number(c.dims(1, "ratio")[0]) : 0.5;
    if (mode && ratio !== 0)
      c.refuse("training_mode=true with a ratio above 0 (Kiln imports inference graphs; random masks are not reproduced)");
  }
  const x = c.val(0);
  // At inference the mask is all true.
  return [x, c.wants(1) ? c.g.constant(1, "bool").expand(x.shape) : undefined];
}

export const NN_OPS: OpTable = {
  MatMul: { since: [1, 9, 13], emit: matmul },
  Gemm: { since: [6, 7, 9, 11, 13], emit: gemm },
  BatchNormalization: { since: [7, 9, 14, 15], emit: batchNorm },
  InstanceNormalization: { since: [6, 22], emit: instanceNorm },
  LayerNormalization: { since: [17], emit: layerNorm },
  GlobalAveragePool: { since: [1, 22], emit: (c) => [c.t(0).mean(spatial(c.t(0)), true)] },
  GlobalMaxPool: { since: [1, 22], emit: (c) => [c.t(0).max(spatial(c.t(0)), true)] },
  RMSNormalization: { since: [23], emit: rmsNorm },
  LpNormalization: { since: [1, 22], emit: lpNorm },
  MeanVarianceNormalization: { since: [9, 13], emit: meanVarianceNorm },
  GroupNormalization: { since: [18, 21], emit: groupNorm },
  Dropout: { since: [7, 10, 12, 13, 22], emit: dropout },
  Softmax: softmaxLike([1, 11, 13], softmax, false),
  LogSoftmax: softmaxLike([1, 11, 13], logSoftmax, true),
};
