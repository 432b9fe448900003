/** Dispatches past 65,535 workgroups along an axis are folded and the kernels recover their
 *  indices (compiler/wgsl/kernels/gemm.ts `gemmGroups`, the linear fold of the kernel builder):
 *  each case is compiled for both GEMM writers where it has a GEMM, its workgroup counts are
 *  checked to pass 65,535 before folding, and it runs on Dawn against the float64 reference. */
import { describe, expect, test } from "vitest";
import { dispatchCounts } from "../../../../compiler/limits.ts";
import { compile } from "../../../../compiler/pipeline.ts";
import { CPU_TARGET, GPU_TARGET } from "../../../../compiler/target.ts";
import { GraphBuilder } from "../../../../src/api/builder.ts";
import { expectMatchesReference, useGpu } from "../../../helpers/gpu.ts";

useGpu();

const values = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i * 0.37 + seed)));
const TOL = { atol: 1e-5, rtol: 1e-4 };
const TARGETS = [
  { name: "gpu target (workgroup-tiled)", target: GPU_TARGET },
  { name: "cpu target (register-blocked)", target: CPU_TARGET },
];

describe("dispatch folding past 65,535 workgroups", () => {
  test.each(TARGETS)("batched matmul with batch 70,000 of 2×3 · 3×2 ($name)", async ({ target }) => {
    const g = new GraphBuilder();
    const a = g.input("a", "f32", [70000, 2, 3]);
    const b = g.input("b", "f32", [70000, 3, 2]);
    const graph = g.build({ y: a.matmul(b).add(1) });
    const [k] = compile(graph, { target }).kernels;
    expect(dispatchCounts(k.dispatch, {}, 65535)).toEqual([1, 65535, 2]);
    const inputs = { a: { shape: [70000, 2, 3], data: values(420000, 1) }, b: { shape: [70000, 3, 2], data: values(420000, 2) } };
    await expectMatchesReference(graph, inputs, TOL, { target });
  });

  test("a batch broadcast against one matrix, batch 66,000 × 3 rows (register-blocked)", async () => {
    const target = CPU_TARGET;
    // [66000, 3, 4] × [4, 5]: the second operand's batch coordinate stays 0.
    const g = new GraphBuilder();
    const a = g.input("a", "f32", [66000, 3, 4]);
    const b = g.input("b", "f32", [4, 5]);
    const graph = g.build({ y: a.matmul(b) });
    const inputs = { a: { shape: [66000, 3, 4], data: values(66000 * 12, 3) }, b: { shape: [4, 5], data: values(20, 4) } };
    await expectMatchesReference(graph, inputs, TOL, { target });
  });

  test("matmul with 4,194,368 columns: column tiles folded over y (workgroup-tiled)", async () => {
    // 65,537 column tiles of 64, past 65,535 along x.
    const n = 65537 * 64;
    const g = new GraphBuilder();
    const a = g.input("a", "f32", [1, 2]);
    const b = g.input("b", "f32", [2, n]);
    const graph = g.build({ y: a.matmul(b) });
    const [k] = compile(graph, { target: GPU_TARGET }).kernels;
    expect(dispatchCounts(k.dispatch, {}, 65535)).toEqual([1, 65535, 2]);
    const inputs = { a: { shape: [1, 2], data: values(2, 9) }, b: { shape: [2, n], data: values(2 * n, 10) } };
    await expectMatchesReference(graph, inputs, TOL, { target: GPU_TARGET });
  });

  test("conv2d with 4,202,500 output rows: row tiles folded onto z (workgroup-tiled)", async () => {
    // N·OH·OW = 2050² rows of 64-row tiles: 65,665 tiles, past 65,535, so F = 2.
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [1, 2050, 2050, 1]);
    const f = g.input("f", "f32", [1, 1, 1, 2]);
    const graph = g.build({ y: x.conv2d(f) });
    const [k] = compile(graph, { target: GPU_TARGET }).kernels;
    expect(dispatchCounts(k.dispatch, {}, 65535)[1]).toBe(Math.ceil(65665 / 2));
    const inputs = { x: { shape: [1, 2050, 2050, 1], data: values(2050 * 2050, 5) }, f: { shape: [1, 1, 1, 2], data: values(2, 6) } };
    await expectMatchesReference(graph, inputs, TOL, { target: GPU_TARGET });
  });

  test("an elementwise op and a max pool over more than 65,535 × 64 elements: linear dispatch folded over x and y", async () => {
    // 4,200,000 elements, 64 a workgroup: 65,625 groups → 65,535 × 2.
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [2, 2100000]);
    const graph = g.build({ y: x.mul(3).add(x.exp()) });
    const c = dispatchCounts(compile(graph).kernels[0].dispatch, {}, 65535);
    expect(c).toEqual([65535, 2, 1]);
    await expectMatchesReference(graph, { x: { shape: [2, 2100000], data: values(4200000, 7) } }, TOL);

    const p = new GraphBuilder();
    const img = p.input("img", "f32", [1, 2050, 2050, 1]);
    const pool = p.build({ y: img.maxPool2d([2, 2], [1, 1]) });
    // 2049² = 4,198,401 outputs: 65,601 groups → 65,535 × 2.
    expect(dispatchCounts(compile(pool).kernels[0].dispatch, {}, 65535)).toEqual([65535, 2, 1]);
    await expectMatchesReference(pool, { img: { shape: [1, 2050, 2050, 1], data: values(2050 * 2050, 8) } }, TOL);
  });
});
