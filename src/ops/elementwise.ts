/** Elementwise primitives: unary math, binary arithmetic and comparisons with numpy
 *  broadcasting, select, cast. Each is a scalar reference plus a scalar WGSL expression; the
 *  shape rule, the broadcasting loop and the kernel around them are shared. Inputs of one op
 *  share a dtype: Kiln never promotes implicitly (cast says what you mean).
 *
 *  Gradient rules: binary ops and select sum each cotangent back to its input's shape
 *  (`sumTo` undoes the broadcast). Comparisons, and, or, not have no rule: their bool outputs
 *  never carry a cotangent, so grad never asks (a comparison of f32 values contributes zero). */
import { broadcastShapes, formatType } from "../ir/shape.ts";
import type { DType, OpKind, TensorType } from "../ir/types.ts";
import { ANY, defineOp, fail, FLOAT, NUMERIC, requireDtype, SIGNED, type LowerCtx, type OpDef, type Vjp } from "./def.ts";
import { lit } from "./wgsl.ts";
import { broadcastAt, forEachIndex, tensor64, wrap, type Tensor64 } from "./tensor64.ts";
import type { Tensor } from "../api/builder.ts";

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

export interface ElementwiseSpec<K extends OpKind> {
  name: K;
  arity: number;
  /** dtypes the inputs may have (all inputs share one). */
  dtypes: readonly DType[];
  /** Output dtype; default: the inputs'. */
  out?: DType;
  reference: Scalar;
  wgsl: Expr;
  /** Rough cost in a fused cone (see def.ts `Pattern`): 1 for + − × and selects, 2 for ÷ and √,
   *  4 for transcendentals. */
  cost: number;
  /** The two operands swap bit for bit (IEEE + and × do). */
  commutative?: boolean;
  vjp?: Vjp<K>;
}

