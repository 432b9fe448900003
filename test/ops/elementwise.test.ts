/** Elementwise ops: an op database (dtypes, a value generator that stays out of each op's
 *  undefined regions, a tolerance from WGSL's accuracy table) checked on Dawn against the float64
 *  reference over random broadcasting shapes; then shape rules, casts and special values. */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import { ShapeError } from "../../src/ir/errors.ts";
import { DTYPES, type DType, type OpAttrs, type OpKind, type Shape } from "../../src/ir/types.ts";
import { expectMatchesReference, runGpu, useGpu, type Tolerance } from "../helpers/gpu.ts";

useGpu();

// ---- tolerances: |gpu − ref| ≤ atol + rtol·|ref|, ref in float64 on the f32 inputs ----
/** One f32 ULP relative to the value: ulp(v) ≤ 2^-23·|v| for every normal v. */
const ULP = 2 ** -23;
/** Integer and bool ops, comparisons (inputs are exact f32, so even ties compare exactly) and the
 *  f32 ops WGSL requires correctly rounded with an exact result (neg, abs, floor, max, …). */
const EXACT: Tolerance = { atol: 0, rtol: 0 };
const ulps = (n: number): Tolerance => ({ atol: 0, rtol: n * ULP });
/** + − × and int → f32 are correctly rounded (½ ULP); the other ½ covers the reference's own
 *  float64 rounding of a sum of far-apart magnitudes. */
const ROUNDED = ulps(1);

// ---- values: f32 never subnormal (lavapipe flushes those to zero; float64 would not) ----
const I32_MIN = -(2 ** 31);
const I32_MAX = 2 ** 31 - 1;
const f32 = (min: number, max: number) =>
  fc.float({ min: Math.fround(min), max: Math.fround(max), noNaN: true }).map((v) => (Math.abs(v) < 1e-6 ? 0 : v));
/** Magnitudes in [lo, hi], either sign: away from 0, for divisors. */
const mag = (lo: number, hi: number) => fc.tuple(f32(lo, hi), fc.boolean()).map(([v, neg]) => (neg ? -v : v));
const i32 = fc.integer({ min: I32_MIN, max: I32_MAX });
const u32 = fc.integer({ min: 0, max: 2 ** 32 - 1 });
const bool = fc.constantFrom(0, 1);
/** Small operands, zero, −1 and MIN often: the edges of integer ÷ and %. */
const i32Div = fc.oneof(fc.integer({ min: -9, max: 9 }), fc.constantFrom(I32_MIN, -1, 0, I32_MAX), i32);
const u32Div = fc.oneof(fc.integer({ min: 0, max: 9 }), u32);
/** Values drawn from a few constants half the time, so comparisons meet equal operands. */
const tied = (base: fc.Arbitrary<number>, ...common: number[]) => fc.oneof(fc.constantFrom(...common), base);
const VALUES: Record<DType, fc.Arbitrary<number>> = { f32: f32(-1e6, 1e6), i32, u32, bool };
const TIED: Record<DType, fc.Arbitrary<number>> = {
  f32: tied(f32(-4, 4), -1, 0, 0.5, 1),
  i32: tied(i32, I32_MIN, -1, 0, 1),
  u32: tied(u32, 0, 1, 2 ** 32 - 1),
  bool,
};

interface Case {
  readonly name: string;
  readonly op: OpKind;
  /** Input dtypes, one per operand. */
  readonly dtypes: readonly DType[];
  /** Value generator per operand (the last one repeats). */
  readonly values: readonly fc.Arbitrary<number>[];
  readonly tol: Tolerance;
  readonly attrs?: object;
}

const c = (op: OpKind, dtypes: readonly DType[], values: readonly fc.Arbitrary<number>[], tol: Tolerance, extra = ""): Case => ({
  name: `${op} ${dtypes.join(",")}${extra}`,
  op,
  dtypes,
  values,
  tol,
});
const f1 = (op: OpKind, v: fc.Arbitrary<number>, tol: Tolerance) => c(op, ["f32"], [v], tol);
const f2 = (op: OpKind, a: fc.Arbitrary<number>, b: fc.Arbitrary<number>, tol: Tolerance, extra?: string) =>
  c(op, ["f32", "f32"], [a, b], tol, extra);

