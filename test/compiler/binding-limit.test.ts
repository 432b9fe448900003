/** The storage-buffer limit is part of the fusion plan (compiler/fuse.ts): a kernel that would
 *  bind more buffers than the device allows has inlined values stored, chosen by the memory
 *  traffic they add, until every kernel fits; codegen writes the plan as it is. The GELU
 *  backward (a known failure elsewhere: one fused kernel of 11 bindings) and a wide fused sum
 *  are compiled at 8 and below and checked on Dawn against the float64 reference; the plan's
 *  binding count is the generated kernels' own. */
import { describe, expect, test } from "vitest";
import { kernelBindings, planFusion } from "../../compiler/fuse.ts";
import { compile } from "../../compiler/pipeline.ts";
import { GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import { grad } from "../../src/api/grad.ts";
import { KilnError } from "../../src/ir/errors.ts";
import type { Graph } from "../../src/ir/types.ts";
import { expectMatchesReference, useGpu } from "../helpers/gpu.ts";

useGpu();

/** GELU, tanh form: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
const gelu = (x: Tensor): Tensor =>
  x.mul(0.5).mul(
    x
      .mul(x)
      .mul(x)
      .mul(0.044715)
      .add(x)
      .mul(Math.sqrt(2 / Math.PI))
      .tanh()
      .add(1),
  );

const values = (n: number, seed: number) => Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i * 0.71 + seed) * 2));

/** Compiles at `limit`; every kernel fits and binds exactly what the plan counted. */
function expectFits(graph: Graph, limit: number): number {
  const p = compile(graph, { maxStorageBuffers: limit });
  const buffers = new Set(p.buffers.map((b) => b.value));
  for (const k of p.kernels) {
    expect(k.bindings.length, `${k.name} at limit ${limit}`).toBeLessThanOrEqual(limit);
    // An in-place kernel stores into an operand's buffer instead of binding its output.
    const planned = kernelBindings(p.graph, k.output, buffers).filter((v) => k.inPlace === undefined || v !== k.output);
    expect(
      k.bindings.map((b) => b.value).sort((a, b) => a - b),
      `${k.name}: the plan's count`,
    ).toEqual(planned);
  }
  return p.kernels.length;
}

// inPlace: false: an output written over a dying input binds no buffer of its own.
const widest = (graph: Graph, limit = 64): number =>
  Math.max(...compile(graph, { maxStorageBuffers: limit, inPlace: false }).kernels.map((k) => k.bindings.length));

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
      x: { shape: [3, 6], data: values(18, 1) },
      w: { shape: [6, 5], data: values(30, 2) },
      b: { shape: [5], data: values(5, 3) },
      t: { shape: [3, 5], data: values(15, 4) },
    };
    for (const limit of [4, 5, 8]) {
      expectFits(graph, limit);
      // tanh, and sums of ≤ 6 products: a few ulps of the largest term.
      await expectMatchesReference(graph, inputs, { atol: 1e-5, rtol: 1e-4 }, { maxStorageBuffers: limit });
    }
  });

  test("GELU's backward whose fused kernel would bind 11 buffers fits 8, 5 and 4", async () => {
    const g = new GraphBuilder();
    const xs = Array.from({ length: 4 }, (_, i) => g.input(`x${i}`, "f32", ["B", 5]));
    const s = g.input("s", "f32", [5]);
    const d = g.input("d", "f32", ["B", 5]);
    const t = g.input("t", "f32", ["B", 5]);
    // The sum is cheap, so the backward recomputes it, and GELU's derivative, beside every read.
    const y = gelu(xs.reduce((a, v) => a.add(v)))
      .mul(s)
      .add(d);
    const loss = y.mul(t).mul(y).mean();
    const [dx0, ds] = grad(loss, [xs[0], s]);
    const graph = g.build({ loss, dx0, ds });
    expect(widest(graph)).toBe(11);
    const inputs = {
      ...Object.fromEntries(xs.map((_, i) => [`x${i}`, { shape: [3, 5], data: values(15, i) }])),
      s: { shape: [5], data: values(5, 7) },
      d: { shape: [3, 5], data: values(15, 8) },
      t: { shape: [3, 5], data: values(15, 9) },
    };
    for (const limit of [8, 5, 4]) {
      expectFits(graph, limit);
      const { spilled } = planFusion(compile(graph, { maxStorageBuffers: limit }).graph, { fuse: true, maxStorageBuffers: limit });
      // Each stored value is there for a kernel over the limit (a spill may fit others too).
      expect(spilled.length, `limit ${limit}`).toBeGreaterThan(0);
      expect(spilled.every((x) => x.bindings > limit)).toBe(true);
      // tanh, and a mean of 15 products: a few ulps of the largest term.
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

  test("the cheaper value is stored: a small broadcast sum, not the large one", async () => {
    // y = tanh(Σ₆ xᵢ + Σ₄ sⱼ), xᵢ 64×64 and sⱼ 64 broadcast over rows: one kernel of 11
    // bindings. Storing Σ x (4096 elements) or Σ s (64) both fit 8; Σ s moves 64× less.
    const g = new GraphBuilder();
    const xs = Array.from({ length: 6 }, (_, i) => g.input(`x${i}`, "f32", [64, 64]));
    const ss = Array.from({ length: 4 }, (_, i) => g.input(`s${i}`, "f32", [64]));
    const graph = g.build({
      y: xs
        .reduce((a, v) => a.add(v))
        .add(ss.reduce((a, v) => a.add(v)))
        .tanh(),
    });
    expect(widest(graph)).toBe(11);
    const p = compile(graph, { maxStorageBuffers: 8 });
    const { spilled } = planFusion(p.graph, { fuse: true, maxStorageBuffers: 8 });
    expect(spilled).toHaveLength(1);
    const [{ value, root, bindings }] = spilled;
    expect(p.graph.nodes[value].type.shape).toEqual([64]);
    expect(p.graph.nodes[root].op).toBe("tanh");
    expect(bindings).toBe(11);
    // 4 + 1 and 7 + 1 bindings; in place, each output is written over an input that dies there.
    expect(p.kernels.map((k) => k.bindings.length)).toEqual([4, 7]);
    expect(p.kernels.every((k) => k.inPlace !== undefined)).toBe(true);
    const inputs = Object.fromEntries([
      ...xs.map((_, i) => [`x${i}`, { shape: [64, 64], data: values(4096, i) }]),
      ...ss.map((_, i) => [`s${i}`, { shape: [64], data: values(64, 10 + i) }]),
    ]);
    await expectMatchesReference(graph, inputs, { atol: 1e-6, rtol: 1e-5 }, { maxStorageBuffers: 8 });
  });

  test("an op that alone needs more buffers than allowed is named, with its site", () => {
    const g = new GraphBuilder();
    const [a, b, c] = ["a", "b", "c"].map((n) => g.input(n, "f32", [4]));
    const graph = g.build({ y: a.lt(b).select(b, c) });
    expect(expectFits(graph, 4)).toBe(1);
    expect(() => compile(graph, { maxStorageBuffers: 3 })).toThrow(KilnError);
    expect(() => compile(graph, { maxStorageBuffers: 3 })).toThrow(
      /^select %\d+ @ binding-limit\.test\.ts:\d+: needs 4 storage buffers .*allows 3$/,
    );
  });
});
