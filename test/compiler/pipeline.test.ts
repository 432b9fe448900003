/** The pass manager: a pipeline of your own (the example pass in examples/custom-pass.ts), and
 *  per-pass statistics. */
import { describe, expect, test } from "vitest";
import { dce } from "../../compiler/dce.ts";
import { compile, PASSES } from "../../compiler/pipeline.ts";
import { squareToMul } from "../../examples/custom-pass.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import { expectMatchesReference, useGpu } from "../helpers/gpu.ts";

useGpu();

describe("pass pipeline", () => {
  test("a user pass joins the pipeline: pow(x, 2) becomes x·x, results unchanged", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 3]);
    const graph = g.build({ y: x.pow(2).add(x.pow(3)), z: x.pow(g.constant(2, "f32", [2, 1, 3])) });
    const program = compile(graph, { passes: (std) => [...std, squareToMul, dce], verifyEach: true });
    const ops = program.graph.nodes.map((n) => n.op);
    // pow(x, 3) stays; pow(x, 2[2,1,3]) broadcasts x, so it stays too.
    expect(ops.filter((o) => o === "pow")).toHaveLength(2);
    expect(program.graph.nodes.some((n) => n.op === "mul" && n.inputs[0] === n.inputs[1])).toBe(true);
    expect(program.stats.map((s) => s.pass.replace(/ \(.*\)$/, ""))).toEqual(["input", ...PASSES.map((p) => p.name), "square-to-mul", "dce", "fuse", "codegen"]);
    expect(program.stats.at(-1)?.pass).toBe(`codegen (${program.kernels.length} kernels)`);
    await expectMatchesReference(graph, { x: { shape: [2, 3], data: [-1.5, 0.5, 2, 3, -2, 1] } }, { atol: 1e-5, rtol: 1e-5 }, { passes: (std) => [...std, squareToMul, dce] });
  });

  test("statistics: node counts after each pass (rewrites leave the dead to dce), and times", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [4]);
    const program = compile(g.build({ y: x.mul(1).add(0).neg().neg() }));
    expect(program.stats.map((s) => [s.pass, s.nodes])).toEqual([
      ["input", 7], ["infer-shapes", 7], ["simplify-all", 4], ["dce", 1], ["legalize", 1], ["fuse (1 values in buffers)", 1], ["codegen (0 kernels)", 1],
      ["plan-memory (arena 256 B, naive 256 B, lower bound 256 B)", 1],
    ]);
    for (const s of program.stats) expect(s.ms).toBeGreaterThanOrEqual(0);
  });

  test("the memory plan is reported at compile time for static shapes, or for declared dims", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 64]);
    const graph = g.build({ y: x.exp().sum(1).add(1).tanh() });
    const plan = (p: ReturnType<typeof compile>) => p.stats.find((s) => s.pass.startsWith("plan-memory"))?.pass;
    expect(plan(compile(graph))).toBeUndefined();
    // x: 128·64·4 = 32 KiB, Σ and y: 512 B each. x and Σ live together in k0, Σ and y in k1:
    // y reuses x's bytes.
    expect(plan(compile(graph, { dims: { B: 128 } }))).toBe("plan-memory (arena 33280 B, naive 33792 B, lower bound 33280 B)");
  });
});