const CASES: Case[] = [
  ...(["neg", "abs", "sign", "relu", "floor", "ceil"] as const).map((op) => f1(op, VALUES.f32, EXACT)),
  ...(["neg", "abs", "sign", "relu"] as const).map((op) => c(op, ["i32"], [i32], EXACT)),
  c("not", ["bool"], [bool], EXACT),
  // exp: 3 + 2·|x| ULP; |x| ≤ 10.
  f1("exp", f32(-10, 10), ulps(3 + 2 * 10)),
  // log: absolute 2^-21 inside [0.5, 2], 3 ULP outside.
  f1("log", f32(1e-3, 1e3), { atol: 2 ** -21, rtol: 3 * ULP }),
  // sqrt is inherited from 1 / inverseSqrt(x): 2 ULP, then ÷ 2.5 ULP.
  f1("sqrt", f32(0, 1e6), ulps(2 + 2.5)),
  f1("rsqrt", f32(1e-6, 1e6), ulps(2)),
  // 1.0 / x: ÷ is 2.5 ULP for |x| in [2^-126, 2^126].
  f1("recip", mag(1e-3, 1e3), ulps(2.5)),
  // sin, cos: absolute 2^-11 inside [-π, π] (nothing is promised outside).
  f1("sin", f32(-3.14159, 3.14159), { atol: 2 ** -11, rtol: 0 }),
  f1("cos", f32(-3.14159, 3.14159), { atol: 2 ** -11, rtol: 0 }),
  // tanh is inherited from sinh/cosh = (e^x − e^-x)/(e^x + e^-x): each exp within (3 + 2|x|)
  // ULP of its own value makes the ratio off by ≤ 2(3 + 2|x|) ULP of 1, plus ≈ 3.5 ULP of
  // rounding in −, + and ÷; |x| ≤ 9.
  f1("tanh", f32(-9, 9), { atol: (2 * (3 + 2 * 9) + 3.5) * ULP, rtol: 0 }),
  // sigmoid = 1/(1 + e) or e/(1 + e), e = exp(-|x|): relative error of e (3 + 2|x| ULP) passes
  // through at most 1:1, plus + and ÷ (3 ULP); |x| ≤ 20.
  f1("sigmoid", f32(-20, 20), ulps(3 + 2 * 20 + 3)),

  ...(["add", "sub"] as const).map((op) => f2(op, VALUES.f32, VALUES.f32, ROUNDED)),
  f2("mul", mag(1e-6, 1e6), mag(1e-6, 1e6), ROUNDED),
  f2("div", f32(-1e3, 1e3), mag(1e-3, 1e3), ulps(2.5)),
  // f32 % is inherited from x − y·trunc(x/y) (the reference truncates the same f32 quotient, so
  // this assumes a correctly rounded ÷, as lavapipe's is): with |x| ≤ 100, |y| ≤ 10 the product
  // and the difference stay below 128, so each of the two roundings is ≤ ½·2^-17.
  f2("mod", f32(-100, 100), mag(0.5, 10), { atol: 2 ** -17, rtol: 0 }),
  // pow(x, y) is inherited from exp2(y·log2 x). With x in [0.1, 10], |y| ≤ 4: log2 x is off by
  // ≤ 1.5·2^-21 absolute, so t = y·log2 x by ≤ 6·2^-21 + ½ ulp(13.3) < 2^-18, which exp2 turns
  // into a relative ln2·2^-18; exp2 itself adds 3 + 2|t| ULP, |t| ≤ 13.3.
  f2("pow", f32(0.1, 10), f32(-4, 4), { atol: 0, rtol: Math.LN2 * 2 ** -18 + (3 + 2 * 13.3) * ULP }, " (positive base)"),
  f2(
    "pow",
    f32(-10, -0.1),
    fc.integer({ min: -4, max: 4 }),
    { atol: 0, rtol: Math.LN2 * 2 ** -18 + (3 + 2 * 13.3) * ULP },
    " (negative base, integer exponent)",
  ),
  ...(["max", "min"] as const).map((op) => f2(op, TIED.f32, TIED.f32, EXACT)),

  // Integer arithmetic wraps (add, sub, mul over the full range); ÷ and % by 0, by −1 and of
  // MIN are defined by WGSL, and the reference follows it.
  ...(["add", "sub", "mul", "max", "min"] as const).flatMap((op) => [
    c(op, ["i32", "i32"], [i32], EXACT),
    c(op, ["u32", "u32"], [u32], EXACT),
  ]),
  ...(["div", "mod"] as const).flatMap((op) => [c(op, ["i32", "i32"], [i32Div], EXACT), c(op, ["u32", "u32"], [u32Div], EXACT)]),

  ...(["eq", "ne", "lt", "le", "gt", "ge"] as const).flatMap((op) =>
    (["f32", "i32", "u32"] as const).map((d) => c(op, [d, d], [TIED[d]], EXACT)),
  ),
  ...(["eq", "ne", "and", "or"] as const).map((op) => c(op, ["bool", "bool"], [bool], EXACT)),

  ...(["f32", "i32", "bool"] as const).map((d) => c("select", ["bool", d, d], [bool, VALUES[d]], EXACT)),

  // cast: f32 → int truncates and clamps (values past both ends of i32 and u32); int ↔ int
  // reinterprets; int → f32 rounds to nearest (½ ULP).
  ...DTYPES.flatMap((from) =>
    DTYPES.map(
      (to): Case => ({
        name: `cast ${from} → ${to}`,
        op: "cast",
        dtypes: [from],
        attrs: { dtype: to },
        values: [from === "f32" ? fc.oneof(f32(-1e3, 1e3), f32(-1e10, 1e10)) : VALUES[from]],
        tol: from !== "f32" && to === "f32" ? ROUNDED : EXACT,
      }),
    ),
  ),
];

