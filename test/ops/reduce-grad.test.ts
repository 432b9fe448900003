import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import {
  leakyRelu,
  logSoftmax,
  logsumexp,
  maxout,
  mse,
  oneHot,
  sigmoidBinaryCrossEntropy,
  softmax,
  softmaxCrossEntropy,
  sparseSoftmaxCrossEntropy,
} from "../../src/api/composites.ts";
import { grad } from "../../src/api/grad.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import { printGraph } from "../../src/ir/print.ts";
import type { Dim } from "../../src/ir/types.ts";
import { floats, host } from "../helpers/data.ts";
import { buildGradGraph, expectGradOk, type GradSpec } from "../helpers/gradcheck.ts";
import { expectMatchesReference, useGpu, type Tolerance } from "../helpers/gpu.ts";

useGpu();

const RUNS = { numRuns: 20 };
const size = (s: readonly number[]) => s.reduce((a, d) => a * d, 1);
const shapeArb = fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 3 });
const scaled = (t: HostTensor, k: number): HostTensor => ({ shape: t.shape, data: Array.from(t.data, (v) => v * k) });

/** Distinct values a shuffled grid apart (≥ 1/n ≫ eps): no ties, and the central difference
 *  never moves which element is the max or min. */
function distinct(shape: readonly number[], seed: number): HostTensor {
  const n = size(shape);
  const order = floats(n, seed)
    .map((v, i) => [v, i])
    .sort((a, b) => a[0] - b[0])
    .map(([, i]) => i);
  return { shape, data: order.map((k) => (k - n / 2) / n) };
}

/** Gradients at the data, by name, from the float64 interpreter. */
function grads(
  build: (g: GraphBuilder) => { y: Tensor; wrt: Record<string, Tensor> },
  inputs: Readonly<Record<string, HostTensor>>,
): Record<string, number[]> {
  const g = new GraphBuilder();
  const { y, wrt } = build(g);
  const gs = grad(y, Object.values(wrt));
  const out = interpret(g.build(Object.fromEntries(Object.keys(wrt).map((n, k) => [n, gs[k]]))), inputs);
  return Object.fromEntries(Object.entries(out).map(([n, t]) => [n, Array.from(t.data)]));
}

describe("reduction vjp matches central differences (float64)", () => {
  // Any subset of axes (none: the identity; all: a scalar), keepdims or not, and the first axis
  // declared symbolic or not: mean then counts its elements with a graph value.
  const arb = shapeArb.chain((ds) =>
    fc.record({
      ds: fc.constant(ds),
      axes: fc.shuffledSubarray(ds.map((_, a) => a)),
      keepdims: fc.boolean(),
      sym: fc.boolean(),
      seed: fc.nat(),
    }),
  );
  const declared = (ds: readonly number[], sym: boolean): Dim[] => (sym ? ["B", ...ds.slice(1)] : [...ds]);

  test.each(["sum", "mean"] as const)("%s: smooth, any values", (op) => {
    fc.assert(
      fc.property(arb, ({ ds, axes, keepdims, sym, seed }) => {
        expectGradOk({ inputs: { x: host(ds, seed) }, shapes: { x: declared(ds, sym) }, f: ({ x }) => x[op](axes, keepdims) });
      }),
      { seed: op === "sum" ? 1 : 2, ...RUNS },
    );
  });

  test.each(["max", "min"] as const)("%s: distinct values, no ties", (op) => {
    fc.assert(
      fc.property(arb, ({ ds, axes, keepdims, sym, seed }) => {
        expectGradOk({ inputs: { x: distinct(ds, seed) }, shapes: { x: declared(ds, sym) }, f: ({ x }) => x[op](axes, keepdims) });
      }),
      { seed: op === "max" ? 3 : 4, ...RUNS },
    );
  });

  test("max and min: tied positions share the cotangent equally, as in JAX", () => {
    const x = { shape: [3, 4], data: [1, 3, 3, 2, 0, 0, 0, 0, -1, 5, -2, -2] };
    const of = (op: "max" | "min") =>
      grads(
        (g) => {
          const xt = g.input("x", "f32", [3, 4]);
          return { y: xt[op](1).sum(), wrt: { dx: xt } };
        },
        { x },
      ).dx;
    expect(of("max")).toEqual([0, 0.5, 0.5, 0, 0.25, 0.25, 0.25, 0.25, 0, 1, 0, 0]);
    expect(of("min")).toEqual([1, 0, 0, 0, 0.25, 0.25, 0.25, 0.25, 0, 0, 0.5, 0.5]);
  });

  test("argmax carries no gradient: through it the gradient is zero, not an error", () => {
    const x = { shape: [2, 3], data: [0.5, -1, 2, 3, 0.25, -4] };
    const of = (f: (x: Tensor) => Tensor) =>
      grads(
        (g) => {
          const xt = g.input("x", "f32", [2, 3]);
          return { y: f(xt), wrt: { dx: xt } };
        },
        { x },
      ).dx;
    expect(of((x) => x.argmax(1).cast("f32").sum())).toEqual([0, 0, 0, 0, 0, 0]);
    // picked[r, k] = x[r, best[k]], best = [2, 0]: the table gets the gradient, the indices none.
    expect(of((x) => x.gather(x.argmax(1), 1).sum())).toEqual([1, 0, 1, 1, 0, 1]);
  });
});

