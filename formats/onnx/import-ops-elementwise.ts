/** ONNX's elementwise ops (numpy broadcasting, as Kiln's binary ops broadcast). Most are one
 *  Kiln primitive; the activations with parameters are the compositions ONNX's spec writes:
 *      Selu: gamma · (x > 0 ? x : alpha · (exp(x) − 1))
 *  Softplus uses the overflow-free form max(x, 0) + log(1 + exp(−|x|)), equal to ONNX's
 *  log(exp(x) + 1) wherever that is finite. On known integer values (shape arithmetic) the
 *  binary ops fold at import time (import-fold.ts). */
import { leakyRelu } from "../../src/api/composites.ts";
import type { Tensor } from "../../src/api/builder.ts";
import type { DType } from "../../src/ir/types.ts";
import type { Emitted, OpCtx, OpRecord, OpTable } from "./import-context.ts";
import { FOLD_BINARY, finite, foldElementwise } from "./import-fold.ts";
import { dtypeOf, elemName } from "./import-tensor.ts";

const unary = (since: number[], f: (x: Tensor, c: OpCtx) => Tensor): OpRecord => ({ since, emit: (c) => [f(c.t(0), c)] });

/** A unary op that also folds known integer values (shape arithmetic). */
const foldingUnary = (since: number[], f: (x: Tensor) => Tensor, k: (x: number) => number): OpRecord => ({
  since,
  emit: (c) => [foldElementwise(c, [c.val(0)], c.val(0).dtype, ([x]) => (typeof x === "number" ? k(x) : undefined)) ?? f(c.t(0))],
});

const binary = (since: number[], onnx: string, f: (a: Tensor, b: Tensor) => Tensor, bool = false): OpRecord => ({
  since,
  emit: (c) => {
    const fold = FOLD_BINARY[onnx];
    const dtype: DType = bool ? "bool" : c.val(0).dtype;
    const folded = fold && finite(foldElementwise(c, [c.val(0), c.val(1)], dtype, fold));
    return [folded ?? f(c.t(0), c.t(1))];
  },
});

/** Max, Min, Sum, Mean: any number of inputs, all broadcast. */
const variadic = (since: number[], f: (a: Tensor, b: Tensor) => Tensor, mean = false, onnx = ""): OpRecord => ({
  since,
  emit: (c) => {
    if (c.inputCount === 0) c.fail("needs at least one input");
    const fold = FOLD_BINARY[onnx];
    const vs = Array.from({ length: c.inputCount }, (_, i) => c.val(i));
    const folded = fold && vs.length === 2 && foldElementwise(c, vs, vs[0].dtype, fold);
    if (folded) return [folded];
    const ts = Array.from({ length: c.inputCount }, (_, i) => c.t(i));
    const r = ts.slice(1).reduce(f, ts[0]);
    return [mean ? r.div(ts.length) : r];
  },
});

const float = (c: OpCtx, name: string, def: number) => c.attr.float(name, def);

function elu(x: Tensor, alpha: number): Tensor {
  return x.gt(0).select(x, x.exp().sub(1).mul(alpha));
}

/** Clip: bounds as attributes before opset 11, optional inputs since; a missing bound is none.
 *  min(max(x, lo), hi) gives hi where lo > hi, as the spec says. */
function clip(c: OpCtx): Emitted[] {
  let x = c.t(0);
  if (c.version < 11) {
    const lo = c.attr.float("min", Number.NEGATIVE_INFINITY);
    const hi = c.attr.float("max", Number.POSITIVE_INFINITY);
    if (lo > Number.NEGATIVE_INFINITY) x = x.maximum(lo);
    return [hi < Number.POSITIVE_INFINITY ? x.minimum(hi) : x];
  }
  if (c.has(1)) x = x.maximum(c.t(1));
  if (c.has(2)) x = x.minimum(c.t(2));
  return [x];
}

/** Pow: base and exponent may differ in type (T and T1 since version 12); the result has the
 *  base's. An integer base with a float exponent computes in f32 and truncates back, as ONNX's
 *  reference does. */
function pow(c: OpCtx): Emitted[] {
  const [x, y] = [c.t(0), c.t(1)];
  if (x.dtype === "f32") return [x.pow(y.dtype === "f32" ? y : y.cast("f32"))];
  if (x.dtype === "i32") {
    const r = x.cast("f32").pow(y.dtype === "f32" ? y : y.cast("f32"));
    return [r.cast("i32")];
  }
  return c.refuse(`a ${x.dtype} base is not supported`);
}

