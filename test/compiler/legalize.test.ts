import { describe, expect, test } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { legalize } from "../../compiler/legalize.ts";
import { concat, GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import { printGraph } from "../../src/ir/print.ts";
import { verify } from "../../src/ir/verify.ts";
import { expectMatchesReference, useGpu } from "../helpers/gpu.ts";

useGpu();

const parts = (g: GraphBuilder, n: number): Tensor[] => Array.from({ length: n }, (_, i) => g.input(`x${i}`, "f32", [2, i + 1]));
const data = (n: number) =>
  Object.fromEntries(
    Array.from({ length: n }, (_, i) => [`x${i}`, { shape: [2, i + 1], data: Array.from({ length: 2 * (i + 1) }, (_, j) => i * 100 + j) }]),
  );

describe("legalize", () => {
  test("a graph without wide concats comes back as the same object", () => {
    const g = new GraphBuilder();
    const graph = g.build({ y: concat(parts(g, 7), 1) });
    expect(legalize.run(graph, { maxStorageBuffers: 8 })).toBe(graph);
  });

  test("splits a 12-input concat into a tree that verifies, and is idempotent", () => {
    const g = new GraphBuilder();
    const graph = g.build({ y: concat(parts(g, 12), 1) });
    const once = legalize.run(graph, { maxStorageBuffers: 8 });
    verify(once);
    expect(printGraph(once).match(/= concat/g)).toHaveLength(3);
    expect(legalize.run(once, { maxStorageBuffers: 8 })).toBe(once);
  });

  test("every kernel binds at most the limit, and results hold, at limits 4 and 8", async () => {
    for (const limit of [4, 8]) {
      const g = new GraphBuilder();
      const xs = parts(g, 12);
      // Inlined into the mul, both concats would bind 13 buffers: codegen materializes some.
      const y = concat(xs, 1).mul(concat(xs.slice(0, 3), 1).sum([1], true));
      const graph = g.build({ y });
      const p = compile(graph, { maxStorageBuffers: limit });
      for (const k of p.kernels) expect(k.bindings.length).toBeLessThanOrEqual(limit);
      await expectMatchesReference(graph, data(12), { atol: 0, rtol: 1e-6 }, { maxStorageBuffers: limit });
    }
  });
});