/** One elementwise op's record from its scalar rules (also used by ./erf.ts). */
export function elementwise<K extends OpKind>(s: ElementwiseSpec<K>): OpDef<K> {
  return defineOp<K>({
    name: s.name,
    arity: s.arity,
    attrs: {} as never,
    infer: (ins) => broadcastType(ins, s.out ?? requireDtype(ins, s.dtypes, s.name)),
    reference: (ins, _attrs, out) => mapBroadcast(ins, out, s.reference),
    lower: { kind: "elementwise", expr: s.wgsl },
    pattern: { kind: "elementwise", cost: s.cost, commutative: s.commutative ?? false },
    vjp: s.vjp,
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
/** 1 − t, for derivative formulas. */
const oneMinus = (t: Tensor): Tensor => t.builder.constant(1).sub(t);
/** Piecewise constant (sign, floor, ceil): the derivative is zero wherever it exists. */
const piecewiseConstant = (): [undefined] => [undefined];

// ---- unary ----
export const neg = elementwise({
  name: "neg",
  arity: 1,
  dtypes: SIGNED,
  reference: ([x]) => -x,
  cost: 1,
  wgsl: ([x]) => `(-${x})`,
  vjp: ({ g }) => [g.neg()],
});
export const abs = elementwise({
  name: "abs",
  arity: 1,
  dtypes: SIGNED,
  reference: ([x]) => Math.abs(x),
  cost: 1,
  wgsl: ([x]) => `abs(${x})`,
  vjp: ({ g, ins: [x] }) => [g.mul(x.sign())], // d|x| = sign x (0 at the kink)
});
export const sign = elementwise({
  name: "sign",
  arity: 1,
  dtypes: SIGNED,
  reference: ([x]) => Math.sign(x),
  cost: 1,
  wgsl: ([x]) => `sign(${x})`,
  vjp: piecewiseConstant,
});
export const exp = elementwise({
  name: "exp",
  arity: 1,
  dtypes: FLOAT,
  reference: ([x]) => Math.exp(x),
  cost: 4,
  wgsl: ([x]) => `exp(${x})`,
  vjp: ({ g, out }) => [g.mul(out)],
});
export const log = elementwise({
  name: "log",
  arity: 1,
  dtypes: FLOAT,
  reference: ([x]) => Math.log(x),
  cost: 4,
  wgsl: ([x]) => `log(${x})`,
  vjp: ({ g, ins: [x] }) => [g.div(x)],
});
export const sqrt = elementwise({
  name: "sqrt",
  arity: 1,
  dtypes: FLOAT,
  reference: ([x]) => Math.sqrt(x),
  cost: 2,
  wgsl: ([x]) => `sqrt(${x})`,
  vjp: ({ g, out }) => [g.div(out.mul(2))], // d√x = 1 / 2√x
});
export const rsqrt = elementwise({
  name: "rsqrt",
  arity: 1,
  dtypes: FLOAT,
  reference: ([x]) => 1 / Math.sqrt(x),
  cost: 2,
  wgsl: ([x]) => `inverseSqrt(${x})`,
  vjp: ({ g, out }) => [g.mul(out.mul(out).mul(out)).mul(-0.5)], // d x^-½ = −½·x^-3/2 = −½·out³
});
export const recip = elementwise({
  name: "recip",
  arity: 1,
  dtypes: FLOAT,
  reference: ([x]) => 1 / x,
  cost: 2,
  wgsl: ([x]) => `(1.0 / ${x})`,
  vjp: ({ g, out }) => [g.mul(out.mul(out)).neg()], // d 1/x = −1/x² = −out²
});
export const sin = elementwise({
  name: "sin",
  arity: 1,
  dtypes: FLOAT,
  reference: ([x]) => Math.sin(x),
  cost: 4,
  wgsl: ([x]) => `sin(${x})`,
  vjp: ({ g, ins: [x] }) => [g.mul(x.cos())],
});
export const cos = elementwise({
  name: "cos",
  arity: 1,
  dtypes: FLOAT,
  reference: ([x]) => Math.cos(x),
  cost: 4,
  wgsl: ([x]) => `cos(${x})`,
  vjp: ({ g, ins: [x] }) => [g.mul(x.sin()).neg()],
});
export const tanh = elementwise({
  name: "tanh",
  arity: 1,
  dtypes: FLOAT,
  reference: ([x]) => Math.tanh(x),
  cost: 4,
  wgsl: ([x]) => `kiln_tanh(${x})`,
  vjp: ({ g, out }) => [g.mul(oneMinus(out.mul(out)))], // d tanh = 1 − tanh²
});
export const sigmoid = elementwise({
  name: "sigmoid",
  arity: 1,
  dtypes: FLOAT,
  reference: ([x]) => 1 / (1 + Math.exp(-x)),
  cost: 4,
  wgsl: ([x]) => `kiln_sigmoid(${x})`,
  vjp: ({ g, out }) => [g.mul(out.mul(oneMinus(out)))], // d σ = σ·(1 − σ)
});
export const relu = elementwise({
  name: "relu",
  arity: 1,
  dtypes: SIGNED,
  reference: ([x]) => Math.max(x, 0),
  cost: 1,
  // f32: NaN stays NaN, as Math.max(NaN, 0) (see kiln_max in ./wgsl.ts).
  wgsl: ([x], c) => (c.inTypes[0].dtype === "f32" ? `kiln_max(${x}, 0.0f)` : `max(${x}, ${zero(c)})`),
  // 1 where x > 0, 0 at the kink and below; relu(x) > 0 exactly there, so the rule reads the
  // output: the backward pass keeps the activation, not also the pre-activation, and the
  // forward's matmul + bias + relu stays one kernel.
  vjp: ({ g, out }) => [out.gt(0).select(g, 0)],
});
export const floor = elementwise({
  name: "floor",
  arity: 1,
  dtypes: FLOAT,
  reference: ([x]) => Math.floor(x),
  cost: 1,
  wgsl: ([x]) => `floor(${x})`,
  vjp: piecewiseConstant,
});
export const ceil = elementwise({
  name: "ceil",
  arity: 1,
  dtypes: FLOAT,
  reference: ([x]) => Math.ceil(x),
  cost: 1,
  wgsl: ([x]) => `ceil(${x})`,
  vjp: piecewiseConstant,
});
export const not = elementwise({
  name: "not",
  arity: 1,
  dtypes: ["bool"],
  reference: ([x]) => (x ? 0 : 1),
  cost: 1,
  wgsl: ([x]) => `(!${x})`,
});

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
  pattern: { kind: "elementwise", cost: 1, commutative: false },
  // Only f32 → f32 gets here (the identity): grad gives cotangents only to f32 values and asks
  // rules only for f32 inputs, so a cast to or from another dtype passes no gradient.
  vjp: ({ g }) => [g],
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
  pattern: { kind: "elementwise", cost: 1, commutative: false },
  vjp: () => [undefined],
});

// ---- binary ----
const op2 =
  (sym: string): Expr =>
  ([a, b]) =>
    `(${a} ${sym} ${b})`;

export const add = elementwise({
  name: "add",
  arity: 2,
  dtypes: NUMERIC,
  reference: ([a, b]) => a + b,
  cost: 1,
  commutative: true,
  wgsl: op2("+"),
  vjp: ({ g, ins: [a, b] }) => [g.sumTo(a.shape), g.sumTo(b.shape)],
});
export const sub = elementwise({
  name: "sub",
  arity: 2,
  dtypes: NUMERIC,
  reference: ([a, b]) => a - b,
  cost: 1,
  wgsl: op2("-"),
  vjp: ({ g, ins: [a, b] }) => [g.sumTo(a.shape), g.neg().sumTo(b.shape)],
});
export const mul = elementwise({
  name: "mul",
  arity: 2,
  dtypes: NUMERIC,
  reference: ([a, b], d) => (int(d) ? Math.imul(a, b) : a * b),
  cost: 1,
  commutative: true,
  wgsl: op2("*"),
  vjp: ({ g, ins: [a, b] }) => [g.mul(b).sumTo(a.shape), g.mul(a).sumTo(b.shape)],
});
/** Integer ÷0 gives the dividend, as WGSL defines it; i32 MIN ÷ -1 gives MIN. */
export const div = elementwise({
  name: "div",
  arity: 2,
  dtypes: NUMERIC,
  reference: ([a, b], d) => {
    if (d === "f32") return a / b;
    if (b === 0 || (d === "i32" && a === I32_MIN && b === -1)) return a;
    return Math.trunc(a / b);
  },
  cost: 2,
  wgsl: ([a, b], c) => ({ f32: `(${a} / ${b})`, i32: `kiln_idiv(${a}, ${b})`, u32: `kiln_udiv(${a}, ${b})`, bool: "" })[c.inTypes[0].dtype],
  // ∂b = −g·a/b² = −g·out/b
  vjp: ({ g, ins: [a, b], out }) => [g.div(b).sumTo(a.shape), g.mul(out).div(b).neg().sumTo(b.shape)],
});
/** Truncated remainder (the sign of the dividend), as WGSL's %; integer x % 0 is 0. For f32,
 *  WGSL's x − y·trunc(x/y) truncates the f32 quotient: where x/y rounds to an integer in f32
 *  (e.g. -99.99986 % 9.999987) the result is ≈ 0, not the exact remainder ≈ -9.99998. */
export const mod = elementwise({
  name: "mod",
  arity: 2,
  dtypes: NUMERIC,
  reference: ([a, b], d) => {
    if (d === "f32") return a - b * Math.trunc(Math.fround(a / b));
    if (b === 0 || (d === "i32" && a === I32_MIN && b === -1)) return 0;
    return a % b;
  },
  cost: 2,
  wgsl: ([a, b], c) => ({ f32: `(${a} % ${b})`, i32: `kiln_imod(${a}, ${b})`, u32: `kiln_umod(${a}, ${b})`, bool: "" })[c.inTypes[0].dtype],
  // a % b = a − b·trunc(a/b), trunc piecewise constant: ∂a = g, ∂b = −g·trunc(a/b), with
  // trunc q = sign q · floor |q|. (At integer quotients the remainder jumps: no derivative.)
  vjp: ({ g, ins: [a, b] }) => {
    const q = a.div(b);
    return [g.sumTo(a.shape), g.mul(q.sign().mul(q.abs().floor())).neg().sumTo(b.shape)];
  },
});
/** ∂a = g·b·a^(b−1). ∂b = g·out·ln a where a > 0, else 0: a < 0 has a power only at integer b
 *  (no derivative in b), and 0^b is constant for b > 0. Selecting a's stand-in 1 before the log
 *  keeps NaN out of the unselected lanes, of this rule and of grad of grad (log's rule g/x). */
export const pow = elementwise({
  name: "pow",
  arity: 2,
  dtypes: FLOAT,
  reference: ([a, b]) => Math.pow(a, b),
  cost: 6,
  wgsl: ([a, b]) => `kiln_pow(${a}, ${b})`,
  vjp: ({ g, ins: [a, b], out }) => {
    const positive = a.gt(0);
    const lnA = positive.select(a, 1).log();
    return [
      g
        .mul(b)
        .mul(a.pow(b.sub(1)))
        .sumTo(a.shape),
      positive.select(g.mul(out).mul(lnA), 0).sumTo(b.shape),
    ];
  },
});
/** The larger (smaller) input gets g; at a tie each gets g/2, so the two still sum to g (as
 *  for max(x, x) = x) and neither side's one-sided derivative is favoured. */
const extremum =
  (wins: (a: Tensor, b: Tensor) => Tensor): Vjp<"max" | "min"> =>
  ({ g, ins: [a, b] }) => {
    const share = wins(a, b).select(1, a.eq(b).select(0.5, 0));
    const ga = g.mul(share);
    return [ga.sumTo(a.shape), g.sub(ga).sumTo(b.shape)];
  };
export const max = elementwise({
  name: "max",
  arity: 2,
  dtypes: NUMERIC,
  reference: ([a, b]) => Math.max(a, b),
  cost: 1,
  wgsl: ([a, b], c) => `${c.inTypes[0].dtype === "f32" ? "kiln_max" : "max"}(${a}, ${b})`,
  vjp: extremum((a, b) => a.gt(b)),
});
export const min = elementwise({
  name: "min",
  arity: 2,
  dtypes: NUMERIC,
  reference: ([a, b]) => Math.min(a, b),
  cost: 1,
  wgsl: ([a, b], c) => `${c.inTypes[0].dtype === "f32" ? "kiln_min" : "min"}(${a}, ${b})`,
  vjp: extremum((a, b) => a.lt(b)),
});

const compare = <K extends OpKind>(
  name: K,
  dtypes: readonly DType[],
  wgsl: Expr,
  f: (a: number, b: number) => boolean,
  commutative = false,
) => fixedOut({ name, arity: 2, dtypes, out: "bool", reference: ([a, b]) => (f(a, b) ? 1 : 0), wgsl, cost: 1, commutative });

export const eq = compare("eq", ANY, op2("=="), (a, b) => a === b, true);
export const ne = compare("ne", ANY, notEqual, (a, b) => a !== b, true);
export const lt = compare("lt", NUMERIC, op2("<"), (a, b) => a < b);
export const le = compare("le", NUMERIC, op2("<="), (a, b) => a <= b);
export const gt = compare("gt", NUMERIC, op2(">"), (a, b) => a > b);
export const ge = compare("ge", NUMERIC, op2(">="), (a, b) => a >= b);
export const and = elementwise({
  name: "and",
  arity: 2,
  dtypes: ["bool"],
  reference: ([a, b]) => a && b,
  cost: 1,
  commutative: true,
  wgsl: op2("&&"),
});
export const or = elementwise({
  name: "or",
  arity: 2,
  dtypes: ["bool"],
  reference: ([a, b]) => a || b,
  cost: 1,
  commutative: true,
  wgsl: op2("||"),
});

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
  pattern: { kind: "elementwise", cost: 1, commutative: false },
  // The condition gets no cotangent; each branch gets g where it was chosen.
  vjp: ({ g, ins: [c, a, b] }) => [undefined, c.select(g, 0).sumTo(a.shape), c.select(0, g).sumTo(b.shape)],
});
