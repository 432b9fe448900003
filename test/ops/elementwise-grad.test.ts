/** Gradients of the elementwise ops and the sources. Per op: (a) the float64 directional
 *  gradcheck over random broadcasting shapes, with values kept away from the op's kinks and
 *  undefined regions; (b) the gradient graph on Dawn against the float64 reference, a symbolic
 *  batch included. Then second order (Hessian-vector products), ties, and NaN-free pow. */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import { grad } from "../../src/api/grad.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import { bindShape, type DimEnv } from "../../src/ir/shape.ts";
import type { DType, Shape } from "../../src/ir/types.ts";
import { floats } from "../helpers/data.ts";
import { expectMatchesReference, useGpu, type Tolerance } from "../helpers/gpu.ts";
import { expectGradOk } from "../helpers/gradcheck.ts";

useGpu();

// ---- values: each generator says which region it stays out of ----
const f32 = (min: number, max: number) => fc.double({ min, max, noNaN: true }).map(Math.fround);
/** Magnitudes in [lo, hi], either sign: away from 0 (relu/abs/sign kinks, divisors). */
const away = (lo: number, hi: number) => fc.tuple(f32(lo, hi), fc.boolean()).map(([v, neg]) => (neg ? -v : v));
/** n + f with f in [0.1, 0.9]: away from the integers where floor, ceil and casts jump. */
const offGrid = fc.tuple(fc.integer({ min: -3, max: 2 }), f32(0.1, 0.9)).map(([n, f]) => n + f);
/** k/8 + offset: operands drawn with offsets ±1/32 differ by ≥ 1/16 (no ties in max, min or
 *  comparisons) and never equal the thresholds 0.5 and 1 used below. */
const grid = (offset: number) => fc.integer({ min: -16, max: 16 }).map((k) => k / 8 + offset);
/** mod: dividends ±(n + f), f in [0.1, 0.4], and divisors ±1, ±1.5, ±3 keep every quotient
 *  ≥ 1/30 from an integer, where the remainder jumps (checked by hand for each divisor). */
const dividend = fc.tuple(fc.integer({ min: 0, max: 4 }), f32(0.1, 0.4), fc.boolean()).map(([n, f, neg]) => (neg ? -(n + f) : n + f));
const divisor = fc.constantFrom(1, -1, 1.5, -1.5, 3, -3);
const bool = fc.constantFrom(0, 1);

// ---- Dawn tolerances: the f32 gradient graph against float64 on the same f32 inputs ----
const ULP = 2 ** -23;
/** + − × ÷ (≤ 2.5 ULP each) over a few terms, and sums over the broadcast axes (≤ 8 terms of
 *  magnitude ≤ 4 here, so ≤ 8·4 ULP absolute). */
const ARITH: Tolerance = { atol: 32 * ULP, rtol: 8 * ULP };
/** A transcendental's own error (WGSL's accuracy table, the bounds test/ops/elementwise.test.ts
 *  derives) on top of the arithmetic. */
const plus = (t: Partial<Tolerance>): Tolerance => ({ atol: ARITH.atol + (t.atol ?? 0), rtol: ARITH.rtol + (t.rtol ?? 0) });

interface Case {
  readonly name: string;
  /** One generator per operand. */
  readonly values: readonly fc.Arbitrary<number>[];
  /** Operands that are not differentiated, by index, with their dtype. */
  readonly fixed?: Readonly<Record<number, DType>>;
  readonly f: (xs: readonly Tensor[], g: GraphBuilder) => Tensor;
  readonly tol: Tolerance;
  /** Also check the Hessian-vector product. */
  readonly hvp?: boolean;
}

