/** Every Kiln primitive as ONNX operators (opset 17), or the reason it has none. Kiln's IR is
 *  lower-level than ONNX, so most ops are one ONNX node; where Kiln defines an edge that ONNX
 *  leaves open or defines otherwise, the lowering spells Kiln's meaning out:
 *    - integer ÷ 0 gives the dividend, i32 MIN ÷ −1 gives MIN, x % 0 and MIN % −1 give 0
 *      (ONNX's integer Div and Mod trap or are undefined there): the divisor is guarded;
 *    - f32 % is x − y·trunc(x/y) with the f32 quotient, as WGSL's (ONNX's fmod is exact);
 *    - f32 → int truncates and clamps, NaN → 0 (ONNX's Cast leaves both open): Clip, IsNaN;
 *    - u32 arithmetic wraps modulo 2³²; it runs in int64 (exact: operands < 2³²) and is cast
 *      back, which is modular, because few runtimes have uint32 kernels for it;
 *    - no axes is the identity for a reduction (ONNX's empty axes reduce everything).
 *  Layouts: Kiln convolves NHWC with HWIO filters, ONNX NCHW with OIHW, so conv2d and the pools
 *  transpose around the ONNX op (ONNX Runtime's layout optimizer cancels adjacent pairs), and a
 *  filter that is a weight is stored transposed (export.ts). */
import type { Node, OpAttrs, OpKind, TensorType } from "../../src/ir/types.ts";
import { ELEM_OF, Elem, type Attrs, type OnnxWriter } from "./export-writer.ts";
import { CONV_OPS } from "./export-conv.ts";

export interface LowerCtx<K extends OpKind> {
  readonly node: Node<K>;
  readonly attrs: OpAttrs[K];
  /** The output's type and the inputs'. */
  readonly type: TensorType;
  readonly ins: readonly TensorType[];
  /** The inputs' value names. */
  readonly x: readonly string[];
  readonly w: OnnxWriter;
  /** The name the result should have (a graph output's, or t<id>). */
  readonly out: string;
  /** A node carrying this Kiln node's site; `last` names it `out`. */
  op(op: string, inputs: readonly string[], attrs?: Attrs, last?: boolean): string;
  /** Conv filter input i (HWIO) as ONNX's OIHW: the weight stored transposed when only
   *  filter slots read it, else a Transpose node. */
  oihw(i: number): string;
}

/** Returns the name of the value computed (normally `out`; an alias may return an input). */
export type Lower<K extends OpKind> = (c: LowerCtx<K>) => string;
export interface Refusal {
  readonly refuse: string;
}
export type LowerTable = { readonly [K in OpKind]: Lower<K> | Refusal };

type AnyCtx = LowerCtx<OpKind>;

const simple =
  (onnx: string, attrs: (c: AnyCtx) => Attrs = () => ({})) =>
  (c: AnyCtx): string =>
    c.op(onnx, c.x, attrs(c), true);

const cast = (c: AnyCtx, x: string, elem: Elem, last = false) => c.op("Cast", [x], { to: elem }, last);
const isU32 = (c: AnyCtx) => c.ins.some((t) => t.dtype === "u32");

/** Integer work on u32 done in int64 (exact for values < 2³²), the result cast back to uint32
 *  (modular, as Kiln's u32 wraps) unless it is bool or i32. */
function wide(c: AnyCtx, f: (xs: readonly string[], last: boolean) => string, elem: Elem = Elem.INT64): string {
  if (!isU32(c)) return f(c.x, true);
  const xs = c.x.map((x, i) => (c.ins[i].dtype === "u32" ? cast(c, x, elem) : x));
  return c.type.dtype === "u32" || c.type.dtype === "i32" ? cast(c, f(xs, false), ELEM_OF[c.type.dtype], true) : f(xs, true);
}

const arith = (onnx: string) => (c: AnyCtx) => wide(c, (xs, last) => c.op(onnx, xs, {}, last));

/** trunc(q) = ceil(q) below zero, floor(q) above (NaN stays NaN). */
function trunc(c: AnyCtx, q: string): string {
  return c.op("Where", [c.op("Less", [q, c.w.scalar(0, Elem.FLOAT)]), c.op("Ceil", [q]), c.op("Floor", [q])]);
}

/** The divisor with 1 where ONNX's integer Div has no defined result: 0, and −1 for i32. */
function safeDivisor(c: AnyCtx, b: string, elem: Elem): { b: string; zero: string; minusOne?: string } {
  const zero = c.op("Equal", [b, c.w.scalar(0, elem)]);
  if (c.ins[0].dtype === "u32") return { b: c.op("Where", [zero, c.w.scalar(1, elem), b]), zero };
  const minusOne = c.op("Equal", [b, c.w.scalar(-1, elem)]);
  return { b: c.op("Where", [c.op("Or", [zero, minusOne]), c.w.scalar(1, elem), b]), zero, minusOne };
}

