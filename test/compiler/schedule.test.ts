/** schedule: any order it picks is a topological order of the kernels (checked over random
 *  graphs, forced to the memory-greedy order), "best" never estimates a higher peak than program
 *  order, state updates stay after their weight's readers (so they are still written in place),
 *  and on the MLP and LeNet training steps the greedy order lowers the planned arena. */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { memoryReport } from "../../compiler/plan-memory.ts";
import type { Program } from "../../compiler/program.ts";
import { buildStep, lenet, lenetShapes, mlp, mlpShapes } from "../../examples/models/networks.ts";
import { printGraph } from "../../src/ir/print.ts";
import type { ValueId } from "../../src/ir/types.ts";
import { expectMatchesReference, useGpu } from "../helpers/gpu.ts";
import { buildGradGraph } from "../helpers/gradcheck.ts";
import { buildOpRecipe, forwardGraph, opRecipeArb, recipeInputs, recipeShapes } from "../helpers/random-op-graph.ts";

useGpu();

/** Every value a kernel binds is a buffer (input, constant) or written by an earlier kernel. */
function expectTopological(p: Program): void {
  const written = new Set<ValueId>();
  const writers = new Set(p.kernels.map((k) => k.output));
  for (const k of p.kernels) {
    for (const b of k.bindings) {
      if (b.value === k.output || b.value === k.inPlace) continue;
      if (writers.has(b.value))
        expect(written.has(b.value), `${k.name} reads %${b.value} before its kernel ran\n${printGraph(p.graph)}`).toBe(true);
    }
    written.add(k.output);
  }
  expect(written.size).toBe(p.kernels.length);
}

describe("schedule", () => {
  test("over random graphs, forward and gradient: the memory-greedy order is topological, and the same kernels as program order", () => {
    fc.assert(
      fc.property(opRecipeArb, fc.boolean(), (r, backward) => {
        const inputs = recipeInputs(r);
        const graph = backward
          ? buildGradGraph({ inputs, shapes: recipeShapes(r), f: (xs) => buildOpRecipe(r, xs) }).graph
          : forwardGraph(r);
        const greedy = compile(graph, { schedule: "memory", inPlace: false });
        const program = compile(graph, { schedule: "program", inPlace: false });
        expectTopological(greedy);
        expect(greedy.kernels.map((k) => k.output).sort((a, b) => a - b)).toEqual(
          program.kernels.map((k) => k.output).sort((a, b) => a - b),
        );
        const stat = compile(graph).stats.find((s) => s.pass.startsWith("schedule"))!.pass;
        const [, peak, programPeak] = /est\. peak (\d+) B; program order (\d+) B/.exec(stat)!.map(Number);
        expect(peak).toBeLessThanOrEqual(programPeak);
      }),
      { numRuns: 150, seed: 31 },
    );
  });

  test.each([
    ["MLP 784-500-500-10 b128", mlp, { x: { shape: [128, 784] }, y: { shape: [128, 10] }, ...mlpShapes() }, 6],
    ["LeNet-5 b64", lenet, { x: { shape: [64, 28, 28, 1] }, y: { shape: [64, 10] }, ...lenetShapes() }, 10],
  ] as const)("%s: greedy kept, the arena shrinks, every update still in place", (_, forward, shapes, params) => {
    const { graph, state } = buildStep({ kind: "train", lr: 0.1 }, forward, shapes);
    const best = compile(graph, { state });
    const program = compile(graph, { state, schedule: "program" });
    expect(best.stats.find((s) => s.pass.startsWith("schedule"))!.pass).toMatch(/^schedule \(memory-greedy/);
    expectTopological(best);
    expect(best.state.filter((u) => u.inPlace)).toHaveLength(params);
    expect(memoryReport(best, {}).arenaBytes).toBeLessThan(memoryReport(program, {}).arenaBytes);
  });

  test("on Dawn: the greedy order computes the reference's values", async () => {
    const { graph } = buildStep({ kind: "train", lr: 0.1 }, mlp, { x: { shape: [3, 784] }, y: { shape: [3, 10] }, ...mlpShapes() });
    const rand = (n: number, seed: number) => Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + seed) * 0.05);
    const inputs = Object.fromEntries(
      graph.nodes
        .filter((n) => n.op === "input")
        .map((n, j) => {
          const shape = n.type.shape as number[];
          const size = shape.reduce((a, d) => a * d, 1);
          const name = (n.attrs as { name: string }).name;
          return [
            name,
            { shape, data: name === "y" ? Array.from({ length: size }, (_, i) => (i % 10 === j % 10 ? 1 : 0)) : rand(size, j) },
          ];
        }),
    );
    await expectMatchesReference(graph, inputs, { atol: 1e-5, rtol: 1e-4 }, { schedule: "memory" });
  });
});
