/** Reductions: sum, mean, max and min over a set of axes, and argmax along one axis.
 *      reduce_sum f32[B,5,3] axes=[0,2] → f32[5]      (keepdims: f32[1,5,1])
 *  Axes are distinct and non-negative (the builder normalizes negative ones); no axes is the
 *  identity, all axes a scalar. Over an empty axis: sum 0, mean NaN (0/0), max the lowest value
 *  of the dtype (-inf for f32), min the highest. Max and min propagate NaN. argmax gives the
 *  first index of the largest value (i32), counting NaN as larger than any number, as numpy
 *  does; over a static empty axis it is an error, over a symbolic one that is bound to 0 it
 *  gives 0, as the GPU kernel does. */
import type { Tensor } from "../api/builder.ts";
import { isStatic, strides } from "../ir/shape.ts";
import type { DType, Dim, OpAttrs, Shape, TensorType } from "../ir/types.ts";
import { defineOp, fail, FLOAT, NUMERIC, requireDtype, type AttrSchema, type ConcreteType, type OpDef, type Vjp } from "./def.ts";
import { forEachIndex, tensor64, wrap, type Tensor64 } from "./tensor64.ts";

const I32_MIN = -2147483648;
const I32_MAX = 2147483647;
const U32_MAX = 4294967295;

/** The identity of max (`lowest`) and of min (`highest`) per dtype. */
export const lowest = (d: DType): number => (d === "f32" ? -Infinity : d === "i32" ? I32_MIN : 0);
export const highest = (d: DType): number => (d === "f32" ? Infinity : d === "i32" ? I32_MAX : U32_MAX);

/** argmax's order: does `x` beat `y`? NaN beats every number; equal values do not beat. */
const beats = (x: number, y: number): boolean => (Number.isNaN(x) && !Number.isNaN(y)) || x > y;

function checkAxes(x: TensorType, axes: readonly number[], keepdims: boolean): void {
  const rank = x.shape.length;
  if (!Array.isArray(axes)) fail(`axes must be an array of axis numbers, got ${JSON.stringify(axes)}`, [x]);
  for (const a of axes) {
    if (!Number.isInteger(a) || a < 0 || a >= rank) fail(`axes: axis ${a} is out of range for rank ${rank}`, [x]);
  }
  const twice = axes.find((a, i) => axes.indexOf(a) !== i);
  if (twice !== undefined) fail(`axes: axis ${twice} appears twice in [${axes.join(",")}]`, [x]);
  if (typeof keepdims !== "boolean") fail(`keepdims must be true or false, got ${JSON.stringify(keepdims)}`, [x]);
}

/** The input's shape with `axes` dropped, or kept as size 1. */
function reducedShape(shape: readonly Dim[], axes: readonly number[], keepdims: boolean): Dim[] {
  return keepdims ? shape.map((d, a) => (axes.includes(a) ? 1 : d)) : shape.filter((_, a) => !axes.includes(a));
}

/** Per input axis, its stride in the output (0 for a reduced axis): input index → output index. */
function outStrides(rank: number, axes: readonly number[], keepdims: boolean, out: readonly number[]): number[] {
  const st = strides(out);
  let k = 0;
  return Array.from({ length: rank }, (_, a) => (axes.includes(a) ? 0 : st[keepdims ? a : k++]));
}

/** Fold every input element into its output slot, in row-major input order (so within a
 *  slot the reduced index only grows); `step` also gets the element's input index. */
function fold(
  x: Tensor64,
  axes: readonly number[],
  keepdims: boolean,
  out: ConcreteType,
  init: number,
  step: (acc: number, v: number, idx: readonly number[], o: number) => number,
): Tensor64 {
  const r = tensor64(out.dtype, out.shape);
  r.data.fill(init);
  const ost = outStrides(x.shape.length, axes, keepdims, out.shape);
  forEachIndex(x.shape, (idx, flat) => {
    let o = 0;
    for (let a = 0; a < idx.length; a++) o += idx[a] * ost[a];
    r.data[o] = step(r.data[o], x.data[flat], idx, o);
  });
  return r;
}

type ReduceKind = "reduce_sum" | "reduce_mean" | "reduce_max" | "reduce_min";

interface ReduceSpec<K extends ReduceKind> {
  name: K;
  dtypes: readonly DType[];
  init: (d: DType) => number;
  /** One element into the accumulator; results wrapped to the dtype, as the GPU's i32/u32 wrap. */
  step: (acc: number, v: number) => number;
  /** The output from the accumulator and the number of reduced elements. */
  finish?: (acc: number, count: number) => number;
  vjp: Vjp<ReduceKind>;
}

