/** Pipelines are shared by kernels that differ only in value names and comments: an unrolled
 *  RNN's time steps compile once, and results are unchanged. */
import { describe, expect, test } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import { acquireGpu } from "../../runtime/device.ts";
import { canonicalWgsl } from "../../runtime/pipelines.ts";
import { expectMatchesReference, useGpu } from "../helpers/gpu.ts";

useGpu();

describe("pipelines", () => {
  test("canonical WGSL: names by first use, comments blanked, line numbers kept", () => {
    const w = "// k3 = exp -> %7\n@group(0) @binding(0) var<storage, read> v4: array<f32>;\nlet b0 = v4[i];\nv7[i] = exp(v4[i]);";
    const c = canonicalWgsl(w);
    expect(c.split("\n")).toHaveLength(4);
    expect(c).toBe("\n@group(0) @binding(0) var<storage, read> vv0: array<f32>;\nlet b0 = vv0[i];\nvv1[i] = exp(vv0[i]);");
    expect(canonicalWgsl(w.replace(/v4/g, "v9").replace(/v7/g, "v12").replace("k3", "k8"))).toBe(c);
  });

  test("a chain of identical steps over other values compiles one pipeline per distinct kernel", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 5]);
    const w = g.input("w", "f32", [5, 5]);
    let h = x;
    for (let t = 0; t < 6; t++) h = h.matmul(w).tanh().add(x); // 6 kernels of one shape (the last writes the output)
    const graph = g.build({ y: h });
    const p = compile(graph);
    expect(p.kernels.length).toBeGreaterThanOrEqual(6);
    expect(new Set(p.kernels.map((k) => canonicalWgsl(k.wgsl))).size).toBeLessThan(p.kernels.length);
    const gpu = await acquireGpu();
    const before = gpu.pipelines.size;
    const data = (n: number, s: number) => Array.from({ length: n }, (_, i) => Math.sin(i * 1.7 + s) * 0.5);
    await expectMatchesReference(
      graph,
      { x: { shape: [3, 5], data: data(15, 1) }, w: { shape: [5, 5], data: data(25, 2) } },
      { atol: 1e-5, rtol: 1e-5 },
    );
    expect(gpu.pipelines.size - before).toBe(new Set(p.kernels.map((k) => canonicalWgsl(k.wgsl))).size);
  });
});
