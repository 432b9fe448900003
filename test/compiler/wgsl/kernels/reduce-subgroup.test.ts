/** The subgroup reduction tree (compiler/wgsl/kernels/reduce-subgroup.ts), forced on with the
 *  GPU target plus the `subgroups` feature (lavapipe offers it), against the float64 reference:
 *  odd and long sizes, symbolic batch, NaN, ±inf and −0, ties for argmax. */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { compile } from "../../../../compiler/pipeline.ts";
import type { Program } from "../../../../compiler/program.ts";
import { GPU_TARGET, withFeatures } from "../../../../compiler/target.ts";
import { GraphBuilder } from "../../../../src/api/builder.ts";
import { interpret } from "../../../../src/interpret.ts";
import type { HostTensor } from "../../../../src/ir/host.ts";
import { printGraph } from "../../../../src/ir/print.ts";
import type { DType, Graph } from "../../../../src/ir/types.ts";
import { Executable } from "../../../../runtime/execute.ts";
import { useGpu } from "../../../helpers/gpu.ts";

useGpu();

const SUBGROUPS = withFeatures(GPU_TARGET, ["subgroups"]);
const U = 2 ** -24;
const size = (s: readonly number[]) => s.reduce((a, d) => a * d, 1);

/** Summation depth of the subgroup tree: ceil(n/256) serial adds a thread, then at most S − 1
 *  in a subgroupAdd (if the driver adds serially), 256/S serial folds of the subgroup totals and
 *  S − 1 again; the worst over subgroup sizes 4–128 is at S = 128: 2·127 + 2. Higham's
 *  γ_h·Σ|x| bounds any order with that depth (test/ops/reduce.test.ts). */
function sumBound(n: number, absSum: number): number {
  const h = Math.ceil(n / 256) + 256;
  return ((h * U) / (1 - h * U)) * absSum + n * 2 ** -126;
}

const OPS = ["sum", "mean", "max", "min", "argmax"] as const;
type Op = (typeof OPS)[number];

function graphOf(dtype: DType, shape: readonly (number | string)[], axes: number[], keepdims: boolean, ops: readonly Op[]) {
  const g = new GraphBuilder();
  const x = g.input("x", dtype, shape);
  const graph = g.build(Object.fromEntries(ops.map((op) => [op, op === "argmax" ? x.argmax(axes[0], keepdims) : x[op](axes, keepdims)])));
  const abs = dtype === "f32" ? g.build(Object.fromEntries(ops.map((op) => [op, x.abs().sum(axes, keepdims)]))) : undefined;
  return { graph, abs };
}

const subgroupKernels = (p: Program) => p.kernels.filter((k) => k.features?.includes("subgroups"));

/** Dawn against the reference: exact for max, min, argmax and integers; sums within sumBound. */
async function expectReference(p: Program, abs: Graph | undefined, inputs: Readonly<Record<string, HostTensor>>, n: number) {
  const exe = await Executable.load(p);
  try {
    const got = await exe.run(inputs);
    const ref = interpret(p.graph, inputs);
    const absSum = abs && interpret(abs, inputs);
    for (const [name, r] of Object.entries(ref)) {
      const a = got[name];
      expect(a.shape, name).toEqual(r.shape);
      for (let i = 0; i < r.data.length; i++) {
        const [x, y] = [a.data[i], r.data[i]];
        const sum = absSum && (name === "sum" || name === "mean");
        const tol = sum ? sumBound(n, absSum[name].data[i]) / (name === "mean" ? Math.max(n, 1) : 1) + 8 * U * Math.abs(y) : 0;
        const ok = Number.isNaN(y) ? Number.isNaN(x) : x === y || (Number.isFinite(y) && Math.abs(x - y) <= tol);
        if (!ok) throw new Error(`${name}[${i}]: gpu ${x}, reference ${y}, tolerance ${tol}\n${printGraph(p.graph)}`);
      }
    }
  } finally {
    exe.dispose();
  }
}

