/** Gradients of conv2d and the pools, and the four gradient primitives: shape rules; vjps
 *  against float64 central differences (the gradient ops' own vjps included, which closes the
 *  family for higher order); the primitives and whole gradient graphs on Dawn against the
 *  reference, with a symbolic batch. conv2d and avg pooling are (bi)linear, smooth everywhere;
 *  max pooling has kinks where a window's maximum is tied, so its data avoids ties on purpose. */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { concat, GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import { grad } from "../../src/api/grad.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import { printGraph } from "../../src/ir/print.ts";
import type { Graph, OpAttrs, Shape } from "../../src/ir/types.ts";
import { floats, host } from "../helpers/data.ts";
import type { CompileOptions } from "../../compiler/pipeline.ts";
import { GEMM_TARGETS, runGpu, runsFor, useGpu } from "../helpers/gpu.ts";
import { expectGradOk } from "../helpers/gradcheck.ts";
import { expectWithinUlps } from "../helpers/ulps.ts";

useGpu();

type Pair = [number, number];
type Pads = [number, number, number, number];
type ConvAttrs = OpAttrs["conv2d"];
type PoolAttrs = OpAttrs["max_pool2d"];

const pair = (max: number) => fc.tuple(fc.integer({ min: 1, max }), fc.integer({ min: 1, max })) as fc.Arbitrary<Pair>;
const pads = (max: number) => fc.tuple(fc.nat(max), fc.nat(max), fc.nat(max), fc.nat(max)) as fc.Arbitrary<Pads>;
/** floor((len + before + after − d·(k−1) − 1)/s) + 1, written out independently of src/ops/conv.ts. */
const outLen = (len: number, k: number, before: number, after: number, s: number, d = 1) =>
  Math.floor((len + before + after - d * (k - 1) - 1) / s) + 1;
const prod = (s: readonly number[]) => s.reduce((a, d) => a * d, 1);

interface ConvCase extends ConvAttrs {
  x: number[];
  f: number[];
  y: number[];
  seed: number;
}
/** Random conv2d shapes (sizes from 1, odd ones) whose dilated window fits the padded input. */
const convCases = (big: boolean): fc.Arbitrary<ConvCase> =>
  fc
    .record({
      n: fc.integer({ min: 1, max: 2 }),
      h: fc.integer({ min: 1, max: 7 }),
      w: fc.integer({ min: 1, max: 7 }),
      c: fc.integer({ min: 1, max: 3 }),
      k: pair(3),
      co: big ? fc.oneof(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 63, max: 67 })) : fc.integer({ min: 1, max: 3 }),
      strides: pair(3),
      dilations: pair(2),
      padding: pads(2),
      seed: fc.nat(),
    })
    .filter(
      (t) =>
        t.h + t.padding[0] + t.padding[1] > t.dilations[0] * (t.k[0] - 1) &&
        t.w + t.padding[2] + t.padding[3] > t.dilations[1] * (t.k[1] - 1),
    )
    .map((t) => ({
      strides: t.strides,
      padding: t.padding,
      dilations: t.dilations,
      seed: t.seed,
      x: [t.n, t.h, t.w, t.c],
      f: [...t.k, t.c, t.co],
      y: [
        t.n,
        outLen(t.h, t.k[0], t.padding[0], t.padding[1], t.strides[0], t.dilations[0]),
        outLen(t.w, t.k[1], t.padding[2], t.padding[3], t.strides[1], t.dilations[1]),
        t.co,
      ],
    }));
const convOf = (c: ConvAttrs): ConvAttrs => ({ strides: c.strides, padding: c.padding, dilations: c.dilations });

