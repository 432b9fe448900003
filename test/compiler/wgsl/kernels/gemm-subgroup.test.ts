/** The subgroup GEMM variants (compiler/wgsl/kernels/gemm-subgroup.ts), forced on, against the
 *  float64 reference on Dawn (lavapipe: subgroups of 8). The sizes reach each path of the
 *  register-blocked variant — subgroups whose lanes share rows (N ≥ 64 here) and those that do
 *  not (N = 32: four column blocks a row, so a subgroup of 8 spans two rows) or lost lanes to the
 *  edge return, K a multiple of 4 or not — and the tiled variant's partial tiles; with a fused
 *  epilogue, a transposed operand and a symbolic batch. test/ops/matmul.test.ts and the conv
 *  suites run all their properties on both variants too (test/helpers/gpu.ts GEMM_TARGETS). */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { compile } from "../../../../compiler/pipeline.ts";
import { CPU_TARGET, GPU_TARGET, type Target, withFeatures } from "../../../../compiler/target.ts";
import { GraphBuilder } from "../../../../src/api/builder.ts";
import { expectDotBound } from "../../../helpers/dot-bound.ts";
import { useGpu } from "../../../helpers/gpu.ts";

useGpu();

const VARIANTS: readonly { readonly name: string; readonly target: Target; readonly op: string }[] = [
  {
    name: "register-blocked",
    target: withFeatures({ ...CPU_TARGET, subgroupGemm: true, variantMinMacs: 0 }, ["subgroups"]),
    op: "subgroupShuffle(sa0, c)",
  },
  { name: "workgroup-tiled", target: withFeatures(GPU_TARGET, ["subgroups"]), op: "subgroupShuffle(mine, sid - own + c)" },
];

const rand = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i * 12.9898 + seed) * 2));

describe.each(VARIANTS)("subgroup GEMM, $name, forced on", ({ target, op }) => {
  test("the kernel enables subgroups and shares A by shuffles", () => {
    const g = new GraphBuilder();
    // N = 130, not a multiple of 4: the register-blocked GEMM of ./gemm-register.ts's loop, not
    // the grouped one (./gemm-grouped.test.ts).
    const graph = g.build({ y: g.input("a", "f32", [64, 40]).matmul(g.input("b", "f32", [40, 130])) });
    const [k] = compile(graph, { target }).kernels;
    expect(k.features).toEqual(["subgroups"]);
    expect(k.wgsl.split("\n").slice(1, 3)).toEqual(["enable subgroups;", "diagnostic(off, subgroup_uniformity);"]);
    expect(k.wgsl).toContain(op);
  });

  test("property: symbolic M, K, N (one pipeline) with a fused bias + relu, over odd, tile-sized and K % 4 ≠ 0 sizes", async () => {
    const g = new GraphBuilder();
    const a = g.input("a", "f32", ["M", "K"]);
    const b = g.input("b", "f32", ["K", "N"]);
    const bias = g.input("c", "f32", ["N"]);
    const graph = g.build({ y: a.matmul(b).add(bias).relu(), z: a.matmul(b) });
    const dims = fc.record({
      m: fc.oneof(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 15, max: 17 }), fc.integer({ min: 60, max: 70 })),
      k: fc.constantFrom(1, 2, 3, 4, 5, 7, 8, 13, 64),
      n: fc.constantFrom(1, 5, 31, 32, 33, 64, 65, 130),
      seed: fc.nat(1000),
    });
    await fc.assert(
      fc.asyncProperty(dims, async ({ m, k, n, seed }) => {
        const inputs = {
          a: { shape: [m, k], data: rand(m * k, seed) },
          b: { shape: [k, n], data: rand(k * n, seed + 1) },
          c: { shape: [n], data: rand(n, seed + 2) },
        };
        await expectDotBound(graph, inputs, k + 1, { target });
      }),
      { seed: 11, numRuns: 12 },
    );
  });

  // Static N fixes the block layout: 32 columns are four column blocks of 8, so a subgroup of 8
  // spans two rows (register-blocked: the plain loop); 64 are eight (the shared loop). K = 9 is
  // not a multiple of 4, so A has no vec4 reader and the grouped writer (./gemm-grouped.test.ts)
  // stays out.
  test.each([
    [7, 13, 32],
    [17, 9, 64],
    [3, 3, 65],
  ])("static M = %i, K = %i, N = %i", async (m, k, n) => {
    const g = new GraphBuilder();
    const graph = g.build({ y: g.input("a", "f32", [m, k]).matmul(g.input("b", "f32", [k, n])) });
    await expectDotBound(graph, { a: { shape: [m, k], data: rand(m * k, m) }, b: { shape: [k, n], data: rand(k * n, n) } }, k, { target });
  });

  test("a symbolic batch and a transposed operand: one pipeline for B = 1, 3, 64 and 129", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 37]);
    const w = g.input("w", "f32", [96, 37]);
    const graph = g.build({ y: x.matmul(w.transpose()) });
    expect(compile(graph, { target }).kernels[0].features).toEqual(["subgroups"]);
    for (const B of [1, 3, 64, 129])
      await expectDotBound(graph, { x: { shape: [B, 37], data: rand(B * 37, B) }, w: { shape: [96, 37], data: rand(96 * 37, 5) } }, 37, {
        target,
      });
  });
});

test("the register-blocked variant leaves a GEMM of fewer than four column blocks to the default writer", () => {
  const g = new GraphBuilder();
  const graph = g.build({ y: g.input("a", "f32", [128, 500]).matmul(g.input("b", "f32", [500, 10])) });
  const [k] = compile(graph, { target: VARIANTS[0].target }).kernels;
  expect(k.features).toBeUndefined();
  expect(k.wgsl).toBe(compile(graph, { target: CPU_TARGET }).kernels[0].wgsl);
});