describe("subgroup reductions match the float64 reference (forced on)", () => {
  // Long reduced extents into few outputs take the tree, so the subgroup variant.
  const shapeArb = fc.array(fc.constantFrom(1, 2, 3, 5, 257, 600, 1031), { minLength: 1, maxLength: 3 }).filter((s) => size(s) <= 7000);
  const specArb = shapeArb.chain((shape) =>
    fc.record({
      shape: fc.constant(shape),
      axes: fc.shuffledSubarray(
        shape.map((_, a) => a),
        { minLength: 1 },
      ),
      keepdims: fc.boolean(),
    }),
  );
  // Mostly finite values, with the odd NaN, ±inf and −0.
  const f32 = fc.oneof(
    { arbitrary: fc.float({ min: -100, max: 100, noNaN: true }), weight: 40 },
    { arbitrary: fc.constantFrom(NaN, Infinity, -Infinity, -0), weight: 1 },
  );

  test("f32 sum, mean, max, min, argmax with NaN, ±inf and −0", async () => {
    let used = 0;
    await fc.assert(
      fc.asyncProperty(
        specArb.chain((spec) =>
          fc.record({ spec: fc.constant(spec), data: fc.array(f32, { minLength: size(spec.shape), maxLength: size(spec.shape) }) }),
        ),
        async ({ spec: { shape, axes, keepdims }, data }) => {
          const { graph, abs } = graphOf("f32", shape, axes, keepdims, OPS);
          const p = compile(graph, { target: SUBGROUPS });
          used += subgroupKernels(p).length;
          await expectReference(p, abs, { x: { shape, data } }, size(axes.map((a) => shape[a])));
        },
      ),
      { seed: 7, numRuns: 15 },
    );
    expect(used).toBeGreaterThan(0);
  });

  test("i32 and u32 sum (wrapping), max, min and argmax with ties: exact", async () => {
    const intArb = fc.tuple(specArb, fc.constantFrom<DType>("i32", "u32")).chain(([spec, dtype]) =>
      fc.record({
        spec: fc.constant(spec),
        dtype: fc.constant(dtype),
        data: fc.array(
          fc.oneof(
            dtype === "i32" ? fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }) : fc.integer({ min: 0, max: 2 ** 32 - 1 }),
            fc.constantFrom(...(dtype === "i32" ? [-(2 ** 31), -1, 0, 2 ** 31 - 1] : [0, 1, 2 ** 32 - 1])),
          ),
          { minLength: size(spec.shape), maxLength: size(spec.shape) },
        ),
      }),
    );
    await fc.assert(
      fc.asyncProperty(intArb, async ({ spec: { shape, axes, keepdims }, dtype, data }) => {
        const { graph } = graphOf(dtype, shape, axes, keepdims, ["sum", "max", "min", "argmax"]);
        const p = compile(graph, { target: SUBGROUPS });
        await expectReference(p, undefined, { x: { shape, data } }, 0);
      }),
      { seed: 7, numRuns: 10 },
    );
  });

  test("argmax: the first index among many ties, NaN the largest, −0 equal to +0", async () => {
    const values = fc.oneof(
      { arbitrary: fc.constantFrom(-Infinity, -1, -0, 0, 2), weight: 20 },
      { arbitrary: fc.constant(NaN), weight: 1 },
    );
    await fc.assert(
      fc.asyncProperty(
        fc
          .constantFrom([3, 700], [700, 2], [1031])
          .chain((shape) =>
            fc.record({ shape: fc.constant(shape), data: fc.array(values, { minLength: size(shape), maxLength: size(shape) }) }),
          ),
        async ({ shape, data }) => {
          const { graph } = graphOf("f32", shape, [shape.length === 2 && shape[0] === 3 ? 1 : 0], false, ["argmax", "max", "min"]);
          const p = compile(graph, { target: SUBGROUPS });
          expect(subgroupKernels(p)).toHaveLength(3);
          await expectReference(p, undefined, { x: { shape, data } }, 0);
        },
      ),
      { seed: 7, numRuns: 20 },
    );
  });

  test.each<DType>(["i32", "u32"])("%s max and min away from the dtype's extremes (the empty slots' identities)", async (dtype) => {
    const shape = [3, 700];
    const data = Array.from({ length: 2100 }, (_, i) => 1000 + ((i * 7919) % 4001) - (dtype === "i32" ? 3000 : 0));
    const { graph } = graphOf(dtype, shape, [1], false, ["sum", "max", "min", "argmax"]);
    const p = compile(graph, { target: SUBGROUPS });
    expect(subgroupKernels(p)).toHaveLength(4);
    await expectReference(p, undefined, { x: { shape, data } }, 0);
  });

  test("a symbolic batch: one program for B = 0, 1, 7, 300 and 5000", async () => {
    const { graph, abs } = graphOf("f32", ["B", 10], [0], false, OPS);
    const p = compile(graph, { target: SUBGROUPS });
    expect(subgroupKernels(p)).toHaveLength(p.kernels.length);
    for (const B of [0, 1, 7, 300, 5000]) {
      const data = Float32Array.from({ length: B * 10 }, (_, i) => Math.sin(i * 0.37) * (1 + (i % 10)));
      await expectReference(p, abs, { x: { shape: [B, 10], data } }, B);
    }
  });
});

describe("subgroup reductions: the kernels", () => {
  test("enable subgroups only where the target has the feature and the reduction is a tree", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [4, 1000]);
    const graph = g.build({ tree: x.sum(1), loop: x.sum(0) });
    const on = compile(graph, { target: SUBGROUPS });
    const [tree, loop] = ["tree", "loop"].map((n) => on.kernels.find((k) => k.output === graph.outputs.find((o) => o.name === n)!.id)!);
    expect(tree.wgsl.split("\n")[1]).toBe("enable subgroups;");
    expect(tree.wgsl).toContain("subgroupAdd(");
    expect(tree.features).toEqual(["subgroups"]);
    expect(loop.wgsl).not.toMatch(/enable subgroups|subgroupAdd/);
    expect(loop.features).toBeUndefined();
    const off = compile(graph, { target: GPU_TARGET });
    expect(off.kernels.some((k) => /enable subgroups|subgroupAdd/.test(k.wgsl))).toBe(false);
  });
});