// ---- shapes: an output shape and each input a right-aligned suffix of it, some dims 1 ----
const DIMS = [1, 2, 3, 5, 7, 17, 65];
const MAX_ELEMENTS = 3000;
const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

interface Shapes {
  readonly declared: Shape[];
  readonly concrete: number[][];
}

/** Rank 0–4, odd sizes and size-1 dims, up to 3,000 elements (several 64-wide workgroups); half
 *  the time axis 0 is the symbolic "B" in every input that has it unbroadcast. */
function broadcasting(arity: number): fc.Arbitrary<Shapes> {
  const view = fc.record({
    drop: fc.constantFrom(0, 0, 0, 1, 2, 4),
    ones: fc.array(fc.constantFrom(false, false, true), { minLength: 4, maxLength: 4 }),
  });
  const out = fc
    .integer({ min: 0, max: 4 })
    .chain((rank) => fc.array(fc.constantFrom(...DIMS), { minLength: rank, maxLength: rank }))
    .filter((s) => prod(s) <= MAX_ELEMENTS);
  // Unbiased: fast-check's bias toward small values would make most shapes rank 0.
  return fc
    .noBias(fc.record({ out, batch: fc.boolean(), views: fc.tuple(...Array.from({ length: arity }, () => view)) }))
    .map(({ out, batch, views }) => {
      // Input 0 keeps the full rank, so the output's rank is the one drawn.
      const concrete = views.map(({ drop, ones }, i) =>
        out.map((d, a) => (ones[a] ? 1 : d)).slice(i === 0 ? 0 : Math.min(drop, out.length)),
      );
      const declared = concrete.map((s, i): Shape => {
        const keepsAxis0 = s.length === out.length && s.length > 0 && !views[i].ones[0];
        return batch && keepsAxis0 ? ["B", ...s.slice(1)] : s;
      });
      return { declared, concrete };
    });
}

function caseInputs(cs: Case) {
  return broadcasting(cs.dtypes.length).chain((shapes) =>
    fc.tuple(
      fc.constant(shapes),
      fc.tuple(
        ...shapes.concrete.map((s, i) => {
          const n = prod(s);
          return fc.array(cs.values[Math.min(i, cs.values.length - 1)], { minLength: n, maxLength: n });
        }),
      ),
    ),
  );
}

describe("elementwise ops on Dawn match the float64 reference", () => {
  // Each distinct static shape compiles a shader (tens of ms on lavapipe): few runs per op, many
  // ops, and a seed per case so the ops do not all see the same shapes.
  test.each(CASES.map((cs, i) => ({ ...cs, seed: 42 + i })))("$name", async (cs) => {
    await fc.assert(
      fc.asyncProperty(caseInputs(cs), async ([shapes, data]) => {
        const g = new GraphBuilder();
        const xs = cs.dtypes.map((d, i) => g.input(`x${i}`, d, shapes.declared[i]));
        const y = g.add(cs.op, xs, (cs.attrs ?? {}) as OpAttrs[OpKind]);
        const inputs = Object.fromEntries(xs.map((_, i) => [`x${i}`, { shape: shapes.concrete[i], data: data[i] }]));
        await expectMatchesReference(g.build({ y }), inputs, cs.tol);
      }),
      { seed: cs.seed, numRuns: 4 },
    );
  });
});

/** The line of the caller: builder errors must point at it. */
function lineHere(): number {
  const frame = new Error().stack!.split("\n")[2];
  return Number(/:(\d+):\d+\)?$/.exec(frame)![1]);
}

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error("did not throw");
}

