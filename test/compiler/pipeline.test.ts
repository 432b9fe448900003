/** The pass manager: a pipeline of your own (the example pass in examples/custom-pass.ts), and
 *  per-pass statistics. */
import { describe, expect, test } from "vitest";
import { dce } from "../../compiler/dce.ts";
import { compile, insertBefore, PASSES, PIPELINE } from "../../compiler/pipeline.ts";
import type { Stage } from "../../compiler/pass.ts";
import { squareToMul } from "../../examples/custom-pass.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import { expectMatchesReference, useGpu } from "../helpers/gpu.ts";

useGpu();

describe("pass pipeline", () => {
  test("a user pass joins the pipeline: pow(x, 2) becomes x·x, results unchanged", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 3]);
    const graph = g.build({ y: x.pow(2).add(x.pow(3)), z: x.pow(g.constant(2, "f32", [2, 1, 3])) });
    const program = compile(graph, { passes: (std) => insertBefore(std, "fuse", squareToMul, dce), verifyEach: true });
    const ops = program.graph.nodes.map((n) => n.op);
    // pow(x, 3) stays; pow(x, 2[2,1,3]) broadcasts x, so it stays too.
    expect(ops.filter((o) => o === "pow")).toHaveLength(2);
    expect(program.graph.nodes.some((n) => n.op === "mul" && n.inputs[0] === n.inputs[1])).toBe(true);
    expect(program.stats.map((s) => s.pass.replace(/ \(.*\)$/, ""))).toEqual([
      "input",
      ...PASSES.map((p) => p.name),
      "square-to-mul",
      "dce",
      "fuse",
      "schedule",
      "codegen",
      "check-limits",
      "plan-memory",
    ]);
    expect(program.stats.at(-3)?.pass).toBe(`codegen (${program.kernels.length} kernels)`);
    await expectMatchesReference(
      graph,
      { x: { shape: [2, 3], data: [-1.5, 0.5, 2, 3, -2, 1] } },
      { atol: 1e-5, rtol: 1e-5 },
      { passes: (std) => insertBefore(std, "fuse", squareToMul, dce) },
    );
  });

  test("statistics: node counts after each pass (rewrites leave the dead to dce), and times", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [4]);
    const program = compile(g.build({ y: x.mul(1).add(0).neg().neg() }));
    expect(program.stats.map((s) => [s.pass, s.nodes])).toEqual([
      ["input", 7],
      ["infer-shapes", 7],
      ["simplify-all", 4],
      ["dce", 1],
      ["legalize", 1],
      ["fuse (1 values in buffers)", 1],
      ["schedule (program order, est. peak 0 B; program order 0 B)", 1],
      ["codegen (0 kernels)", 1],
      ["check-limits", 1],
      ["plan-memory (arena 256 B, naive 256 B, lower bound 256 B)", 1],
    ]);
    for (const s of program.stats) expect(s.ms).toBeGreaterThanOrEqual(0);
  });

  test("the memory plan is reported at compile time for static shapes, or for declared dims", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 64]);
    const graph = g.build({ y: x.exp().sum(1).add(1).tanh() });
    const plan = (p: ReturnType<typeof compile>) => p.stats.find((s) => s.pass.startsWith("plan-memory"))?.pass;
    expect(plan(compile(graph))).toBe("plan-memory (at run time: declare dims to plan here)");
    // x: 128·64·4 = 32 KiB, Σ and y: 512 B each. x and Σ live together in k0, Σ and y in k1:
    // y is written in place over Σ (which dies there) and reuses x's bytes.
    expect(plan(compile(graph, { dims: { B: 128 } }))).toBe("plan-memory (arena 33280 B, naive 33280 B, lower bound 33280 B)");
  });

  test("a stage of your own replaces one: a fusion plan that fuses nothing gives one kernel per op", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 5]);
    const graph = g.build({ y: x.exp().add(1).log().mul(x) });
    const std = PIPELINE.find((s) => s.name === "fuse") as Stage;
    const noFusion: Stage = { name: "fuse-nothing", lower: (l, ctx) => std.lower(l, { ...ctx, fuse: false }) };
    const fused = compile(graph);
    const unfused = compile(graph, { passes: (steps) => steps.map((s) => (s.name === "fuse" ? noFusion : s)) });
    expect(fused.kernels).toHaveLength(1);
    expect(unfused.kernels).toHaveLength(4);
    expect(unfused.stats.map((s) => s.pass)).toContain("fuse-nothing");
    await expectMatchesReference(
      graph,
      { x: { shape: [3, 5], data: Array.from({ length: 15 }, (_, i) => i / 7 - 1) } },
      { atol: 1e-5, rtol: 1e-5 },
      { passes: (steps) => steps.map((s) => (s.name === "fuse" ? noFusion : s)) },
    );
  });

  test("each stage takes the one before it: a pipeline missing a stage is an error naming it, never a recompute", () => {
    const g = new GraphBuilder();
    const graph = g.build({ y: g.input("x", "f32", [3]).neg() });
    const without = (name: string) => () => compile(graph, { passes: (std) => std.filter((s) => s.name !== name) });
    expect(without("fuse")).toThrow(
      /^pipeline: stage "schedule" needs the fusion plan: keep "fuse" or a stage of your own that sets fusion$/,
    );
    expect(without("schedule")).toThrow(/^pipeline: stage "codegen" needs the kernel order: keep "schedule"/);
  });

  test("graph passes run before lowering; a pipeline without codegen says so", () => {
    const g = new GraphBuilder();
    const graph = g.build({ y: g.input("x", "f32", [3]).neg() });
    expect(() => compile(graph, { passes: (std) => [...std, dce] })).toThrow(/graph pass "dce" comes after the stage "fuse"/);
    expect(() => compile(graph, { passes: (std) => std.filter((s) => s.name !== "codegen") })).toThrow(/no step generated kernels/);
  });
});