const any = f32(-2, 2);
const CASES: Case[] = [
  { name: "neg", values: [any], f: ([x]) => x.neg(), tol: ARITH },
  { name: "abs", values: [away(0.1, 2)], f: ([x]) => x.abs(), tol: ARITH },
  // sign, floor, ceil have zero derivative: multiplied by x, only x's own term may survive.
  { name: "sign", values: [away(0.1, 2)], f: ([x]) => x.mul(x.sign()), tol: ARITH },
  { name: "floor", values: [offGrid], f: ([x]) => x.mul(x.floor()), tol: ARITH },
  { name: "ceil", values: [offGrid], f: ([x]) => x.mul(x.ceil()), tol: ARITH },
  // exp: 3 + 2|x| ULP.
  { name: "exp", values: [any], f: ([x]) => x.exp(), tol: plus({ rtol: 7 * ULP }), hvp: true },
  // The gradient is g/x; the forward log (2^-21 absolute) is not in it.
  { name: "log", values: [f32(0.5, 4)], f: ([x]) => x.log(), tol: ARITH },
  // sqrt = 1/inverseSqrt: 4.5 ULP; rsqrt: 2 ULP, cubed.
  { name: "sqrt", values: [f32(0.5, 4)], f: ([x]) => x.sqrt(), tol: plus({ rtol: 5 * ULP }) },
  { name: "rsqrt", values: [f32(0.5, 4)], f: ([x]) => x.rsqrt(), tol: plus({ rtol: 6 * ULP }) },
  { name: "recip", values: [away(0.5, 2)], f: ([x]) => x.recip(), tol: ARITH },
  // sin, cos: 2^-11 absolute inside [-π, π], times |g| ≤ 1.
  { name: "sin", values: [f32(-3, 3)], f: ([x]) => x.sin(), tol: plus({ atol: 2 ** -11 }) },
  { name: "cos", values: [f32(-3, 3)], f: ([x]) => x.cos(), tol: plus({ atol: 2 ** -11 }) },
  // tanh: ≤ 21.5 ULP absolute for |x| ≤ 3, doubled by 1 − tanh².
  { name: "tanh", values: [f32(-3, 3)], f: ([x]) => x.tanh(), tol: plus({ atol: 43 * ULP }), hvp: true },
  // sigmoid: 3 + 2|x| + 3 ULP relative for |x| ≤ 4, in σ and in 1 − σ.
  { name: "sigmoid", values: [f32(-4, 4)], f: ([x]) => x.sigmoid(), tol: plus({ atol: 28 * ULP }), hvp: true },
  { name: "relu", values: [away(0.1, 2)], f: ([x]) => x.relu(), tol: ARITH },
  // f32 → f32 passes g; the int round trip passes nothing (x off the integers).
  { name: "cast", values: [offGrid], f: ([x]) => x.cast("f32").add(x.mul(x.cast("i32").cast("f32"))), tol: ARITH },
  // iota and random pass no gradient; the key is a u32 computed from x (always 0), so random
  // lies on a path from x that grad must skip.
  {
    name: "sources (iota, random, const)",
    values: [any],
    tol: ARITH,
    f: ([x], g) => {
      const col = x.reshape([...x.shape, 1]);
      const key = x.sum().mul(0).cast("u32");
      return col
        .mul(g.iota([3], 0, "f32"))
        .add(col.mul(g.random([...x.shape, 3], 7, key)))
        .add(g.constant(0.5));
    },
  },
  { name: "add", values: [any, any], f: ([a, b]) => a.add(b), tol: ARITH },
  { name: "sub", values: [any, any], f: ([a, b]) => a.sub(b), tol: ARITH },
  { name: "mul", values: [any, any], f: ([a, b]) => a.mul(b), tol: ARITH, hvp: true },
  { name: "div", values: [any, away(0.5, 2)], f: ([a, b]) => a.div(b), tol: ARITH, hvp: true },
  { name: "mod", values: [dividend, divisor], f: ([a, b]) => a.mod(b), tol: ARITH },
  // pow = exp2(b·log2 a): ≈ 4e-6 relative for |b·log2 a| ≤ 2, and log's 2^-21 absolute times
  // |g·out| ≤ 4 in ∂b.
  { name: "pow", values: [f32(0.5, 2), f32(-2, 2)], f: ([a, b]) => a.pow(b), tol: plus({ atol: 2 ** -19, rtol: 4e-6 }) },
  // A negative base has a power only at integer exponents, held fixed: no derivative in b.
  {
    name: "pow (negative base, integer exponent held fixed)",
    values: [f32(-2, -0.5), fc.integer({ min: -3, max: 3 })],
    fixed: { 1: "f32" },
    f: ([a, b]) => a.pow(b),
    tol: plus({ rtol: 4e-6 }),
  },
  { name: "max", values: [grid(1 / 32), grid(-1 / 32)], f: ([a, b]) => a.maximum(b), tol: ARITH },
  { name: "min", values: [grid(1 / 32), grid(-1 / 32)], f: ([a, b]) => a.minimum(b), tol: ARITH },
  { name: "select", values: [bool, any, any], fixed: { 0: "bool" }, f: ([c, a, b]) => c.select(a, b), tol: ARITH },
  // Bool values carry no cotangent, so comparisons, and, or, not need no rule: the gradient is
  // that of the chosen branch (grid values: no ties, no operand at a threshold).
  {
    name: "comparisons, and, or, not",
    values: [grid(1 / 32), grid(-1 / 32)],
    tol: ARITH,
    f: ([a, b]) => {
      const m = a
        .lt(b)
        .and(b.ge(0.5).or(a.le(b).not()))
        .or(a.eq(b))
        .and(a.ne(b))
        .or(a.gt(1));
      return m
        .cast("f32")
        .mul(a)
        .add(m.select(b, a.mul(b)));
    },
  },
];