function div(c: AnyCtx): string {
  if (c.type.dtype === "f32") return c.op("Div", c.x, {}, true);
  return wide(c, ([a, b], last) => {
    const elem = isU32(c) ? Elem.INT64 : Elem.INT32;
    const s = safeDivisor(c, b, elem);
    // a ÷ 1 = a covers ÷ 0 (Kiln gives the dividend); ÷ −1 is −a, which wraps MIN to MIN.
    const q = c.op("Div", [a, s.b], {}, !s.minusOne && last);
    return s.minusOne ? c.op("Where", [s.minusOne, c.op("Neg", [a]), q], {}, last) : q;
  });
}

function mod(c: AnyCtx): string {
  const [a, b] = c.x;
  if (c.type.dtype === "f32") return c.op("Sub", [a, c.op("Mul", [b, trunc(c, c.op("Div", [a, b]))])], {}, true);
  // a − b'·(a ÷ b') with b' = 1 where the divisor is 0 or −1: 0 there, as Kiln defines it.
  return wide(c, ([x, y], last) => {
    const s = safeDivisor(c, y, isU32(c) ? Elem.INT64 : Elem.INT32);
    return c.op("Sub", [x, c.op("Mul", [s.b, c.op("Div", [x, s.b])])], {}, last);
  });
}

/** f32 → i32/u32: truncate toward zero, clamp to the largest f32 in range, NaN → 0. */
function castOp(c: LowerCtx<"cast">): string {
  const [from, to] = [c.ins[0].dtype, c.attrs.dtype];
  if (from === to) return c.x[0];
  if (from !== "f32" || (to !== "i32" && to !== "u32")) return cast(c as AnyCtx, c.x[0], ELEM_OF[to], true);
  const [lo, hi] = to === "i32" ? [-2147483648, 2147483520] : [0, 4294967040];
  const f = (v: number) => c.w.scalar(v, Elem.FLOAT);
  const clipped = c.op("Clip", [c.x[0], f(lo), f(hi)]);
  const finite = c.op("Where", [c.op("IsNaN", [c.x[0]]), f(0), clipped]);
  return cast(c as AnyCtx, finite, ELEM_OF[to], true);
}

/** Range(0, n) along `axis`, as [1,…,n,…,1], broadcast to the shape and cast. */
function iota(c: LowerCtx<"iota">): string {
  const { shape, axis, dtype } = c.attrs;
  const n = shape[axis];
  const limit = typeof n === "number" ? c.w.scalar(n, Elem.INT64) : c.op("Squeeze", [c.w.dim(n), c.w.ints([0])]);
  const range = c.op("Range", [c.w.scalar(0, Elem.INT64), limit, c.w.scalar(1, Elem.INT64)]);
  const column = c.op("Reshape", [range, c.w.shape(shape.map((d, a) => (a === axis ? d : 1)))]);
  const full = shape.some((d, a) => a !== axis && d !== 1) ? c.op("Expand", [column, c.w.shape(shape)]) : column;
  return cast(c as AnyCtx, full, ELEM_OF[dtype], true);
}

function constant(c: LowerCtx<"const">): string {
  const { value, dtype, shape } = c.attrs;
  const elem = ELEM_OF[dtype];
  if (Array.isArray(value)) return c.op("Identity", [c.w.constant(elem, shape as number[], value)], {}, true);
  const s = c.w.scalar(value as number, elem);
  return shape.length ? c.op("Expand", [s, c.w.shape(shape)], {}, true) : c.op("Identity", [s], {}, true);
}

type ReduceKind = "reduce_sum" | "reduce_mean" | "reduce_max" | "reduce_min";
const reduce = (onnx: string) => (c: LowerCtx<ReduceKind>) => {
  const { axes, keepdims } = c.attrs;
  if (axes.length === 0) return c.x[0];
  const k = keepdims ? 1 : 0;
  // ReduceSum takes its axes as an input since opset 13; the others at opset 17 as an attribute.
  return wide(
    c as AnyCtx,
    ([x], last) =>
      onnx === "ReduceSum" ? c.op(onnx, [x, c.w.ints(axes)], { keepdims: k }, last) : c.op(onnx, [x], { axes, keepdims: k }, last),
    onnx === "ReduceSum" ? Elem.INT64 : Elem.DOUBLE,
  );
};

function argmax(c: LowerCtx<"argmax">): string {
  const x = c.ins[0].dtype === "u32" ? cast(c as AnyCtx, c.x[0], Elem.INT64) : c.x[0];
  const i = c.op("ArgMax", [x], { axis: c.attrs.axis, keepdims: c.attrs.keepdims ? 1 : 0 });
  return cast(c as AnyCtx, i, Elem.INT32, true);
}

/** A shape for Reshape: constant with −1 for the one symbolic dim where that is unambiguous
 *  (no zero-sized dim), else assembled at run time; allowzero keeps a 0 a 0. */
