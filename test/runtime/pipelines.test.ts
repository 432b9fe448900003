/** Pipelines are shared by kernels that differ only in value names and comments: an unrolled
 *  RNN's time steps compile once, and results are unchanged. */
import { describe, expect, test } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import { acquireGpu } from "../../runtime/device.ts";
import { expectMatchesReference, useGpu } from "../helpers/gpu.ts";

useGpu();

describe("pipelines", () => {
  test("the pipeline key: names by binding, comments blanked, line numbers kept", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [4]);
    const p = compile(g.build({ y: x.exp(), z: x.add(1).exp() }), { fuse: false, inPlace: false });
    const [a, , b] = p.kernels; // exp %0 → %1, and exp %2 → %3 over the add
    expect(a.key.split("\n")).toHaveLength(a.wgsl.split("\n").length);
    expect(a.key.startsWith("\n@group(0) @binding(0) var<storage, read_write> vv0: array<f32>;\n")).toBe(true);
    expect(a.key).toContain("vv1[i0] = exp(vv0[i0]);");
    expect(a.wgsl).toContain(`v${a.output}[i0] = exp(v${a.bindings[0].value}[i0]);`);
    expect(b.output).not.toBe(a.output);
    expect(b.key).toBe(a.key);
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
    expect(new Set(p.kernels.map((k) => k.key)).size).toBeLessThan(p.kernels.length);
    const gpu = await acquireGpu();
    const before = gpu.pipelines.size;
    const data = (n: number, s: number) => Array.from({ length: n }, (_, i) => Math.sin(i * 1.7 + s) * 0.5);
    await expectMatchesReference(
      graph,
      { x: { shape: [3, 5], data: data(15, 1) }, w: { shape: [5, 5], data: data(25, 2) } },
      { atol: 1e-5, rtol: 1e-5 },
    );
    expect(gpu.pipelines.size - before).toBe(new Set(p.kernels.map((k) => k.key)).size);
  });
});