// ---- shapes ----
const DIMS = [1, 2, 3, 5];
const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** An output shape of rank 0–3 with odd and size-1 dims; each operand a right-aligned suffix of
 *  it (rank-extending broadcast) with some dims 1 (size-1 broadcast). */
function shapesArb(arity: number): fc.Arbitrary<number[][]> {
  const view = fc.record({
    drop: fc.constantFrom(0, 0, 1, 2),
    ones: fc.array(fc.constantFrom(false, false, true), { minLength: 3, maxLength: 3 }),
  });
  const out = fc.integer({ min: 0, max: 3 }).chain((rank) => fc.array(fc.constantFrom(...DIMS), { minLength: rank, maxLength: rank }));
  return fc
    .noBias(fc.tuple(out, fc.tuple(...Array.from({ length: arity }, () => view))))
    .map(([o, views]) => views.map(({ drop, ones }) => o.map((d, a) => (ones[a] ? 1 : d)).slice(Math.min(drop, o.length))));
}

function caseArb(c: Case) {
  return shapesArb(c.values.length).chain((shapes) =>
    fc.tuple(fc.constant(shapes), fc.tuple(...shapes.map((s, i) => fc.array(c.values[i], { minLength: prod(s), maxLength: prod(s) })))),
  );
}

const name = (i: number) => `x${i}`;

/** expectGradOk's spec: operands x0, x1, …; the fixed ones are not differentiated. */
function gradSpec(c: Case, shapes: readonly number[][], data: readonly number[][]) {
  const inputs: Record<string, HostTensor> = {};
  const fixed: Record<string, HostTensor & { dtype: DType }> = {};
  shapes.forEach((shape, i) => {
    const dtype = c.fixed?.[i];
    if (dtype) fixed[name(i)] = { shape, data: data[i], dtype };
    else inputs[name(i)] = { shape, data: data[i] };
  });
  return {
    inputs,
    fixed,
    f: (xs: Readonly<Record<string, Tensor>>, g: GraphBuilder) =>
      c.f(
        shapes.map((_, i) => xs[name(i)]),
        g,
      ),
  };
}

/** The gradient graph over declared (maybe symbolic) shapes; the output's cotangent is input u. */
function gradGraph(c: Case, declared: readonly Shape[]) {
  const g = new GraphBuilder();
  const xs = declared.map((s, i) => g.input(name(i), c.fixed?.[i] ?? "f32", s));
  const out = c.f(xs, g);
  const free = xs.filter((_, i) => !c.fixed?.[i]);
  const ds = grad(out, free, g.input("u", "f32", out.shape));
  return { graph: g.build(Object.fromEntries(ds.map((d, i) => [`d_${free[i].id}`, d]))), out: out.shape };
}

/** Dawn shapes: a symbolic batch summed away and kept, rank-extending and size-1 broadcasts. */
const GPU_SHAPES: Record<number, { declared: Shape[]; concrete: number[][]; env: DimEnv }[]> = {
  1: [{ declared: [["B", 3]], concrete: [[5, 3]], env: { B: 5 } }],
  2: [
    {
      declared: [
        ["B", 1, 3],
        [4, 1],
      ],
      concrete: [
        [2, 1, 3],
        [4, 1],
      ],
      env: { B: 2 },
    },
    { declared: [[], [7]], concrete: [[], [7]], env: {} },
  ],
  3: [{ declared: [["B", 1, 3], [4, 1], []], concrete: [[2, 1, 3], [4, 1], []], env: { B: 2 } }],
};

describe("vjp rules match float64 central differences", () => {
  test.each(CASES.map((c, i) => ({ ...c, seed: 100 + i })))("$name", (c) => {
    fc.assert(
      fc.property(caseArb(c), ([shapes, data]) => {
        expectGradOk(gradSpec(c, shapes, data), 1e-5, { eps: 1e-6, seed: c.seed });
      }),
      { seed: c.seed, numRuns: 20 },
    );
  });
});

describe("gradient graphs on Dawn match the float64 reference", () => {
  test.each(CASES.map((c, i) => ({ ...c, seed: 200 + i })))("$name", async (c) => {
    for (const { declared, concrete, env } of GPU_SHAPES[c.values.length]) {
      const { graph, out } = gradGraph(c, declared);
      const u = bindShape(out, env);
      const inputs: Record<string, HostTensor> = { u: { shape: u, data: floats(prod(u), c.seed) } };
      concrete.forEach(
        (shape, i) => (inputs[name(i)] = { shape, data: fc.sample(c.values[i], { seed: c.seed + i, numRuns: prod(shape) }) }),
      );
      await expectMatchesReference(graph, inputs, c.tol);
    }
  });
});

