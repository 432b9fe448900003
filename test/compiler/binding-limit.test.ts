/** The storage-buffer limit shapes the fusion plan instead of failing it: a kernel that would
 *  bind more buffers than the device allows has values materialized (a GEMM's epilogue given
 *  back first, then the widest fused value) until every kernel fits — at WebGPU's default 8
 *  and at 4. The GELU backward (a known failure elsewhere at 11 bindings) and a wide fused sum
 *  are compiled at both limits and checked on Dawn against the float64 reference. */
import { describe, expect, test } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import { grad } from "../../src/api/grad.ts";
import type { Graph } from "../../src/ir/types.ts";
import { expectMatchesReference, useGpu } from "../helpers/gpu.ts";

useGpu();

/** GELU, tanh form: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
const gelu = (x: Tensor): Tensor => x.mul(0.5).mul(x.mul(x).mul(x).mul(0.044715).add(x).mul(Math.sqrt(2 / Math.PI)).tanh().add(1));

const values = (n: number, seed: number) => Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i * 0.71 + seed) * 2));

function expectFits(graph: Graph, limit: number): number {
  const p = compile(graph, { maxStorageBuffers: limit });
  for (const k of p.kernels) expect(k.bindings.length, `${k.name} at limit ${limit}`).toBeLessThanOrEqual(limit);
  return p.kernels.length;
}

describe("the binding limit is part of the plan", () => {
  test("GELU's backward through a dense layer, with its weights' and bias's gradients", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 6]);
    const w = g.input("w", "f32", [6, 5]);
    const b = g.input("b", "f32", [5]);
    const t = g.input("t", "f32", ["B", 5]);
    const y = gelu(x.matmul(w).add(b));
    const loss = y.sub(t).mul(y.sub(t)).mean();
    const [dx, dw, db] = grad(loss, [x, w, b]);
    const graph = g.build({ loss, dx, dw, db });
    const inputs = {
      x: { shape: [3, 6], data: values(18, 1) }, w: { shape: [6, 5], data: values(30, 2) },
      b: { shape: [5], data: values(5, 3) }, t: { shape: [3, 5], data: values(15, 4) },
    };
    for (const limit of [4, 8]) {
      expectFits(graph, limit);
      // tanh, and sums of ≤ 6 products: a few ulps of the largest term.
      await expectMatchesReference(graph, inputs, { atol: 1e-5, rtol: 1e-4 }, { maxStorageBuffers: limit });
    }
  });

  test("an elementwise sum of 12 inputs: fused, it would bind 13 buffers", async () => {
    const g = new GraphBuilder();
    const xs = Array.from({ length: 12 }, (_, i) => g.input(`x${i}`, "f32", ["B", 3]));
    const graph = g.build({ y: xs.reduce((s, v, i) => s.add(v.mul(i + 1))).tanh() });
    const inputs = Object.fromEntries(xs.map((_, i) => [`x${i}`, { shape: [2, 3], data: values(6, i) }]));
    expect(expectFits(graph, 16)).toBe(1);
    expect(expectFits(graph, 8)).toBeGreaterThan(1);
    expect(expectFits(graph, 4)).toBeGreaterThan(expectFits(graph, 8));
    for (const limit of [4, 8]) await expectMatchesReference(graph, inputs, { atol: 1e-6, rtol: 1e-5 }, { maxStorageBuffers: limit });
  });
});