describe("shape and dtype rules", () => {
  const g = new GraphBuilder();
  let k = 0;
  const t = (dtype: DType, shape: Shape) => g.input(`t${k++}`, dtype, shape);

  test("numpy broadcasting, symbolic dims included", () => {
    expect(t("f32", ["B", 1, 3]).add(t("f32", [4, 1])).shape).toEqual(["B", 4, 3]);
    expect(t("f32", []).mul(t("f32", [2, 3])).shape).toEqual([2, 3]);
    expect(t("f32", [1]).sub(t("f32", ["B"])).shape).toEqual(["B"]);
    expect(t("f32", ["B", "T"]).maximum(t("f32", ["B", 1])).shape).toEqual(["B", "T"]);
    expect(t("i32", [5, 1, 1]).lt(t("i32", [1, "N", 7])).type).toEqual({ dtype: "bool", shape: [5, "N", 7] });
    expect(t("f32", ["B", 3]).cast("u32").type).toEqual({ dtype: "u32", shape: ["B", 3] });
    expect(t("bool", [2, 1]).select(t("f32", [3]), t("f32", ["B", 1, 1])).type).toEqual({ dtype: "f32", shape: ["B", 2, 3] });
    expect(t("i32", [2]).add(3).dtype).toBe("i32");
  });

  test("errors name the op, the node, the call site and the shapes", () => {
    const h = new GraphBuilder();
    const a = h.input("a", "f32", [2, 3]);
    const b = h.input("b", "f32", [4]);
    const [line, err] = [lineHere(), thrown(() => a.add(b))];
    expect(err).toBeInstanceOf(ShapeError);
    expect(err.message).toBe(`add %2 @ elementwise.test.ts:${line}: shapes do not broadcast (f32[2,3], f32[4])`);
  });

  test("a symbolic dim does not broadcast against a static one or another symbol", () => {
    expect(() => t("f32", ["B"]).add(t("f32", [3]))).toThrow("shapes do not broadcast (f32[B], f32[3])");
    expect(() => t("f32", ["B", 2]).mul(t("f32", ["C", 2]))).toThrow("shapes do not broadcast (f32[B,2], f32[C,2])");
  });

  test("dtypes never promote", () => {
    expect(() => t("f32", [2]).add(t("i32", [2]))).toThrow(
      /^add %\d+ @ elementwise\.test\.ts:\d+: dtypes differ; cast explicitly \(f32\[2\], i32\[2\]\)$/,
    );
    expect(() => t("i32", [2]).exp()).toThrow("exp needs f32, got i32 (i32[2])");
    expect(() => t("bool", [2]).lt(t("bool", [2]))).toThrow("lt needs f32 or i32 or u32, got bool");
    expect(() => t("u32", [2]).neg()).toThrow("neg needs f32 or i32, got u32");
    expect(() => t("f32", [2]).select(t("f32", [2]), t("f32", [2]))).toThrow("condition must be bool, got f32[2]");
    expect(() => t("bool", [2]).select(t("f32", [2]), t("i32", [2]))).toThrow(
      "branch dtypes differ; cast explicitly (bool[2], f32[2], i32[2])",
    );
  });
});

/** Run `y = f(x[, w])` on Dawn over the given values; checks the reference agrees, returns Dawn's. */
async function apply(
  dtype: DType,
  xs: readonly number[],
  f: (x: Tensor, w: Tensor) => Tensor,
  ws: readonly number[] = xs,
  tol = EXACT,
): Promise<number[]> {
  const g = new GraphBuilder();
  const x = g.input("x", dtype, [xs.length]);
  const w = g.input("w", dtype, [ws.length]);
  const graph = g.build({ y: f(x, w) });
  const inputs = { x: { shape: [xs.length], data: xs }, w: { shape: [ws.length], data: ws } };
  await expectMatchesReference(graph, inputs, tol);
  return Array.from((await runGpu(graph, inputs)).y.data);
}

const INF = Infinity;

