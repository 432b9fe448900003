/** The CPU target's own kernel shapes against the float64 reference on Dawn: elementwise kernels
 *  computing 8 consecutive elements a thread (element counts that are not multiples of 8 or of a
 *  workgroup, broadcasting, a symbolic batch, integer and boolean values, a whole training step)
 *  and reductions that always loop, never a workgroup tree (long and symbolic extents). */
import { describe, expect, test } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { CPU_TARGET } from "../../compiler/target.ts";
import { buildStep, mlp, mlpShapes } from "../../examples/models/networks.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import { expectMatchesReference, useGpu } from "../helpers/gpu.ts";

useGpu();

const cpu = { target: CPU_TARGET };
const data = (n: number, s: number) => Array.from({ length: n }, (_, i) => Math.sin(i * 1.37 + s) * 2);

describe("elementwise kernels, CPU target", () => {
  test("the kernel loops over 8 consecutive elements a thread, rolled, and dispatches an eighth of the threads", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 7]);
    const p = compile(g.build({ y: x.exp().mul(2) }), cpu);
    // nwg.z (1) keeps the trip count from the shader compiler, which would unroll it.
    expect(p.kernels[0].wgsl).toMatch(
      /for \(var k = 0u; k < nwg\.z \* 8u; k\+\+\) \{\n\s+let i\d+ = i\d+ \* 8u \+ k;\n\s+if \(i\d+ < \(u\.B \* 7u\)\) \{\n/,
    );
    expect(p.kernels[0].dispatch).toEqual({ kind: "linear", total: { k: 7, syms: ["B"] }, perGroup: 512 });
  });

  test.each([1, 5, 13, 150])("broadcast chain over [B,7] × [7] at B = %i (7 to 1,050 elements)", async (b) => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 7]);
    const w = g.input("w", "f32", [7]);
    const graph = g.build({ y: x.mul(w).add(x.tanh()).sub(w.exp()), m: x.gt(w).select(x, w) });
    await expectMatchesReference(
      graph,
      { x: { shape: [b, 7], data: data(b * 7, 1) }, w: { shape: [7], data: data(7, 2) } },
      { atol: 1e-5, rtol: 1e-5 },
      cpu,
    );
  });

  test("integers and booleans: i32 arithmetic, comparisons, casts", async () => {
    const g = new GraphBuilder();
    const a = g.input("a", "i32", [3, 11]);
    const b = g.input("b", "i32", [11]);
    const graph = g.build({ s: a.mul(b).add(a.mod(b)), c: a.lt(b).and(a.ne(0)), f: a.cast("f32").div(3) });
    const ints = (n: number, s: number) => Array.from({ length: n }, (_, i) => ((i * 7 + s) % 19) - 9);
    await expectMatchesReference(
      graph,
      { a: { shape: [3, 11], data: ints(33, 1) }, b: { shape: [11], data: ints(11, 4).map((v) => v || 1) } },
      { atol: 1e-6, rtol: 1e-6 },
      cpu,
    );
  });

  test("an MLP training step matches float64; with its weights resident, every update is written in place", async () => {
    const { graph, state } = buildStep({ kind: "train", lr: 0.1 }, mlp, { x: { shape: [3, 784] }, y: { shape: [3, 10] }, ...mlpShapes() });
    const inputs = Object.fromEntries(
      graph.nodes
        .filter((n) => n.op === "input")
        .map((n, j) => {
          const shape = n.type.shape as number[];
          const size = shape.reduce((a, d) => a * d, 1);
          const name = (n.attrs as { name: string }).name;
          return [
            name,
            {
              shape,
              data: name === "y" ? Array.from({ length: size }, (_, i) => (i % 10 === j % 10 ? 1 : 0)) : data(size, j).map((v) => v * 0.03),
            },
          ];
        }),
    );
    await expectMatchesReference(graph, inputs, { atol: 1e-5, rtol: 1e-4 }, cpu);
    expect(compile(graph, { ...cpu, state }).state.filter((u) => u.inPlace)).toHaveLength(6);
  });

  test.each([3, 128, 1000])("reductions over a symbolic or long extent loop, one thread an output: B = %i", async (b) => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 5]);
    const long = g.input("l", "f32", [3, 700]);
    const graph = g.build({ s: x.sum(0), m: x.max(0), a: x.argmax(0), mean: x.mean(), r: long.sum(1), all: long.sum() });
    const p = compile(graph, cpu);
    for (const k of p.kernels) expect(k.wgsl, k.name).not.toContain("workgroupBarrier");
    await expectMatchesReference(
      graph,
      { x: { shape: [b, 5], data: data(b * 5, 3) }, l: { shape: [3, 700], data: data(2100, 4) } },
      { atol: 1e-4, rtol: 1e-4 },
      cpu,
    );
  });
});