function reshape(c: LowerCtx<"reshape">): string {
  const { shape } = c.attrs;
  const symbols = shape.filter((d) => typeof d === "string");
  const zeros = shape.includes(0);
  const target = symbols.length === 1 && !zeros ? c.w.ints(shape.map((d) => (typeof d === "number" ? d : -1))) : c.w.shape(shape);
  return c.op("Reshape", [c.x[0], target], zeros ? { allowzero: 1 } : {}, true);
}

function slice(c: LowerCtx<"slice">): string {
  const { begin, end, stride } = c.attrs;
  const shape = c.ins[0].shape;
  const axes = shape
    .map((_, a) => a)
    .filter((a) => typeof shape[a] === "number" && !(begin[a] === 0 && end[a] === shape[a] && stride[a] === 1));
  if (!axes.length) return c.x[0];
  const pick = (v: readonly (number | string)[]) => c.w.ints(axes.map((a) => v[a] as number));
  return c.op("Slice", [c.x[0], pick(begin), pick(end), c.w.ints(axes), pick(stride)], {}, true);
}

function pad(c: LowerCtx<"pad">): string {
  const { before, after, value } = c.attrs;
  if ([...before, ...after].every((p) => p === 0)) return c.x[0];
  return c.op("Pad", [c.x[0], c.w.ints([...before, ...after]), c.w.scalar(value, ELEM_OF[c.type.dtype])], { mode: "constant" }, true);
}

const alias = (c: AnyCtx): string => c.x[0];

/** Max and min of u32 run in float64 (exact for every u32): ONNX Runtime 1.30's int64 Max,
 *  Min, ReduceMax and ReduceMin compare only the low 32 bits (Max(4294967295, 1) gives 1). */
const extremum = (onnx: string) => (c: AnyCtx) => wide(c, (xs, last) => c.op(onnx, xs, {}, last), Elem.DOUBLE);

/** Where(c, a, b); for bool branches c∧a ∨ ¬c∧b (Where has no bool kernel in ONNX Runtime). */
function select(c: LowerCtx<"select">): string {
  const [cond, a, b] = c.x;
  if (c.type.dtype !== "bool") return wide(c as AnyCtx, (xs, last) => c.op("Where", xs, {}, last));
  return c.op("Or", [c.op("And", [cond, a]), c.op("And", [c.op("Not", [cond]), b])], {}, true);
}
const not = (onnx: string) => (c: AnyCtx) => c.op("Not", [wide(c, (xs) => c.op(onnx, xs))], {}, true);

export const LOWER: LowerTable = {
  input: { refuse: "input is a graph input, not an operator" },
  const: constant,
  iota,
  random: {
    refuse:
      "Kiln's counter-based random stream has no ONNX form (RandomUniform draws are not reproducible); it appears in training graphs (dropout's mask), not in a model's inference graph",
  },
  neg: arith("Neg"),
  abs: arith("Abs"),
  sign: arith("Sign"),
  exp: simple("Exp"),
  log: simple("Log"),
  sqrt: simple("Sqrt"),
  rsqrt: (c) => c.op("Reciprocal", [c.op("Sqrt", c.x)], {}, true),
  recip: simple("Reciprocal"),
  sin: simple("Sin"),
  cos: simple("Cos"),
  tanh: simple("Tanh"),
  erf: simple("Erf"),
  sigmoid: simple("Sigmoid"),
  relu: arith("Relu"),
  floor: simple("Floor"),
  ceil: simple("Ceil"),
  not: simple("Not"),
  cast: castOp,
  stop_gradient: alias,
  add: arith("Add"),
  sub: arith("Sub"),
  mul: arith("Mul"),
  div,
  mod,
  pow: simple("Pow"),
  max: extremum("Max"),
  min: extremum("Min"),
  eq: arith("Equal"),
  ne: not("Equal"),
  lt: arith("Less"),
  le: arith("LessOrEqual"),
  gt: arith("Greater"),
  ge: arith("GreaterOrEqual"),
  and: simple("And"),
  or: simple("Or"),
  select,
  reduce_sum: reduce("ReduceSum"),
  reduce_mean: reduce("ReduceMean"),
  reduce_max: reduce("ReduceMax"),
  reduce_min: reduce("ReduceMin"),
  argmax,
  reshape,
  permute: (c) => c.op("Transpose", c.x, { perm: c.attrs.perm }, true),
  expand: (c) => c.op("Expand", [c.x[0], c.w.shape(c.attrs.shape)], {}, true),
  slice,
  pad,
  concat: (c) => (c.x.length === 1 ? c.x[0] : c.op("Concat", c.x, { axis: c.attrs.axis }, true)),
  gather: (c) => c.op("Gather", c.x, { axis: c.attrs.axis }, true),
  matmul: simple("MatMul"),
  ...CONV_OPS,
};
