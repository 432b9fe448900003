/** Fusion (compiler/fuse.ts): which values get a buffer and a kernel, and that fusing never
 *  changes results (random graphs, row and reduction epilogues on Dawn, fused and unfused,
 *  against the float64 reference). */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { CPU_TARGET, GPU_TARGET } from "../../compiler/target.ts";
import { GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import { logSoftmax, softmax } from "../../src/api/composites.ts";
import type { Graph } from "../../src/ir/types.ts";
import { expectMatchesReference, useGpu } from "../helpers/gpu.ts";
import { buildRecipe, recipeArb } from "../helpers/random-graph.ts";

useGpu();

const heads = (g: Graph, fuse = true, target = GPU_TARGET) =>
  compile(g, { fuse, target }).kernels.map((k) => k.wgsl.slice(3, k.wgsl.indexOf(" ->")));

function graph(f: (x: Tensor, g: GraphBuilder) => Record<string, Tensor>): Graph {
  const g = new GraphBuilder();
  return g.build(f(g.input("x", "f32", ["B", 10]), g));
}

describe("fusion decisions", () => {
  test("an elementwise chain is one kernel; fuse: false keeps one kernel per op", () => {
    const g = graph((x) => ({ y: x.mul(2).add(1).tanh().sigmoid() }));
    expect(heads(g)).toEqual(["k0 = fused[mul, add, tanh, sigmoid]"]);
    expect(heads(g, false)).toEqual(["k0 = mul", "k1 = add", "k2 = tanh", "k3 = sigmoid"]);
  });

  test("a costly value used twice, or an output, keeps its buffer; a cheap one is recomputed", () => {
    const costly = graph((x) => {
      const e = x.exp().tanh().sigmoid(); // 4 + 4 + 4 > 8
      return { y: e.add(1).mul(e.sub(1)), z: x.neg().abs() };
    });
    expect(heads(costly)).toEqual(["k0 = fused[exp, tanh, sigmoid]", "k1 = fused[add, sub, mul]", "k2 = fused[neg, abs]"]);
    const cheap = graph((x) => {
      const e = x.exp(); // 4: recomputed in both kernels rather than stored and loaded
      return { y: e.add(1), z: e.sub(1) };
    });
    expect(heads(cheap)).toEqual(["k0 = fused[exp, add]", "k1 = fused[exp, sub]"]);
    const out = graph((x) => {
      const t = x.tanh();
      return { t, y: t.mul(3) };
    });
    expect(heads(out)).toEqual(["k0 = tanh", "k1 = mul"]);
  });

  test("prologues and row epilogues fuse into reductions: softmax and log-softmax in two kernels", () => {
    const g = graph((x) => ({ y: x.sub(1).exp().sum(1) }));
    expect(heads(g)).toEqual(["k0 = reduce_sum[sub, exp]"]);
    // Each thread reduces its row, then writes the row: max then x − max; Σ exp then the division.
    expect(heads(graph((x) => ({ p: softmax(x) })))).toEqual([
      "k0 = fused[reduce_max, stop_gradient, sub]",
      "k1 = fused[exp, reduce_sum, div]",
    ]);
    expect(heads(graph((x) => ({ l: logSoftmax(x) })))).toEqual([
      "k0 = fused[reduce_max, stop_gradient, sub]",
      "k1 = fused[exp, reduce_sum, log, sub]",
    ]);
    // Centring by the row mean: one kernel.
    expect(heads(graph((x) => ({ c: x.sub(x.mean(1, true)) })))).toEqual(["k0 = fused[reduce_mean, sub]"]);
    // Long rows are reduced by a workgroup tree, which holds no row per thread: no epilogue.
    const long = new GraphBuilder();
    const v = long.input("v", "f32", [4, 1000]);
    expect(heads(long.build({ p: softmax(v) }))).toHaveLength(3);
  });

  test("a reduction takes the chain of its own shape that ends in a buffer: a bias update is one kernel", () => {
    const step = (b: GraphBuilder, x: Tensor) => b.input("bias", "f32", [10]).sub(x.sum([0]).mul(0.1));
    // On the cpu target every reduction loops; on the gpu target a sum over a symbolic batch is
    // a workgroup tree, which holds no output per thread: no epilogue.
    expect(
      heads(
        graph((x, b) => ({ b_next: step(b, x) })),
        true,
        CPU_TARGET,
      ),
    ).toEqual(["k0 = fused[reduce_sum, mul, sub]"]);
    expect(heads(graph((x, b) => ({ b_next: step(b, x) })))).toEqual(["k0 = reduce_sum", "k1 = fused[mul, sub]"]);
    const short = new GraphBuilder();
    const v = short.input("v", "f32", [64, 10]);
    expect(heads(short.build({ y: short.input("bias", "f32", [10]).sub(v.sum([0]).mul(0.1)) }))).toEqual([
      "k0 = fused[reduce_sum, mul, sub]",
    ]);
    // The sum read twice, or itself an output, keeps its buffer.
    expect(
      heads(
        graph((x) => ({ y: x.sum([0]).mul(x.sum([0]).add(1)) })),
        true,
        CPU_TARGET,
      ),
    ).toHaveLength(2);
    const both = graph((x, b) => {
      const s = x.sum([0]);
      return { s, b_next: b.input("bias", "f32", [10]).sub(s.mul(0.1)) };
    });
    expect(heads(both, true, CPU_TARGET)).toEqual(["k0 = reduce_sum", "k1 = fused[mul, sub]"]);
  });

  test("reduction epilogues on Dawn: bias updates over a symbolic batch, fused and not, against float64", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 300 }), fc.boolean(), async (rows, fuse) => {
        const graph = (() => {
          const g = new GraphBuilder();
          const x = g.input("x", "f32", ["B", 10]);
          const bias = g.input("bias", "f32", [10]);
          return g.build({ b_next: bias.sub(x.sum([0]).mul(0.1)), m: x.max([0]).relu().neg() });
        })();
        const data = {
          x: { shape: [rows, 10], data: Array.from({ length: rows * 10 }, (_, i) => Math.fround(Math.sin(i * 0.37) * 6)) },
          bias: { shape: [10], data: Array.from({ length: 10 }, (_, i) => i / 3) },
        };
        await expectMatchesReference(graph, data, { atol: 1e-5, rtol: 1e-5 }, { fuse, target: CPU_TARGET });
        await expectMatchesReference(graph, data, { atol: 1e-5, rtol: 1e-5 }, { fuse, target: GPU_TARGET });
      }),
      { seed: 13, numRuns: 12 },
    );
  });

  test("row epilogues on Dawn: softmax, log-softmax and centring against the float64 reference", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 70 }), fc.integer({ min: 1, max: 40 }), fc.boolean(), async (rows, cols, fuse) => {
        const g = new GraphBuilder();
        const x = g.input("x", "f32", ["B", cols]);
        const graph = g.build({ p: softmax(x), c: x.sub(x.mean(1, true)) });
        const lg = new GraphBuilder();
        const xl = lg.input("x", "f32", ["B", cols]);
        const lgraph = lg.build({ l: logSoftmax(xl) });
        const data = {
          x: { shape: [rows, cols], data: Array.from({ length: rows * cols }, (_, i) => Math.fround(Math.sin(i * 0.37) * 6)) },
        };
        // exp, log and ÷ are within a few ulps; a row sum of ≤ 40 terms adds ≤ 40 ulps.
        await expectMatchesReference(graph, data, { atol: 1e-6, rtol: 2e-5 }, { fuse });
        await expectMatchesReference(lgraph, data, { atol: 2e-6, rtol: 2e-5 }, { fuse });
      }),
      { seed: 12, numRuns: 20 },
    );
  });

  test("no fusion into a GEMM's operands (each element is read many times) or across a broadcast", () => {
    const mm = new GraphBuilder();
    const a = mm.input("a", "f32", ["B", 8]);
    const w = mm.input("w", "f32", [8, 4]);
    expect(heads(mm.build({ y: a.relu().matmul(w) }))).toEqual(["k0 = relu", "k1 = matmul"]);
    // [B,1] → [B,10]: a costly value is not recomputed 10 times; a cheap one is.
    const costly = graph((x, b) => ({ y: b.input("s", "f32", ["B", 1]).exp().tanh().log().mul(x) }));
    expect(heads(costly)).toEqual(["k0 = fused[exp, tanh, log]", "k1 = mul"]);
    const cheap = graph((x, b) => ({ y: b.input("s", "f32", ["B", 1]).exp().mul(x) }));
    expect(heads(cheap)).toEqual(["k0 = fused[exp, mul]"]);
  });
});

describe("fusion never changes results", () => {
  test("random elementwise graphs on Dawn: fused and unfused both match the float64 reference", async () => {
    await fc.assert(
      fc.asyncProperty(recipeArb, fc.integer({ min: 1, max: 9 }), fc.boolean(), async (r, batch, fuse) => {
        const g = buildRecipe(r);
        const n = r.shape.reduce((a, d) => a * d, 1);
        const vals = (k: number) => Array.from({ length: k }, (_, i) => Math.fround(Math.cos(i * 1.3 + k)));
        // Each op rounds once in f32 either way; a fused chain may contract a·b + c into one
        // fma, which only rounds less. Depth ≤ 12: a few ulps per step, relative.
        await expectMatchesReference(
          g,
          { x: { shape: [batch, ...r.shape], data: vals(batch * n) }, y: { shape: r.shape, data: vals(n) } },
          { atol: 1e-5, rtol: 1e-5 },
          { fuse },
        );
      }),
      { seed: 11, numRuns: 30 },
    );
  });
});
