/** Elementwise primitives: unary math, binary arithmetic and comparisons with numpy
 *  broadcasting, select, cast. Each is a scalar reference plus a scalar WGSL expression; the
 *  shape rule, the broadcasting loop and the kernel around them are shared. Inputs of one op
 *  share a dtype: Kiln never promotes implicitly (cast says what you mean). */
import { broadcastShapes, formatType } from "../ir/shape.ts";
import type { DType, OpKind, TensorType } from "../ir/types.ts";
import {
  ANY, defineOp, fail, FLOAT, NUMERIC, requireDtype, SIGNED,
  type LowerCtx, type OpDef,
} from "./def.ts";
import { lit } from "./wgsl.ts";
import { broadcastAt, forEachIndex, tensor64, wrap, type Tensor64 } from "./tensor64.ts";

type Scalar = (args: readonly number[], dtype: DType) => number;
type Expr = (args: readonly string[], ctx: LowerCtx<OpKind>) => string;

function broadcastType(ins: readonly TensorType[], dtype: DType): TensorType {
  const shape = broadcastShapes(ins.map((t) => t.shape));
  if (!shape) fail("shapes do not broadcast", ins);
  return { dtype, shape };
}

/** Apply a scalar function over broadcast inputs; results wrapped to the output dtype. */
export function mapBroadcast(ins: readonly Tensor64[], out: { dtype: DType; shape: readonly number[] }, f: Scalar): Tensor64 {
  const r = tensor64(out.dtype, out.shape);
  const inDtype = ins[0].dtype;
  const args = new Array<number>(ins.length);
  forEachIndex(out.shape, (idx, flat) => {
    for (let i = 0; i < ins.length; i++) args[i] = broadcastAt(ins[i], idx);
    r.data[flat] = wrap(out.dtype, f(args, inDtype));
  });
  return r;
}

interface ElementwiseSpec<K extends OpKind> {
  name: K;
  arity: number;
  /** dtypes the inputs may have (all inputs share one). */
  dtypes: readonly DType[];
  /** Output dtype; default: the inputs'. */
  out?: DType;
  reference: Scalar;
  wgsl: Expr;
}

function elementwise<K extends OpKind>(s: ElementwiseSpec<K>): OpDef<K> {
  return defineOp<K>({
    name: s.name,
    arity: s.arity,
    attrs: {} as never,
    infer: (ins) => broadcastType(ins, s.out ?? requireDtype(ins, s.dtypes, s.name)),
    reference: (ins, _attrs, out) => mapBroadcast(ins, out, s.reference),
    lower: { kind: "elementwise", expr: s.wgsl },
  });
}

/** Checks the dtypes, then returns the out dtype for comparisons and the like. */
function fixedOut<K extends OpKind>(s: ElementwiseSpec<K> & { out: DType }): OpDef<K> {
  const def = elementwise(s);
  return { ...def, infer: (ins, a) => (requireDtype(ins, s.dtypes, s.name), def.infer(ins, a)) };
}

const I32_MIN = -2147483648;
const int = (d: DType): boolean => d === "i32" || d === "u32";
const zero = (ctx: LowerCtx<OpKind>): string => lit(0, ctx.inTypes[0].dtype);
/** `!(a == b)`, not `a != b`: on Dawn `!=` is false when an operand is NaN (an ordered compare). */
const notEqual: Expr = ([a, b]) => `(!(${a} == ${b}))`;