interface PoolCase extends PoolAttrs {
  x: number[];
  y: number[];
  seed: number;
}
/** Random pools; padding is cut below the window, as the pools require. */
const poolCases: fc.Arbitrary<PoolCase> = fc
  .record({
    n: fc.integer({ min: 1, max: 2 }),
    h: fc.integer({ min: 1, max: 7 }),
    w: fc.integer({ min: 1, max: 7 }),
    c: fc.integer({ min: 1, max: 3 }),
    window: pair(3),
    strides: pair(3),
    pad: pads(2),
    seed: fc.nat(),
  })
  .map((t) => ({ ...t, padding: t.pad.map((p, i) => Math.min(p, t.window[i >> 1] - 1)) as Pads }))
  .filter((t) => t.h + t.padding[0] + t.padding[1] >= t.window[0] && t.w + t.padding[2] + t.padding[3] >= t.window[1])
  .map((t) => ({
    window: t.window,
    strides: t.strides,
    padding: t.padding,
    seed: t.seed,
    x: [t.n, t.h, t.w, t.c],
    y: [
      t.n,
      outLen(t.h, t.window[0], t.padding[0], t.padding[1], t.strides[0]),
      outLen(t.w, t.window[1], t.padding[2], t.padding[3], t.strides[1]),
      t.c,
    ],
  }));
const poolOf = (c: PoolAttrs): PoolAttrs => ({ window: c.window, strides: c.strides, padding: c.padding });

/** Distinct values on a grid of step 2/n in [-1, 1), in random order: no window holds a tie,
 *  and perturbations of size ε = 1e-6 cannot reorder two of them, so max is differentiable. */
function distinct(shape: readonly number[], seed: number): HostTensor {
  const r = floats(prod(shape), seed);
  const order = r.map((_, i) => i).sort((a, b) => r[a] - r[b]);
  const data = new Array<number>(r.length);
  order.forEach((i, rank) => (data[i] = ((rank + 0.5) / r.length) * 2 - 1));
  return { shape, data };
}

const withN = (s: readonly number[]): Shape => ["N", ...s.slice(1)];