describe("reduction vjp on Dawn, with a symbolic batch", () => {
  // Sums of at most 7 terms of |u| ≤ 1 and one division: a few f32 roundings. max and min read
  // the GPU's own result back, so their masks are exact.
  const TOL: Tolerance = { atol: 1e-6, rtol: 1e-5 };
  test.each([
    ["sum over [0, 2]", (x: Tensor) => x.sum([0, 2])],
    ["mean over [0, 2], keepdims", (x: Tensor) => x.mean([0, 2], true)],
    ["max over 1", (x: Tensor) => x.max(1)],
    ["min over [1, 2]", (x: Tensor) => x.min([1, 2])],
  ])("%s", async (_name, f) => {
    const { graph } = buildGradGraph({ inputs: { x: distinct([3, 7, 5], 5) }, shapes: { x: ["B", 7, 5] }, f: ({ x }) => f(x) });
    await expectMatchesReference(graph, { x: distinct([3, 7, 5], 5) }, TOL);
  });
});

describe("composites differentiate through their primitives", () => {
  const arb = shapeArb.chain((ds) => fc.record({ ds: fc.constant(ds), axis: fc.nat(ds.length - 1), seed: fc.nat() }));

  test.each([
    ["softmax", (x: Tensor, a: number) => softmax(x, a)],
    ["logSoftmax", (x: Tensor, a: number) => logSoftmax(x, a)],
    ["logsumexp", (x: Tensor, a: number) => logsumexp(x, a)],
  ])("%s: any values (the max is shifted out), ×3 for a wider range", (_name, f) => {
    fc.assert(
      fc.property(arb, ({ ds, axis, seed }) => {
        expectGradOk({ inputs: { x: scaled(host(ds, seed), 3) }, f: ({ x }) => f(x, axis) });
      }),
      { seed: 5, ...RUNS },
    );
  });

  test("the max they subtract is a stopped gradient: no max backward (eq mask) in the graph", () => {
    for (const f of [softmax, logSoftmax, logsumexp]) {
      const { graph } = buildGradGraph({ inputs: { x: host([2, 5], 1) }, f: ({ x }) => f(x) });
      expect(printGraph(graph)).not.toMatch(/= eq /);
    }
  });

  test("logsumexp over several axes, keepdims", () => {
    expectGradOk({ inputs: { x: scaled(host([3, 4, 2], 6), 3) }, f: ({ x }) => logsumexp(x, [0, 2], true) });
  });

  // leakyRelu has a kink at 0: values are pushed at least 0.05 away from it.
  test("leakyRelu: away from the kink at 0", () => {
    fc.assert(
      fc.property(shapeArb, fc.nat(), fc.double({ min: 0.01, max: 0.5, noNaN: true }), (ds, seed, alpha) => {
        const x = { shape: ds, data: Array.from(host(ds, seed).data, (v) => v + Math.sign(v || 1) * 0.05) };
        expectGradOk({ inputs: { x }, f: ({ x }) => leakyRelu(x, alpha) });
      }),
      { seed: 6, ...RUNS },
    );
  });

  test("maxout: distinct values, no ties within a group", () => {
    fc.assert(
      fc.property(shapeArb, fc.integer({ min: 1, max: 3 }), fc.nat(), (ds, pieces, seed) => {
        const shape = [...ds.slice(0, -1), ds[ds.length - 1] * pieces];
        expectGradOk({ inputs: { x: distinct(shape, seed) }, f: ({ x }) => maxout(x, pieces) });
      }),
      { seed: 7, ...RUNS },
    );
  });

  test("oneHot: a constant of the indices, multiplying x", () => {
    const i = { dtype: "i32" as const, shape: [2, 3], data: [0, 3, 3, 1, -1, 2] };
    expectGradOk({ inputs: { x: host([2, 3, 4], 8) }, fixed: { i }, f: ({ x, i }) => x.mul(oneHot(i, 4)) });
  });
});