describe("cast", () => {
  test("f32 → int truncates toward zero, clamps to the largest f32 in range, and NaN gives 0", async () => {
    const xs = [2.7, -2.7, -0.5, 3e9, -3e9, 5e9, INF, -INF, NaN];
    expect(await apply("f32", xs, (x) => x.cast("i32"))).toEqual([2, -2, 0, 2147483520, I32_MIN, 2147483520, 2147483520, I32_MIN, 0]);
    expect(await apply("f32", xs, (x) => x.cast("u32"))).toEqual([2, 0, 0, 3e9, 0, 4294967040, 4294967040, 0, 0]);
  });

  test("int ↔ int reinterprets the bits", async () => {
    expect(await apply("i32", [-1, I32_MIN, I32_MAX, 0], (x) => x.cast("u32"))).toEqual([2 ** 32 - 1, 2 ** 31, I32_MAX, 0]);
    expect(await apply("u32", [2 ** 32 - 1, 2 ** 31, 7], (x) => x.cast("i32"))).toEqual([-1, I32_MIN, 7]);
  });

  test("bool: nonzero (NaN included) is true; true is 1", async () => {
    expect(await apply("f32", [0, -0, 0.25, -3, NaN, INF], (x) => x.cast("bool"))).toEqual([0, 0, 1, 1, 1, 1]);
    expect(await apply("i32", [0, -5, 7], (x) => x.cast("bool"))).toEqual([0, 1, 1]);
    expect(await apply("bool", [0, 1], (x) => x.cast("f32"))).toEqual([0, 1]);
    expect(await apply("bool", [0, 1], (x) => x.cast("u32"))).toEqual([0, 1]);
  });

  test("int → f32 rounds to nearest", async () => {
    expect(await apply("i32", [I32_MAX, -16777217, 3], (x) => x.cast("f32"), undefined, ROUNDED)).toEqual([2 ** 31, -16777216, 3]);
  });
});

describe("special values", () => {
  const xs = [INF, -INF, NaN, 0, 1, -1, INF, 3];
  const ws = [-INF, 2, 1, INF, NaN, -INF, INF, -0];

  test("inf and NaN pass through add, mul and exp as in IEEE 754", async () => {
    expect(await apply("f32", xs, (x, w) => x.add(w), ws)).toEqual([NaN, -INF, NaN, INF, NaN, -INF, INF, 3]);
    expect(await apply("f32", xs, (x, w) => x.mul(w), ws)).toEqual([-INF, -INF, NaN, NaN, NaN, INF, INF, -0]);
    const e = await apply("f32", xs, (x) => x.exp(), xs, ulps(5));
    expect([e[0], e[1], e[2], e[3]]).toEqual([INF, 0, NaN, 1]);
  });

  test("sigmoid and tanh saturate at ±100 and ±inf instead of giving NaN", async () => {
    const big = [100, -100, 1e30, -1e30, INF, -INF];
    expect(await apply("f32", big, (x) => x.sigmoid(), big, { atol: 1e-30, rtol: 0 })).toEqual([1, 0, 1, 0, 1, 0]);
    expect(await apply("f32", big, (x) => x.tanh())).toEqual([1, -1, 1, -1, 1, -1]);
    expect(await apply("f32", [NaN], (x) => x.tanh())).toEqual([NaN]);
  });

  test("comparisons with NaN: only ne is true", async () => {
    const cmp = (f: (x: Tensor, w: Tensor) => Tensor) => apply("f32", [NaN, NaN, 1], f, [NaN, 1, NaN]);
    expect(await cmp((x, w) => x.eq(w))).toEqual([0, 0, 0]);
    expect(await cmp((x, w) => x.ne(w))).toEqual([1, 1, 1]);
    expect(await cmp((x, w) => x.lt(w))).toEqual([0, 0, 0]);
    expect(await cmp((x, w) => x.ge(w))).toEqual([0, 0, 0]);
  });

  test("f32 % truncates the f32 quotient, as WGSL defines it", async () => {
    // -99.99986 / 9.999987 = -9.9999988 rounds to -10 in f32: the remainder is ≈ 0, not ≈ -9.99998.
    const r = await apply("f32", [-99.99986267089844, 7.5, -7.5], (x, w) => x.mod(w), [9.99998664855957, 2, 2], {
      atol: 2 ** -17,
      rtol: 0,
    });
    expect(Math.abs(r[0])).toBeLessThan(1e-5);
    expect(r.slice(1)).toEqual([1.5, -1.5]);
  });

  test("pow: 0^0 = 1, negative bases with integer exponents, NaN otherwise", async () => {
    const base = [0, -2, -2, -2, -2, 0, 2, 0];
    const expo = [0, 3, 0.5, 0, -2, 2, -1, -1];
    expect(await apply("f32", base, (x, w) => x.pow(w), expo, ulps(2))).toEqual([1, -8, NaN, 1, 0.25, 0, 0.5, INF]);
  });
});