function cast(c: OpCtx): Emitted[] {
  const to = c.attr.int("to", 0);
  if (c.version >= 19 && c.attr.int("saturate", 1) !== 1) c.refuse("saturate=0 (it applies only to float8 types)");
  const dtype = dtypeOf(to);
  if (typeof dtype !== "string") return c.refuse(`casting to ${elemName(to)}: Kiln does not support ${dtype.refuse}`);
  const v = c.val(0);
  // Integer → integer and bool of known values (shape arithmetic): the values stay known.
  if (v.known && (v.dtype === "i32" || v.dtype === "bool") && (dtype === "i32" || dtype === "bool")) {
    const k = Array.from(v.known).map((e) => (dtype === "bool" && typeof e === "number" ? (e ? 1 : 0) : e));
    return [c.known(dtype, v.shape as number[], k)];
  }
  return [v.dtype === dtype ? v.tensor() : v.tensor().cast(dtype)];
}

function where(c: OpCtx): Emitted[] {
  const [cond, a, b] = [c.val(0), c.val(1), c.val(2)];
  const folded = foldElementwise(c, [cond, a, b], a.dtype, ([k, x, y]) => (k ? x : y));
  return [folded ?? cond.tensor().select(a.tensor(), b.tensor())];
}

/** fmod=1: C's fmod (the dividend's sign), Kiln's mod. fmod=0 (integers): the divisor's sign,
 *  as Python's %: a nonzero truncated remainder of the other sign moves by one divisor. */
function mod(c: OpCtx): Emitted[] {
  const fmod = c.attr.int("fmod", 0) === 1;
  const folded = foldElementwise(c, [c.val(0), c.val(1)], c.val(0).dtype, ([x, y]) => {
    if (typeof x !== "number" || typeof y !== "number" || y === 0) return undefined;
    const r = x % y;
    return fmod || r === 0 || r < 0 === y < 0 ? r : r + y;
  });
  if (folded) return [folded];
  const [a, b] = [c.t(0), c.t(1)];
  const r = a.mod(b);
  if (fmod) return [r];
  if (a.dtype === "f32") return c.refuse("fmod=0 on floats (ONNX requires fmod=1 there)");
  if (a.dtype === "u32") return [r];
  return [
    r
      .ne(0)
      .and(r.lt(0).ne(b.lt(0)))
      .select(r.add(b), r),
  ];
}

/** Round half to even: floor, then up where the fraction is over ½, or exactly ½ from an odd floor. */
function round(x: Tensor): Tensor {
  const f = x.floor();
  const d = x.sub(f);
  const odd = f.sub(f.div(2).floor().mul(2)).eq(1);
  return d.gt(0.5).or(d.eq(0.5).and(odd)).select(f.add(1), f);
}

function isInf(c: OpCtx): Emitted[] {
  const x = c.t(0);
  const [neg, pos] = [c.attr.int("detect_negative", 1), c.attr.int("detect_positive", 1)];
  const isPos = x.eq(Number.POSITIVE_INFINITY);
  const isNeg = x.eq(Number.NEGATIVE_INFINITY);
  if (neg && pos) return [isPos.or(isNeg)];
  if (pos) return [isPos];
  return [neg ? isNeg : x.ne(x).and(x.eq(x))];
}

function identity(c: OpCtx): Emitted[] {
  return [c.val(0)];
}

