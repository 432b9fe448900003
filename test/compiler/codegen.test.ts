import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { CPU_TARGET } from "../../compiler/target.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import { expectMatchesReference, useGpu } from "../helpers/gpu.ts";
import { buildRecipe, recipeArb } from "../helpers/random-graph.ts";

useGpu();

describe("codegen", () => {
  test("golden: an elementwise kernel with broadcasting and a symbolic batch", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 10]);
    const b = g.input("b", "f32", [10]);
    const p = compile(g.build({ y: x.add(b) }));
    expect(p.kernels).toHaveLength(1);
    expect(p.kernels[0].uniforms).toEqual(["B"]);
    expect(p.kernels[0].dispatch).toEqual({ kind: "linear", total: { k: 10, syms: ["B"] }, perGroup: 64 });
    await expect(p.kernels[0].wgsl.replace(/@ codegen\.test\.ts:\d+/, "@ codegen.test.ts")).toMatchFileSnapshot(
      "../golden/add-broadcast.wgsl",
    );
  });

  test("golden: tiled matmul with a transposed operand inlined as a strided load", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 784]);
    const w = g.input("w", "f32", [500, 784]);
    const p = compile(g.build({ y: x.matmul(w.transpose()) }));
    expect(p.kernels).toHaveLength(1);
    await expect(p.kernels[0].wgsl.replace(/ @ codegen\.test\.ts:\d+/, "")).toMatchFileSnapshot("../golden/matmul-transposed.wgsl");
  });

  test("golden: the CPU target's register-blocked matmul, same graph: 16×8 outputs an invocation, no workgroup memory", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 784]);
    const w = g.input("w", "f32", [500, 784]);
    const p = compile(g.build({ y: x.matmul(w.transpose()) }), { target: CPU_TARGET });
    expect(p.kernels).toHaveLength(1);
    expect(p.kernels[0].dispatch).toEqual({
      kind: "grid",
      x: { size: { k: 500, syms: [] }, per: 512 },
      y: { size: { k: 1, syms: ["B"] }, per: 256 },
      z: { size: { k: 16, syms: [] }, per: 1 },
    });
    await expect(p.kernels[0].wgsl.replace(/ @ codegen\.test\.ts:\d+/, "")).toMatchFileSnapshot("../golden/matmul-transposed-cpu.wgsl");
  });

  test("golden: a workgroup-tree reduction over a symbolic batch", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 10]);
    const p = compile(g.build({ y: x.mean([0]) }));
    await expect(p.kernels[0].wgsl.replace(/ @ codegen\.test\.ts:\d+/, "")).toMatchFileSnapshot("../golden/mean-over-batch.wgsl");
  });

  test("scalar constants are literals, not buffers", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [4]);
    const p = compile(g.build({ y: x.mul(2).add(1) }));
    expect(p.buffers.map((b) => b.role)).toEqual(["input", "temp"]);
    expect(p.kernels[0].wgsl).toContain("* 2f");
    expect(p.kernels[0].wgsl).toContain("+ 1f");
  });

  test("values nobody reads get no kernel", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [4]);
    x.exp();
    const p = compile(g.build({ y: x.neg() }));
    expect(p.kernels).toHaveLength(1);
  });

  test("random graphs: Dawn matches the float64 reference", async () => {
    await fc.assert(
      fc.asyncProperty(recipeArb, fc.integer({ min: 1, max: 70 }), async (r, batch) => {
        const graph = buildRecipe(r);
        const n = r.shape.reduce((a, d) => a * d, 1);
        const vals = (k: number) => Array.from({ length: k }, (_, i) => Math.fround(Math.sin(i * 1.7 + k) * 2));
        // Chains of exp/mul can grow large: compare relative to magnitude (f32 eps · depth).
        await expectMatchesReference(
          graph,
          { x: { shape: [batch, ...r.shape], data: vals(batch * n) }, y: { shape: r.shape, data: vals(n) } },
          { atol: 1e-5, rtol: 1e-4 },
        );
      }),
      { seed: 11, numRuns: 25 },
    );
  });
});