function reduction<K extends ReduceKind>(s: ReduceSpec<K>): OpDef<K> {
  return defineOp<K>({
    name: s.name,
    arity: 1,
    attrs: { axes: "ints", keepdims: "bool" } satisfies AttrSchema<OpAttrs[ReduceKind]> as AttrSchema<OpAttrs[K]>,
    infer: (ins, a) => {
      const dtype = requireDtype(ins, s.dtypes, s.name);
      checkAxes(ins[0], a.axes, a.keepdims);
      return { dtype, shape: reducedShape(ins[0].shape, a.axes, a.keepdims) };
    },
    reference: ([x], a, out) => {
      const r = fold(x, a.axes, a.keepdims, out, s.init(x.dtype), (acc, v) => wrap(x.dtype, s.step(acc, v)));
      const count = a.axes.reduce((n, ax) => n * x.shape[ax], 1);
      if (s.finish) for (let i = 0; i < r.data.length; i++) r.data[i] = s.finish(r.data[i], count);
      return r;
    },
    lower: { kind: "kernel", kernel: "reduce" },
    // Each thread of the loop variant holds its whole row: it can write the row back.
    pattern: { kind: "reduction", rowEpilogue: true },
    vjp: s.vjp,
  });
}

const add = (acc: number, v: number): number => acc + v;

/** A reduction's result (or its cotangent) with the reduced axes back as size 1. */
const kept = (t: Tensor, x: Tensor, a: OpAttrs[ReduceKind]): Tensor => (a.keepdims ? t : t.reshape(reducedShape(x.shape, a.axes, true)));

/** The number of elements each output reduces: a constant, or a sum of ones over the reduced
 *  dims when one is symbolic, so it holds for any bound size. */
function count(x: Tensor, axes: readonly number[]): Tensor {
  const dims: Shape = axes.map((a) => x.shape[a]);
  const b = x.builder;
  return isStatic(dims) ? b.constant(dims.reduce((n, d) => n * d, 1)) : b.constant(1, "f32", dims).sum();
}

/** max and min: the cotangent goes to the positions equal to the result; ties share it equally,
 *  as in JAX (a subgradient; at a tie the function has no derivative). */
const chooserVjp: Vjp<ReduceKind> = ({ g, ins: [x], out, attrs }) => {
  const hit = x.eq(kept(out, x, attrs)).cast("f32");
  return [hit.mul(kept(g, x, attrs).div(hit.sum(attrs.axes, true)))];
};

export const reduceSum = reduction({
  name: "reduce_sum",
  dtypes: NUMERIC,
  init: () => 0,
  step: add,
  vjp: ({ g, ins: [x], attrs }) => [kept(g, x, attrs).expand(x.shape)],
});
/** sum / count, the count from the dims (bound at run time for symbolic ones); 0/0 is NaN. */
export const reduceMean = reduction({
  name: "reduce_mean",
  dtypes: FLOAT,
  init: () => 0,
  step: add,
  finish: (acc, n) => acc / n,
  vjp: ({ g, ins: [x], attrs }) => [kept(g.div(count(x, attrs.axes)), x, attrs).expand(x.shape)],
});
export const reduceMax = reduction({ name: "reduce_max", dtypes: NUMERIC, init: lowest, step: Math.max, vjp: chooserVjp });
export const reduceMin = reduction({ name: "reduce_min", dtypes: NUMERIC, init: highest, step: Math.min, vjp: chooserVjp });

export const argmax = defineOp({
  name: "argmax",
  arity: 1,
  attrs: { axis: "int", keepdims: "bool" },
  infer: (ins, a) => {
    requireDtype(ins, NUMERIC, "argmax");
    const [x] = ins;
    if (!Number.isInteger(a.axis) || a.axis < 0 || a.axis >= x.shape.length)
      fail(`axis ${a.axis} is out of range for rank ${x.shape.length}`, ins);
    checkAxes(x, [a.axis], a.keepdims); // the axis passes; this checks keepdims
    if (x.shape[a.axis] === 0) fail(`axis ${a.axis} has size 0: an empty axis has no argmax`, ins);
    return { dtype: "i32", shape: reducedShape(x.shape, [a.axis], a.keepdims) };
  },
  reference: ([x], a, out) => {
    const best = new Float64Array(out.shape.reduce((n, d) => n * d, 1));
    // The first element of a slot (index 0 along the axis) seeds it; a symbolic axis bound to 0
    // leaves the index 0, as on the GPU.
    return fold(x, [a.axis], a.keepdims, out, 0, (at, v, idx, o) => {
      const k = idx[a.axis];
      if (k > 0 && !beats(v, best[o])) return at;
      best[o] = v;
      return k;
    });
  },
  lower: { kind: "kernel", kernel: "argmax" },
  // A prologue fuses in; a row epilogue is not offered (the plans never needed one).
  pattern: { kind: "reduction", rowEpilogue: false },
  // No rule: the i32 output carries no gradient, and grad never asks for one.
});