export const ELEMENTWISE_OPS: OpTable = {
  Abs: foldingUnary([6, 13], (x) => x.abs(), Math.abs),
  Neg: foldingUnary(
    [6, 13],
    (x) => x.neg(),
    (x) => -x,
  ),
  Exp: unary([6, 13], (x) => x.exp()),
  Log: unary([6, 13], (x) => x.log()),
  Sqrt: unary([6, 13], (x) => x.sqrt()),
  Reciprocal: unary([6, 13], (x) => x.recip()),
  Floor: unary([6, 13], (x) => x.floor()),
  Ceil: unary([6, 13], (x) => x.ceil()),
  Sign: unary([9, 13], (x) => x.sign()),
  Sin: unary([7, 22], (x) => x.sin()),
  Cos: unary([7, 22], (x) => x.cos()),
  Tanh: unary([6, 13], (x) => x.tanh()),
  Sigmoid: unary([6, 13], (x) => x.sigmoid()),
  Relu: unary([6, 13, 14], (x) => x.relu()),
  Not: foldingUnary(
    [1],
    (x) => x.not(),
    (x) => (x ? 0 : 1),
  ),
  LeakyRelu: unary([6, 16], (x, c) => leakyRelu(x, float(c, "alpha", 0.01))),
  Elu: unary([6, 22], (x, c) => elu(x, float(c, "alpha", 1))),
  Selu: unary([6, 22], (x, c) => elu(x, float(c, "alpha", 1.67326319217681884765625)).mul(float(c, "gamma", 1.05070102214813232421875))),
  HardSigmoid: unary([6, 22], (x, c) =>
    x
      .mul(float(c, "alpha", 0.2))
      .add(float(c, "beta", 0.5))
      .maximum(0)
      .minimum(1),
  ),
  Softplus: unary([1, 22], (x) => x.relu().add(x.abs().neg().exp().add(1).log())),
  Softsign: unary([1, 22], (x) => x.div(x.abs().add(1))),
  Erf: unary([9, 13], (x) => x.erf()),
  Gelu: unary([20], (x, c) => {
    const approx = c.attr.string("approximate", "none");
    // 0.5·x·(1 + erf(x/√2))
    if (approx === "none") return x.mul(0.5).mul(x.mul(Math.SQRT1_2).erf().add(1));
    if (approx !== "tanh") return c.fail(`approximate="${approx}" is not one of none, tanh`);
    // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
    const inner = x.add(x.mul(x).mul(x).mul(0.044715)).mul(Math.sqrt(2 / Math.PI));
    return x.mul(0.5).mul(inner.tanh().add(1));
  }),
  PRelu: {
    since: [7, 9, 16],
    emit: (c) => {
      const x = c.t(0);
      return [x.lt(0).select(x.mul(c.t(1)), x)];
    },
  },
  Clip: { since: [6, 11, 12, 13], emit: clip },
  Pow: { since: [7, 12, 13, 15], emit: pow },
  Add: binary([7, 13, 14], "Add", (a, b) => a.add(b)),
  Sub: binary([7, 13, 14], "Sub", (a, b) => a.sub(b)),
  Mul: binary([7, 13, 14], "Mul", (a, b) => a.mul(b)),
  Div: binary([7, 13, 14], "Div", (a, b) => a.div(b)),
  Equal: binary([7, 11, 13, 19], "Equal", (a, b) => a.eq(b), true),
  Less: binary([7, 9, 13], "Less", (a, b) => a.lt(b), true),
  Greater: binary([7, 9, 13], "Greater", (a, b) => a.gt(b), true),
  LessOrEqual: binary([12, 16], "LessOrEqual", (a, b) => a.le(b), true),
  GreaterOrEqual: binary([12, 16], "GreaterOrEqual", (a, b) => a.ge(b), true),
  And: binary([7], "And", (a, b) => a.and(b), true),
  Or: binary([7], "Or", (a, b) => a.or(b), true),
  Xor: binary([7], "Xor", (a, b) => a.ne(b), true),
  // Version 6 takes inputs of one shape, a case of version 8's broadcasting.
  Max: variadic([6, 8, 12, 13], (a, b) => a.maximum(b), false, "Max"),
  Min: variadic([6, 8, 12, 13], (a, b) => a.minimum(b), false, "Min"),
  Sum: variadic([6, 8, 13], (a, b) => a.add(b)),
  Mean: variadic([6, 8, 13], (a, b) => a.add(b), true),
  Where: { since: [9, 16], emit: where },
  Cast: { since: [6, 9, 13, 19, 21, 23, 24, 25], emit: cast },
  CastLike: {
    since: [15, 19, 21, 23, 24, 25],
    emit: (c) => {
      if (c.version >= 19 && c.attr.int("saturate", 1) !== 1) c.refuse("saturate=0 (it applies only to float8 types)");
      const [x, like] = [c.val(0), c.val(1)];
      return [x.dtype === like.dtype ? x : x.tensor().cast(like.dtype)];
    },
  },
  Mod: { since: [10, 13], emit: mod },
  Round: unary([11, 22], round),
  IsNaN: unary([9, 13, 20], (x) => x.ne(x)),
  IsInf: { since: [10, 20], emit: isInf },
  Sinh: unary([9, 22], (x) => x.exp().sub(x.neg().exp()).mul(0.5)),
  Cosh: unary([9, 22], (x) => x.exp().add(x.neg().exp()).mul(0.5)),
  Tan: unary([7, 22], (x) => x.sin().div(x.cos())),
  ThresholdedRelu: unary([10, 22], (x, c) => x.gt(float(c, "alpha", 1)).select(x, 0)),
  Shrink: unary([9], (x, c) => {
    const [bias, lambd] = [float(c, "bias", 0), float(c, "lambd", 0.5)];
    return x.lt(-lambd).select(x.add(bias), x.gt(lambd).select(x.sub(bias), 0));
  }),
  // max(0, x) + min(0, α·(exp(x/α) − 1))
  Celu: unary([12], (x, c) => {
    const alpha = float(c, "alpha", 1);
    return x.relu().add(x.div(alpha).exp().sub(1).mul(alpha).minimum(0));
  }),
  HardSwish: unary([14, 22], (x) => x.mul(x.div(6).add(0.5).maximum(0).minimum(1))),
  Mish: unary([18, 22], (x) => x.mul(x.relu().add(x.abs().neg().exp().add(1).log()).tanh())),
  Swish: unary([24], (x, c) => x.mul(x.mul(float(c, "alpha", 1)).sigmoid())),
  Identity: { since: [1, 13, 14, 16, 19, 21, 23, 24, 25], emit: identity },
};