describe("losses: gradients at moderate and large logits", () => {
  const probs = (shape: readonly number[], seed: number): HostTensor => {
    const e = Array.from(host(shape, seed).data, (v) => Math.exp(2 * v));
    const c = shape[shape.length - 1];
    return { shape, data: e.map((v, k) => v / e.slice(k - (k % c), k - (k % c) + c).reduce((a, b) => a + b, 0)) };
  };
  /** Logits of ±50 plus a little: exp of them overflows f32 unless the loss is stable. */
  const large = (shape: readonly number[], seed: number): HostTensor => ({
    shape,
    data: Array.from(host(shape, seed).data, (v, k) => (k % 3 === 0 ? -50 : 50) + v),
  });
  const labels01 = (shape: readonly number[], seed: number): HostTensor => ({
    shape,
    data: Array.from(host(shape, seed).data, (v) => (v + 1) / 2),
  });
  const classes = { dtype: "i32" as const, shape: [4], data: [0, 4, 2, 4] };

  const cases = (logits: (shape: readonly number[], seed: number) => HostTensor): [string, GradSpec][] => [
    // The labels are distributions: the logits' gradient (p − y) holds on that contract, so
    // the labels stay fixed there; the labels' own gradient (−log p) holds for any labels.
    [
      "softmaxCrossEntropy",
      { inputs: { z: logits([4, 5], 1) }, fixed: { y: { dtype: "f32", ...probs([4, 5], 2) } }, f: ({ z, y }) => softmaxCrossEntropy(z, y) },
    ],
    [
      "softmaxCrossEntropy wrt the labels",
      { inputs: { y: probs([4, 5], 2) }, fixed: { z: { dtype: "f32", ...logits([4, 5], 1) } }, f: ({ z, y }) => softmaxCrossEntropy(z, y) },
    ],
    [
      "softmaxCrossEntropy on axis 0",
      {
        inputs: { z: logits([5, 3, 2], 3) },
        fixed: { y: { dtype: "f32", ...probs([3, 2, 5], 4) } },
        f: ({ z, y }) => softmaxCrossEntropy(z, y.permute([2, 0, 1]), 0),
      },
    ],
    [
      "sparseSoftmaxCrossEntropy",
      { inputs: { z: logits([4, 5], 5) }, fixed: { c: classes }, f: ({ z, c }) => sparseSoftmaxCrossEntropy(z, c) },
    ],
    [
      "sparseSoftmaxCrossEntropy, indices −1 and 5 masked",
      {
        inputs: { z: logits([4, 5], 5) },
        fixed: { c: { ...classes, data: [0, -1, 2, 5] } },
        f: ({ z, c }) => sparseSoftmaxCrossEntropy(z, c),
      },
    ],
    [
      "sigmoidBinaryCrossEntropy",
      { inputs: { z: logits([3, 4], 6), y: labels01([3, 4], 7) }, f: ({ z, y }) => sigmoidBinaryCrossEntropy(z, y) },
    ],
    ["mse", { inputs: { p: logits([3, 4], 8), t: logits([3, 4], 9) }, f: ({ p, t }) => mse(p, t) }],
  ];

  test.each([...cases((s, seed) => scaled(host(s, seed), 4)), ...cases(large)])("%s", (_name, spec) => {
    expectGradOk(spec);
    const out = interpret(buildGradGraph(spec).graph, { ...spec.inputs, ...spec.fixed });
    for (const [name, t] of Object.entries(out)) expect(Array.from(t.data).every(Number.isFinite), name).toBe(true);
  });

  test("sigmoidBinaryCrossEntropy at z = 0 exactly: (sigmoid(0) − y) / n, the kinks cancel", () => {
    const { dz } = grads(
      (g) => {
        const z = g.input("z", "f32", [4]);
        return { y: sigmoidBinaryCrossEntropy(z, g.constant([0, 0.25, 1, 0.5], "f32", [4])), wrt: { dz: z } };
      },
      { z: { shape: [4], data: [0, 0, 0, 0] } },
    );
    expect(dz).toEqual([0.125, 0.0625, -0.125, 0]);
  });

  test("shape mismatches are errors that show the shapes", () => {
    const g = new GraphBuilder();
    const z = g.input("z", "f32", ["B", 5]);
    expect(() => mse(z, g.input("t", "f32", ["B", 1]))).toThrow("mse: shapes differ (f32[B,5] vs f32[B,1])");
    expect(() => sparseSoftmaxCrossEntropy(z, g.input("c", "i32", [5]))).toThrow(
      "sparseSoftmaxCrossEntropy: needs i32 labels of the logits' shape without the last axis (logits f32[B,5], labels i32[5])",
    );
  });

  test("on Dawn: both cross-entropies over a symbolic batch at ±50", async () => {
    // exp, log and the divisions of softmax err by a few ulps each on the GPU; the largest terms
    // are O(1) and the gradients are sums of a few of them.
    const tol: Tolerance = { atol: 1e-6, rtol: 1e-5 };
    const spec: GradSpec = {
      inputs: { z: large([4, 5], 10), s: large([4, 5], 11) },
      fixed: { c: classes, y: { dtype: "f32", ...labels01([4, 5], 12) } },
      shapes: { z: ["B", 5], s: ["B", 5], c: ["B"], y: ["B", 5] },
      f: ({ z, s, c, y }) => sparseSoftmaxCrossEntropy(z, c).add(sigmoidBinaryCrossEntropy(s, y)),
    };
    await expectMatchesReference(buildGradGraph(spec).graph, { ...spec.inputs, ...spec.fixed }, tol);
  });
});