// ---- unary ----
export const neg = elementwise({ name: "neg", arity: 1, dtypes: SIGNED, reference: ([x]) => -x, wgsl: ([x]) => `(-${x})` });
export const abs = elementwise({ name: "abs", arity: 1, dtypes: SIGNED, reference: ([x]) => Math.abs(x), wgsl: ([x]) => `abs(${x})` });
export const sign = elementwise({ name: "sign", arity: 1, dtypes: SIGNED, reference: ([x]) => Math.sign(x), wgsl: ([x]) => `sign(${x})` });
export const exp = elementwise({ name: "exp", arity: 1, dtypes: FLOAT, reference: ([x]) => Math.exp(x), wgsl: ([x]) => `exp(${x})` });
export const log = elementwise({ name: "log", arity: 1, dtypes: FLOAT, reference: ([x]) => Math.log(x), wgsl: ([x]) => `log(${x})` });
export const sqrt = elementwise({ name: "sqrt", arity: 1, dtypes: FLOAT, reference: ([x]) => Math.sqrt(x), wgsl: ([x]) => `sqrt(${x})` });
export const rsqrt = elementwise({ name: "rsqrt", arity: 1, dtypes: FLOAT, reference: ([x]) => 1 / Math.sqrt(x), wgsl: ([x]) => `inverseSqrt(${x})` });
export const recip = elementwise({ name: "recip", arity: 1, dtypes: FLOAT, reference: ([x]) => 1 / x, wgsl: ([x]) => `(1.0 / ${x})` });
export const sin = elementwise({ name: "sin", arity: 1, dtypes: FLOAT, reference: ([x]) => Math.sin(x), wgsl: ([x]) => `sin(${x})` });
export const cos = elementwise({ name: "cos", arity: 1, dtypes: FLOAT, reference: ([x]) => Math.cos(x), wgsl: ([x]) => `cos(${x})` });
export const tanh = elementwise({ name: "tanh", arity: 1, dtypes: FLOAT, reference: ([x]) => Math.tanh(x), wgsl: ([x]) => `kiln_tanh(${x})` });
export const sigmoid = elementwise({ name: "sigmoid", arity: 1, dtypes: FLOAT, reference: ([x]) => 1 / (1 + Math.exp(-x)), wgsl: ([x]) => `kiln_sigmoid(${x})` });
export const relu = elementwise({ name: "relu", arity: 1, dtypes: SIGNED, reference: ([x]) => Math.max(x, 0), wgsl: ([x], c) => `max(${x}, ${zero(c)})` });
export const floor = elementwise({ name: "floor", arity: 1, dtypes: FLOAT, reference: ([x]) => Math.floor(x), wgsl: ([x]) => `floor(${x})` });
export const ceil = elementwise({ name: "ceil", arity: 1, dtypes: FLOAT, reference: ([x]) => Math.ceil(x), wgsl: ([x]) => `ceil(${x})` });
export const not = elementwise({ name: "not", arity: 1, dtypes: ["bool"], reference: ([x]) => (x ? 0 : 1), wgsl: ([x]) => `(!${x})` });

/** f32 → int truncates toward zero and clamps to the largest f32-representable value in range,
 *  as WGSL's conversions do. NaN → 0: WGSL leaves it indeterminate (Dawn gives the minimum), so
 *  the lowering selects 0 where `x == x` fails. Int ↔ int reinterprets bits. */
function castScalar(x: number, from: DType, to: DType): number {
  if (from === "f32" && int(to)) {
    if (Number.isNaN(x)) return 0;
    const [lo, hi] = to === "i32" ? [I32_MIN, 2147483520] : [0, 4294967040];
    return Math.min(Math.max(Math.trunc(x), lo), hi);
  }
  return x;
}

export const cast = defineOp({
  name: "cast",
  arity: 1,
  attrs: { dtype: "dtype" },
  infer: ([x], a) => ({ dtype: a.dtype, shape: x.shape }),
  reference: (ins, a, out) => mapBroadcast(ins, out, ([x], from) => castScalar(x, from, a.dtype)),
  lower: {
    kind: "elementwise",
    expr: ([x], c) => {
      const from = c.inTypes[0].dtype;
      const to = c.attrs.dtype;
      if (from === to) return x;
      if (to === "bool") return notEqual([x, lit(0, from)], c);
      if (from === "bool") return `select(${lit(0, to)}, ${lit(1, to)}, ${x})`;
      if (from === "f32" && int(to)) return `select(${lit(0, to)}, ${to}(${x}), ${x} == ${x})`;
      return `${to}(${x})`;
    },
  },
});

export const stopGradient = defineOp({
  name: "stop_gradient",
  arity: 1,
  attrs: {},
  infer: ([x]) => x,
  reference: (ins, _a, out) => mapBroadcast(ins, out, ([x]) => x),
  lower: { kind: "elementwise", expr: ([x]) => x },
  vjp: () => [undefined],
});

// ---- binary ----
const op2 = (sym: string): Expr => ([a, b]) => `(${a} ${sym} ${b})`;

