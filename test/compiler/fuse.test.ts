/** Fusion (compiler/fuse.ts): which values get a buffer and a kernel, and that fusing never
 *  changes results (random graphs on Dawn, fused and unfused, against the float64 reference). */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import { softmax } from "../../src/api/composites.ts";
import type { Graph } from "../../src/ir/types.ts";
import { expectMatchesReference, useGpu } from "../helpers/gpu.ts";
import { buildRecipe, recipeArb } from "../helpers/random-graph.ts";

useGpu();

const heads = (g: Graph, fuse = true) => compile(g, { fuse }).kernels.map((k) => k.wgsl.slice(3, k.wgsl.indexOf(" ->")));

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

  test("prologues fuse into reductions: softmax over a row is its two reductions and the division", () => {
    const g = graph((x) => ({ y: x.sub(1).exp().sum(1) }));
    expect(heads(g)).toEqual(["k0 = reduce_sum[sub, exp]"]);
    // max, Σ exp(x − max) and the division: x − max is read by exp only, inside the sum.
    expect(heads(graph((x) => ({ p: softmax(x) })))).toEqual(["k0 = reduce_max", "k1 = reduce_sum[stop_gradient, sub, exp]", "k2 = fused[stop_gradient, sub, exp, div]"]);
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
        await expectMatchesReference(g, { x: { shape: [batch, ...r.shape], data: vals(batch * n) }, y: { shape: r.shape, data: vals(n) } }, { atol: 1e-5, rtol: 1e-5 }, { fuse });
      }),
      { seed: 11, numRuns: 30 },
    );
  });
});