describe("gradient ops: infer", () => {
  const conv = { strides: [2, 2], padding: [1, 1, 1, 1], dilations: [1, 1] } as const;
  test("output shapes come from the shape attribute: strides 2 map H = 5 and 6 to the same OH", () => {
    const b = new GraphBuilder();
    const g = b.input("g", "f32", ["N", 3, 3, 4]);
    const f = b.input("f", "f32", [3, 3, 2, 4]);
    expect(b.add("conv2d_grad_input", [g, f], { ...conv, shape: ["N", 5, 5, 2] }).shape).toEqual(["N", 5, 5, 2]);
    expect(b.add("conv2d_grad_input", [g, f], { ...conv, shape: ["N", 6, 6, 2] }).shape).toEqual(["N", 6, 6, 2]);
    const x = b.input("x", "f32", ["N", 6, 6, 2]);
    expect(b.add("conv2d_grad_filter", [x, g], { ...conv, shape: [3, 3, 2, 4] }).shape).toEqual([3, 3, 2, 4]);
    const p = b.input("p", "f32", ["N", 3, 3, 2]);
    expect(b.add("max_pool2d_grad", [x, p], { window: [2, 2], strides: [2, 2], padding: [0, 0, 0, 0] }).shape).toEqual(["N", 6, 6, 2]);
    expect(b.add("avg_pool2d_grad", [p], { window: [2, 2], strides: [2, 2], padding: [0, 0, 0, 0], shape: ["N", 7, 7, 2] }).shape).toEqual([
      "N",
      7,
      7,
      2,
    ]);
  });

  test("errors name the op, the problem and the shapes", () => {
    const b = new GraphBuilder();
    const g = b.input("g", "f32", ["N", 3, 3, 4]);
    const f = b.input("f", "f32", [3, 3, 2, 4]);
    const x = b.input("x", "f32", ["N", 6, 6, 2]);
    const gi = (shape: Shape, ins = [g, f]) => b.add("conv2d_grad_input", ins, { ...conv, shape });
    expect(() => gi(["N", 8, 8, 2])).toThrow(
      /^conv2d_grad_input %\d+ @ conv-grad\.test\.ts:\d+: the cotangent must have the shape of conv2d's output, \[N,4,4,4\] \(f32\[N,3,3,4\], f32\[3,3,2,4\]\)$/,
    );
    expect(() => gi(["M", 6, 6, 2])).toThrow(/the cotangent must have the shape of conv2d's output, \[M,3,3,4\]/);
    expect(() => gi(["N", 6, 6, 3])).toThrow(/input channels differ: shape \[N,6,6,3\] has 3, the filter expects 2/);
    expect(() => gi(["N", "H", 6, 2])).toThrow(/shape must be the NHWC input's shape, with static H, W and C, got \["N","H",6,2\]/);
    expect(() => gi(["N", 6, 6, 2], [g, b.input("fs", "f32", [3, 3, 2, "C"])])).toThrow(
      /the filter must be HWIO \(rank 4\) with a static shape, got \[3,3,2,C\]/,
    );
    expect(() => gi(["N", 6, 6, 2], [b.input("g3", "f32", [3, 3, 4]), f])).toThrow(/the cotangent must be NHWC \(rank 4\)/);
    const gf = (shape: Shape, ins = [x, g]) => b.add("conv2d_grad_filter", ins, { ...conv, shape });
    expect(() => gf([3, 3, 2, 5])).toThrow(
      /^conv2d_grad_filter %\d+ @ .*: the cotangent must have the shape of conv2d's output, \[N,3,3,5\] \(f32\[N,6,6,2\], f32\[N,3,3,4\]\)$/,
    );
    expect(() => gf([3, 3, 1, 4])).toThrow(/input channels differ: the input has 2, shape \[3,3,1,4\] expects 1/);
    expect(() => gf([3, 3, 2, "C"])).toThrow(/shape \(the filter's, HWIO\) must be 4 integers ≥ 1, got \[3,3,2,"C"\]/);
    expect(() => gf([3, 3, 2, 4], [x, b.input("gi", "i32", ["N", 3, 3, 4])])).toThrow(/dtypes differ/);
    const pool = { window: [2, 2], strides: [2, 2], padding: [0, 0, 0, 0] } as const;
    expect(() => b.add("max_pool2d_grad", [x, g], pool)).toThrow(
      /^max_pool2d_grad %\d+ @ .*: the cotangent must have the shape of max_pool2d's output, \[N,3,3,2\]/,
    );
    expect(() => b.add("max_pool2d_grad", [x, g], { ...pool, padding: [2, 0, 0, 0] })).toThrow(
      /padding \[2,0,0,0\] must be smaller than the window/,
    );
    expect(() => b.add("avg_pool2d_grad", [g], { ...pool, shape: ["N", 6, 6, 2] })).toThrow(
      /the cotangent must have the shape of avg_pool2d's output, \[N,3,3,2\] \(f32\[N,3,3,4\]\)/,
    );
    expect(() => b.add("avg_pool2d_grad", [g], { ...pool, shape: [6, 6, 4] })).toThrow(/shape must be the NHWC input's shape/);
  });
});

describe("vjps against float64 central differences", () => {
  test("conv2d: property over shapes, strides, padding and dilations", () => {
    fc.assert(
      fc.property(convCases(false), (c) => {
        expectGradOk({ inputs: { x: host(c.x, c.seed), f: host(c.f, c.seed + 1) }, f: (xs) => xs.x.conv2d(xs.f, c) }, 1e-5, {
          seed: c.seed,
        });
      }),
      { seed: 21, numRuns: 20 },
    );
  });

  test("conv2d: LeNet's 28×28×1 → 5×5×6 'same' ([2,2,2,2]) and 14×14×6 → 5×5×16 'valid'", () => {
    expectGradOk({
      inputs: { x: host([2, 28, 28, 1], 1), f: host([5, 5, 1, 6], 2) },
      f: (xs) => xs.x.conv2d(xs.f, { padding: [2, 2, 2, 2] }),
    });
    expectGradOk({ inputs: { x: host([2, 14, 14, 6], 3), f: host([5, 5, 6, 16], 4) }, f: (xs) => xs.x.conv2d(xs.f) });
  });

  test("conv2d_grad_input's vjp: [conv2d(h, f), conv2d_grad_filter(h, g)]", () => {
    fc.assert(
      fc.property(convCases(false), (c) => {
        const f = (xs: Readonly<Record<string, Tensor>>, b: GraphBuilder) =>
          b.add("conv2d_grad_input", [xs.g, xs.f], { ...convOf(c), shape: c.x });
        expectGradOk({ inputs: { g: host(c.y, c.seed), f: host(c.f, c.seed + 1) }, f }, 1e-5, { seed: c.seed });
      }),
      { seed: 22, numRuns: 15 },
    );
  });

  test("conv2d_grad_filter's vjp: [conv2d_grad_input(g, h), conv2d(x, h)]", () => {
    fc.assert(
      fc.property(convCases(false), (c) => {
        const f = (xs: Readonly<Record<string, Tensor>>, b: GraphBuilder) =>
          b.add("conv2d_grad_filter", [xs.x, xs.g], { ...convOf(c), shape: c.f });
        expectGradOk({ inputs: { x: host(c.x, c.seed), g: host(c.y, c.seed + 1) }, f }, 1e-5, { seed: c.seed });
      }),
      { seed: 23, numRuns: 15 },
    );
  });

  test("max_pool2d and avg_pool2d: property over windows, strides and padding (no ties)", () => {
    fc.assert(
      fc.property(poolCases, (c) => {
        const x = distinct(c.x, c.seed);
        expectGradOk({ inputs: { x }, f: (xs) => xs.x.maxPool2d(c.window, c.strides, c.padding) }, 1e-5, { seed: c.seed });
        expectGradOk({ inputs: { x }, f: (xs) => xs.x.avgPool2d(c.window, c.strides, c.padding) }, 1e-5, { seed: c.seed });
      }),
      { seed: 24, numRuns: 20 },
    );
  });

  test("max_pool2d_grad's vjp: none in x (flat between ties), the gather at each window's max in g", () => {
    fc.assert(
      fc.property(poolCases, (c) => {
        const f = (xs: Readonly<Record<string, Tensor>>, b: GraphBuilder) => b.add("max_pool2d_grad", [xs.x, xs.g], poolOf(c));
        expectGradOk({ inputs: { x: distinct(c.x, c.seed), g: host(c.y, c.seed + 1) }, f }, 1e-5, { seed: c.seed });
      }),
      { seed: 25, numRuns: 15 },
    );
  });

  test("avg_pool2d_grad's vjp: avg_pool2d (its transpose)", () => {
    fc.assert(
      fc.property(poolCases, (c) => {
        const f = (xs: Readonly<Record<string, Tensor>>, b: GraphBuilder) => b.add("avg_pool2d_grad", [xs.g], { ...poolOf(c), shape: c.x });
        expectGradOk({ inputs: { g: host(c.y, c.seed) }, f }, 1e-5, { seed: c.seed });
      }),
      { seed: 26, numRuns: 15 },
    );
  });
});

describe.each(GEMM_TARGETS)(
  "conv2d gradient primitives on Dawn against their float64 references (ulps of Σ|terms|, test/helpers/ulps.ts), $name",
  ({ target, share }) => {
    const opts: CompileOptions = { target };

    test("conv2d_grad_input, symbolic N: a sum of KH·KW·Cout products (zeros where no tap hits)", async () => {
      await fc.assert(
        fc.asyncProperty(convCases(true), async (c) => {
          const b = new GraphBuilder();
          const out = b.add("conv2d_grad_input", [b.input("g", "f32", withN(c.y)), b.input("f", "f32", c.f)], {
            ...convOf(c),
            shape: withN(c.x),
          });
          await expectWithinUlps(b.build(out), { g: host(c.y, c.seed), f: host(c.f, c.seed + 1) }, c.f[0] * c.f[1] * c.f[3] + 1, [], opts);
        }),
        { seed: 31, numRuns: runsFor(10, share) },
      );
    });

    test("conv2d_grad_filter, symbolic N: a sum of N·OH·OW products", async () => {
      await fc.assert(
        fc.asyncProperty(convCases(true), async (c) => {
          const b = new GraphBuilder();
          const out = b.add("conv2d_grad_filter", [b.input("x", "f32", withN(c.x)), b.input("g", "f32", withN(c.y))], {
            ...convOf(c),
            shape: c.f,
          });
          await expectWithinUlps(b.build(out), { x: host(c.x, c.seed), g: host(c.y, c.seed + 1) }, prod(c.y.slice(0, 3)) + 1, [], opts);
        }),
        { seed: 32, numRuns: runsFor(10, share) },
      );
    });
  },
);

describe("pool gradient primitives on Dawn against their float64 references", () => {
  test("pool grads, symbolic N: max sums ≤ KH·KW selected g, avg ≤ KH·KW quotients g/count", async () => {
    await fc.assert(
      fc.asyncProperty(poolCases, async (c) => {
        const b = new GraphBuilder();
        const [x, g] = [b.input("x", "f32", withN(c.x)), b.input("g", "f32", withN(c.y))];
        const max = b.add("max_pool2d_grad", [x, g], poolOf(c));
        const avg = b.add("avg_pool2d_grad", [g], { ...poolOf(c), shape: withN(c.x) });
        const inputs = { x: host(c.x, c.seed), g: host(c.y, c.seed + 1) };
        await expectWithinUlps(b.build({ max, avg }), inputs, c.window[0] * c.window[1] + 2, ["x"]);
      }),
      { seed: 33, numRuns: 10 },
    );
  });

  test("max_pool2d_grad: a tie gives the window's g to its first maximal position (TF, PyTorch)", async () => {
    const b = new GraphBuilder();
    const graph = b.build(
      b.add("max_pool2d_grad", [b.input("x", "f32", [1, 2, 3, 1]), b.input("g", "f32", [1, 1, 2, 1])], {
        window: [2, 2],
        strides: [1, 1],
        padding: [0, 0, 0, 0],
      }),
    );
    // Windows [[5,5],[1,5]] → g 10 to the first 5, x[0,0]; [[5,2],[5,0]] → g 100 to its first 5, x[0,1].
    const inputs = { x: { shape: [1, 2, 3, 1], data: [5, 5, 2, 1, 5, 0] }, g: { shape: [1, 1, 2, 1], data: [10, 100] } };
    const want = [10, 100, 0, 0, 0, 0];
    expect([...interpret(graph, inputs).out.data]).toEqual(want);
    expect([...(await runGpu(graph, inputs)).out.data]).toEqual(want);
  });

  test("max pooling over copies of one value: its true derivative, first and second order", () => {
    // Each 2×2 window holds v twice (a concat of v with itself): d/dv Σ u·pool = Σ u per window.
    const b = new GraphBuilder();
    const v = b.input("v", "f32", [1, 2, 1, 1]);
    const u = b.input("u", "f32", [1, 1, 1, 1]);
    const pooled = concat([v, v], 2).maxPool2d([2, 2]);
    const [dv] = grad(pooled.mul(u).sum(), [v]);
    const [hu] = grad(dv.mul(b.constant(1, "f32", [1, 2, 1, 1])).sum(), [u]);
    const out = interpret(b.build({ dv, hu }), { v: { shape: [1, 2, 1, 1], data: [3, 7] }, u: { shape: [1, 1, 1, 1], data: [2] } });
    expect([...out.dv.data]).toEqual([0, 2]);
    expect([...out.hu.data]).toEqual([1]);
  });
});

/** The gradients of Σ u ⊙ f(xs) over declared (maybe symbolic) shapes; u is an input. */
function gradGraph(shapes: Readonly<Record<string, Shape>>, f: (xs: Readonly<Record<string, Tensor>>) => Tensor, outputs = false): Graph {
  const b = new GraphBuilder();
  const xs = Object.fromEntries(Object.entries(shapes).map(([n, s]) => [n, b.input(n, "f32", s)]));
  const out = f(xs);
  const ds = grad(out, Object.values(xs), b.input("u", "f32", out.shape));
  return b.build({ ...(outputs ? { out } : {}), ...Object.fromEntries(Object.keys(xs).map((n, i) => [`d_${n}`, ds[i]])) });
}

describe.each(GEMM_TARGETS)("conv2d gradient graphs on Dawn against the reference, symbolic N, $name", ({ target }) => {
  const opts: CompileOptions = { target };

  test("conv2d: strided, dilated, unevenly padded; ulps: the longer of the two gradient sums", async () => {
    const c: ConvAttrs = { strides: [2, 3], padding: [1, 2, 0, 2], dilations: [2, 1] };
    const graph = gradGraph({ x: ["N", 9, 10, 3], f: [3, 2, 3, 5] }, (xs) => xs.x.conv2d(xs.f, c));
    // OH = (9 + 3 − 2·2 − 1)/2 + 1 = 4, OW = (10 + 2 − 1 − 1)/3 + 1 = 4; ∂x sums KH·KW·Cout = 30
    // products, ∂f N·OH·OW = 48.
    const inputs = { x: host([3, 9, 10, 3], 1), f: host([3, 2, 3, 5], 2), u: host([3, 4, 4, 5], 3) };
    await expectWithinUlps(graph, inputs, 48 + 1, [], opts);
  });

  test("LeNet-like: conv, relu, maxpool, conv, relu, maxpool, reshape, matmul, forward and backward", async () => {
    const graph = gradGraph(
      { x: ["N", 28, 28, 1], f1: [5, 5, 1, 6], f2: [5, 5, 6, 16], w: [400, 10] },
      ({ x, f1, f2, w }) => {
        const h1 = x
          .conv2d(f1, { padding: [2, 2, 2, 2] })
          .relu()
          .maxPool2d([2, 2]);
        const h2 = h1.conv2d(f2).relu().maxPool2d([2, 2]);
        return h2.reshape(["N", 400]).matmul(w);
      },
      true,
    );
    const inputs = {
      x: host([3, 28, 28, 1], 1),
      f1: host([5, 5, 1, 6], 2),
      f2: host([5, 5, 6, 16], 3),
      w: host([400, 10], 4),
      u: host([3, 10], 5),
    };
    await expectNearScale(graph, inputs, opts);
  });

  test("second order: the gradient of ‖∂x‖² + ‖∂f‖² through conv2d, max_pool2d and avg_pool2d", async () => {
    const b = new GraphBuilder();
    const x = b.input("x", "f32", ["N", 8, 8, 2]);
    const f = b.input("f", "f32", [3, 3, 2, 4]);
    const y = x
      .conv2d(f, { strides: [2, 2], padding: [1, 1, 1, 1] })
      .maxPool2d([2, 2], [1, 1])
      .avgPool2d([2, 2], [1, 1], [1, 0, 1, 0]);
    const [dx, df] = grad(y, [x, f], b.input("u", "f32", y.shape));
    const [ddx, ddf] = grad(dx.mul(dx).sum().add(df.mul(df).sum()), [x, f]);
    await expectNearScale(
      b.build({ ddx, ddf }),
      { x: distinct([2, 8, 8, 2], 6), f: host([3, 3, 2, 4], 7), u: host([2, 3, 3, 4], 8) },
      opts,
    );
  });
});

describe("pool gradient graph on Dawn against the reference, symbolic N", () => {
  test("pools: overlapping padded windows", async () => {
    const graph = gradGraph({ x: ["N", 7, 6, 2] }, (xs) =>
      xs.x.maxPool2d([3, 2], [2, 1], [1, 1, 0, 1]).add(xs.x.avgPool2d([3, 2], [2, 1], [1, 1, 0, 1])),
    );
    await expectWithinUlps(graph, { x: distinct([2, 7, 6, 2], 4), u: host([2, 4, 6, 2], 5) }, 2 * 3 * 2 + 2, ["x"]);
  });
});

/** Dawn against the reference for graphs that select (ReLU, max pooling), where Σ|terms| is not
 *  a run on |inputs|: within 1e-4 of each output's largest magnitude. Rounding compounds through
 *  the layers and sums of up to a few thousand terms, yet stays near √K·u relative in f32, far
 *  inside that; a wrong index or a misrouted max moves whole terms. (The data has no ReLU input
 *  or pool tie within f32 rounding of flipping: a flip would show as a large mismatch.) */
async function expectNearScale(graph: Graph, inputs: Readonly<Record<string, HostTensor>>, opts?: CompileOptions): Promise<void> {
  const ref = interpret(graph, inputs);
  const gpu = await runGpu(graph, inputs, opts);
  for (const [name, r] of Object.entries(ref)) {
    const tol = 1e-4 * Math.max(...r.data.map(Math.abs));
    const bad = r.data.findIndex((v, i) => !(Math.abs(gpu[name].data[i] - v) <= tol));
    if (bad >= 0)
      throw new Error(`${name}[${bad}]: gpu ${gpu[name].data[bad]}, reference ${r.data[bad]}, tolerance ${tol}\n${printGraph(graph)}`);
  }
}