export const add = elementwise({ name: "add", arity: 2, dtypes: NUMERIC, reference: ([a, b]) => a + b, wgsl: op2("+") });
export const sub = elementwise({ name: "sub", arity: 2, dtypes: NUMERIC, reference: ([a, b]) => a - b, wgsl: op2("-") });
export const mul = elementwise({
  name: "mul", arity: 2, dtypes: NUMERIC,
  reference: ([a, b], d) => (int(d) ? Math.imul(a, b) : a * b),
  wgsl: op2("*"),
});
/** Integer ÷0 gives the dividend, as WGSL defines it; i32 MIN ÷ -1 gives MIN. */
export const div = elementwise({
  name: "div", arity: 2, dtypes: NUMERIC,
  reference: ([a, b], d) => {
    if (d === "f32") return a / b;
    if (b === 0 || (d === "i32" && a === I32_MIN && b === -1)) return a;
    return Math.trunc(a / b);
  },
  wgsl: ([a, b], c) => ({ f32: `(${a} / ${b})`, i32: `kiln_idiv(${a}, ${b})`, u32: `kiln_udiv(${a}, ${b})`, bool: "" })[c.inTypes[0].dtype],
});
/** Truncated remainder (the sign of the dividend), as WGSL's %; integer x % 0 is 0. For f32,
 *  WGSL's x − y·trunc(x/y) truncates the f32 quotient: where x/y rounds to an integer in f32
 *  (e.g. -99.99986 % 9.999987) the result is ≈ 0, not the exact remainder ≈ -9.99998. */
export const mod = elementwise({
  name: "mod", arity: 2, dtypes: NUMERIC,
  reference: ([a, b], d) => {
    if (d === "f32") return a - b * Math.trunc(Math.fround(a / b));
    if (b === 0 || (d === "i32" && a === I32_MIN && b === -1)) return 0;
    return a % b;
  },
  wgsl: ([a, b], c) => ({ f32: `(${a} % ${b})`, i32: `kiln_imod(${a}, ${b})`, u32: `kiln_umod(${a}, ${b})`, bool: "" })[c.inTypes[0].dtype],
});
export const pow = elementwise({ name: "pow", arity: 2, dtypes: FLOAT, reference: ([a, b]) => Math.pow(a, b), wgsl: ([a, b]) => `kiln_pow(${a}, ${b})` });
export const max = elementwise({ name: "max", arity: 2, dtypes: NUMERIC, reference: ([a, b]) => Math.max(a, b), wgsl: ([a, b]) => `max(${a}, ${b})` });
export const min = elementwise({ name: "min", arity: 2, dtypes: NUMERIC, reference: ([a, b]) => Math.min(a, b), wgsl: ([a, b]) => `min(${a}, ${b})` });

const compare = <K extends OpKind>(name: K, dtypes: readonly DType[], wgsl: Expr, f: (a: number, b: number) => boolean) =>
  fixedOut({ name, arity: 2, dtypes, out: "bool", reference: ([a, b]) => (f(a, b) ? 1 : 0), wgsl });

export const eq = compare("eq", ANY, op2("=="), (a, b) => a === b);
export const ne = compare("ne", ANY, notEqual, (a, b) => a !== b);
export const lt = compare("lt", NUMERIC, op2("<"), (a, b) => a < b);
export const le = compare("le", NUMERIC, op2("<="), (a, b) => a <= b);
export const gt = compare("gt", NUMERIC, op2(">"), (a, b) => a > b);
export const ge = compare("ge", NUMERIC, op2(">="), (a, b) => a >= b);
export const and = elementwise({ name: "and", arity: 2, dtypes: ["bool"], reference: ([a, b]) => a && b, wgsl: op2("&&") });
export const or = elementwise({ name: "or", arity: 2, dtypes: ["bool"], reference: ([a, b]) => a || b, wgsl: op2("||") });

export const select = defineOp({
  name: "select",
  arity: 3,
  attrs: {},
  infer: (ins) => {
    const [c, a, b] = ins;
    if (c.dtype !== "bool") fail(`condition must be bool, got ${formatType(c)}`, ins);
    if (a.dtype !== b.dtype) fail("branch dtypes differ; cast explicitly", ins);
    return broadcastType(ins, a.dtype);
  },
  reference: (ins, _a, out) => {
    const r = tensor64(out.dtype, out.shape);
    forEachIndex(out.shape, (idx, flat) => {
      r.data[flat] = broadcastAt(ins[0], idx) ? broadcastAt(ins[1], idx) : broadcastAt(ins[2], idx);
    });
    return r;
  },
  lower: { kind: "elementwise", expr: ([c, a, b]) => `select(${b}, ${a}, ${c})` },
});