/** The largest error of hvp = grad(Σ ∇f(x)·v, x) against (∇f(x + εv) − ∇f(x − εv)) / 2ε,
 *  relative to the largest entry, on the reference interpreter. */
function hvpError(c: Case, shapes: readonly number[][], data: readonly number[][], seed: number, eps = 1e-6): number {
  const g = new GraphBuilder();
  const xs = shapes.map((s, i) => g.input(name(i), "f32", s));
  const out = c.f(xs, g);
  const total = (t: Tensor) => (t.rank ? t.sum() : t);
  const y = total(out.mul(g.constant(floats(prod(out.shape as number[]), seed), "f32", out.shape)));
  const gs = grad(y, xs);
  const vs = shapes.map((s, i) => floats(prod(s), seed + 1 + i));
  const gv = gs.map((d, i) => total(d.mul(g.constant(vs[i], "f32", shapes[i])))).reduce((a, b) => a.add(b));
  const hs = grad(gv, xs);
  const graph = g.build({ ...Object.fromEntries(gs.map((d, i) => [`g${i}`, d])), ...Object.fromEntries(hs.map((h, i) => [`h${i}`, h])) });
  const at = (sign: number) =>
    interpret(
      graph,
      Object.fromEntries(shapes.map((shape, i) => [name(i), { shape, data: data[i].map((x, j) => x + sign * eps * vs[i][j]) }])),
    );
  const [mid, hi, lo] = [at(0), at(1), at(-1)];
  let err = 0;
  let scale = 1e-3;
  shapes.forEach((_, i) =>
    mid[`h${i}`].data.forEach((h, j) => {
      const fd = (hi[`g${i}`].data[j] - lo[`g${i}`].data[j]) / (2 * eps);
      err = Math.max(err, Math.abs(h - fd));
      scale = Math.max(scale, Math.abs(h), Math.abs(fd));
    }),
  );
  return err / scale;
}

describe("second order: Hessian-vector products match central differences of the gradient", () => {
  test.each(CASES.filter((c) => c.hvp).map((c, i) => ({ ...c, seed: 300 + i })))("$name", (c) => {
    fc.assert(
      fc.property(caseArb(c), ([shapes, data]) => {
        expect(hvpError(c, shapes, data, c.seed)).toBeLessThan(1e-5);
      }),
      { seed: c.seed, numRuns: 12 },
    );
  });
});

describe("kinks and undefined regions", () => {
  test("max and min split the cotangent equally at a tie, so max(x, x) passes it whole", () => {
    const g = new GraphBuilder();
    const [a, b] = [g.input("a", "f32", [3]), g.input("b", "f32", [3])];
    const w = g.constant([1, 2, 3]);
    const [dMaxA, dMaxB] = grad(a.maximum(b).mul(w).sum(), [a, b]);
    const [dMinA, dMinB] = grad(a.minimum(b).mul(w).sum(), [a, b]);
    const [dSelf] = grad(a.maximum(a).mul(w).sum(), [a]);
    const r = interpret(g.build({ dMaxA, dMaxB, dMinA, dMinB, dSelf }), {
      a: { shape: [3], data: [1, 2, 3] },
      b: { shape: [3], data: [0, 2, 4] },
    });
    expect(Array.from(r.dMaxA.data)).toEqual([1, 1, 0]);
    expect(Array.from(r.dMaxB.data)).toEqual([0, 1, 3]);
    expect(Array.from(r.dMinA.data)).toEqual([0, 1, 3]);
    expect(Array.from(r.dMinB.data)).toEqual([1, 1, 0]);
    expect(Array.from(r.dSelf.data)).toEqual([1, 2, 3]);
  });

  test("pow passes no NaN to ∂b where the base is ≤ 0, in first and second order", async () => {
    const g = new GraphBuilder();
    const [a, b] = [g.input("a", "f32", [4]), g.input("b", "f32", [4])];
    const [da, db] = grad(a.pow(b).sum(), [a, b]);
    const [dda, ddb] = grad(db.add(da).sum(), [a, b]);
    const graph = g.build({ da, db, dda, ddb });
    const inputs = { a: { shape: [4], data: [-1.5, 0, 2, 0] }, b: { shape: [4], data: [2, 3, 0.5, 2] } };
    const r = interpret(graph, inputs);
    for (const t of Object.values(r)) expect(Array.from(t.data).every(Number.isFinite)).toBe(true);
    expect(Array.from(r.db.data)).toEqual([0, 0, Math.SQRT2 * Math.log(2), 0].map((v, i) => (i === 2 ? expect.closeTo(v, 12) : v)));
    await expectMatchesReference(graph, inputs, plus({ atol: 2 ** -19, rtol: 4e-6 }));
  });
});
