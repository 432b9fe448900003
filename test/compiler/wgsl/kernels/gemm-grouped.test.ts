/** The grouped register-blocked GEMM (compiler/wgsl/kernels/gemm-grouped.ts): operands read as
 *  vec4s along whichever axis is contiguous (A or Aᵀ, B or Bᵀ in the buffer), K walked four at a
 *  time with the four products summed before the accumulator, a tail of K % 4 one k at a time.
 *  Against the float64 reference on Dawn, with and without the subgroup sharing (lavapipe:
 *  subgroups of 8), over sizes that reach every path: blocks past the edges (M, N not multiples
 *  of the block), a subgroup that cannot share (N = 32: four column blocks a row), K % 4 ≠ 0
 *  where the contiguous axes allow it, a broadcast batch and a fused epilogue. */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { compile } from "../../../../compiler/pipeline.ts";
import { CPU_TARGET, type Target, withFeatures } from "../../../../compiler/target.ts";
import { GraphBuilder } from "../../../../src/api/builder.ts";
import { expectDotBound } from "../../../helpers/dot-bound.ts";
import { useGpu } from "../../../helpers/gpu.ts";

useGpu();

/** variantMinMacs 0: the grouped form at these small sizes too (CPU_TARGET leaves GEMMs under
 *  2²² multiply-adds to the plain loop; the last test checks that choice). */
const TARGETS: readonly { readonly name: string; readonly target: Target }[] = [
  { name: "cpu target", target: { ...CPU_TARGET, subgroupGemm: false, variantMinMacs: 0 } },
  { name: "cpu target, subgroups", target: withFeatures({ ...CPU_TARGET, subgroupGemm: true, variantMinMacs: 0 }, ["subgroups"]) },
];

/** The grouped writer's mark: an accumulator takes a sum of four products. */
const GROUPED = "acc[0] += a0_0 * b0_0 + a0_1 * b0_1";

const rand = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i * 12.9898 + seed) * 2));

/** y = op(a) · op(b) + c, relu'd, with a and b stored transposed where `ta`/`tb` say. */
function problem(m: number, k: number, n: number, ta: boolean, tb: boolean, batch: number[]) {
  const g = new GraphBuilder();
  const a = g.input("a", "f32", ta ? [...batch, k, m] : [...batch, m, k]);
  const b = g.input("b", "f32", tb ? [n, k] : [k, n]);
  const c = g.input("c", "f32", [n]);
  const graph = g.build({
    y: (ta ? a.transpose() : a)
      .matmul(tb ? b.transpose() : b)
      .add(c)
      .relu(),
  });
  const size = (s: readonly number[]) => s.reduce((x, y) => x * y, 1);
  const shapes = { a: ta ? [...batch, k, m] : [...batch, m, k], b: tb ? [n, k] : [k, n], c: [n] };
  return { graph, shapes, size };
}

describe.each(TARGETS)("grouped register GEMM, $name", ({ target }) => {
  test("is the writer where both operands have a vec4 reader, in each orientation", () => {
    for (const [ta, tb] of [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ] as const) {
      const [kern] = compile(problem(16, 24, 64, ta, tb, []).graph, { target }).kernels;
      expect(kern.wgsl, `ta ${ta}, tb ${tb}`).toContain(GROUPED);
      expect(kern.wgsl).toMatch(/var<storage, read(_write)?> v\d+: array<vec4<f32>>;/);
      expect(kern.wgsl.includes("subgroupShuffle")).toBe(target.subgroupGemm);
    }
    // N = 30 (B's rows are not whole vec4s) and K = 30 with A row-major: the plain loop.
    expect(compile(problem(16, 24, 30, false, false, []).graph, { target }).kernels[0].wgsl).not.toContain(GROUPED);
    expect(compile(problem(16, 30, 64, false, false, []).graph, { target }).kernels[0].wgsl).not.toContain(GROUPED);
  });

  test("property: every orientation, odd and edge sizes, a broadcast batch, against float64", async () => {
    const dims = fc
      .record({
        ta: fc.boolean(),
        tb: fc.boolean(),
        m: fc.constantFrom(4, 8, 12, 16, 20, 36, 68),
        n: fc.constantFrom(4, 8, 12, 32, 36, 64, 68, 132),
        k: fc.constantFrom(1, 3, 4, 7, 8, 13, 16, 36),
        batch: fc.constantFrom<number[]>([], [2], [3, 1]),
        seed: fc.nat(1000),
      })
      // A read along k or B along k needs K a multiple of 4 (else that operand has no reader and
      // the case tests the plain loop, covered elsewhere).
      .filter(({ ta, tb, k }) => (ta || k % 4 === 0) && (!tb || k % 4 === 0));
    await fc.assert(
      fc.asyncProperty(dims, async ({ ta, tb, m, n, k, batch, seed }) => {
        const { graph, shapes, size } = problem(m, k, n, ta, tb, batch);
        expect(compile(graph, { target }).kernels[0].wgsl).toContain(GROUPED);
        const inputs = Object.fromEntries(
          Object.entries(shapes).map(([name, shape], i) => [name, { shape, data: rand(size(shape), seed + i) }]),
        );
        await expectDotBound(graph, inputs, k + 1, { target });
      }),
      { seed: 29, numRuns: 16 },
    );
  });
});

test("the CPU target leaves a small static GEMM to the plain loop, a large or symbolic one grouped", () => {
  const target = withFeatures(CPU_TARGET, ["subgroups"]);
  const kernel = (m: number | string, k: number, n: number) => {
    const g = new GraphBuilder();
    return compile(g.build({ y: g.input("a", "f32", [m, k]).matmul(g.input("b", "f32", [k, n])) }), { target }).kernels[0];
  };
  const wgsl = (m: number | string, k: number, n: number) => kernel(m, k, n).wgsl;
  // 64·120·84 ≈ 0.65M multiply-adds: one k loop, no subgroup operation (its compile is the cheapest).
  expect(wgsl(64, 120, 84)).not.toContain(GROUPED);
  const form = (m: number | string, k: number, n: number) => kernel(m, k, n).gemm?.form;
  expect([form(64, 120, 84), form(128, 784, 500), form("B", 784, 500), form(128, 785, 500)]).toEqual([
    "loop",
    "grouped + subgroups",
    "grouped + subgroups",
    "loop + subgroups",
  ]);
  expect(wgsl(64, 120, 84)).not.toContain("subgroupShuffle");
  // 128·784·500 ≈ 50M, and a symbolic batch: grouped, A shared by shuffles.
  for (const m of [128, "B"]) {
    expect(wgsl(m, 784, 500)).toContain(GROUPED);
    expect(wgsl(m, 784, 500)).toContain("subgroupShuffle");
  }
});

test("one pipeline for a symbolic batch B = 0, 1, 5 and 130, with a vec4 binding each side", async () => {
  const target = withFeatures({ ...CPU_TARGET, variantMinMacs: 0 }, ["subgroups"]);
  const g = new GraphBuilder();
  const x = g.input("x", "f32", ["B", 36]);
  const w = g.input("w", "f32", [20, 36]);
  const graph = g.build({ y: x.matmul(w.transpose()) });
  expect(compile(graph, { target }).kernels[0].wgsl).toContain(GROUPED);
  for (const B of [0, 1, 5, 130])
    await expectDotBound(graph, { x: { shape: [B, 36], data: rand(B * 36, B) }, w: { shape: [20, 36], data: rand(20 * 36, 7) } }, 36, {
      target,
    });
});

describe.each(TARGETS)("grouped register GEMM in conv2d, $name", ({ target }) => {
  test("property: channels multiples of 4, every window shape, padding and stride, against float64", async () => {
    const dims = fc.record({
      n: fc.constantFrom(1, 2),
      hw: fc.constantFrom(5, 8, 11),
      c: fc.constantFrom(4, 8, 12),
      co: fc.constantFrom(4, 8, 20),
      k: fc.constantFrom(1, 3),
      stride: fc.constantFrom(1, 2),
      pad: fc.constantFrom(0, 1),
      dilation: fc.constantFrom(1, 2),
      seed: fc.nat(1000),
    });
    await fc.assert(
      fc.asyncProperty(dims, async ({ n, hw, c, co, k, stride, pad, dilation, seed }) => {
        const g = new GraphBuilder();
        const x = g.input("x", "f32", [n, hw, hw, c]);
        const f = g.input("f", "f32", [k, k, c, co]);
        const b = g.input("b", "f32", [co]);
        const graph = g.build({
          y: x
            .conv2d(f, { strides: [stride, stride], padding: [pad, pad, pad, pad], dilations: [dilation, dilation] })
            .add(b)
            .relu(),
        });
        expect(compile(graph, { target }).kernels[0].wgsl).toContain(GROUPED);
        const inputs = {
          x: { shape: [n, hw, hw, c], data: rand(n * hw * hw * c, seed) },
          f: { shape: [k, k, c, co], data: rand(k * k * c * co, seed + 1) },
          b: { shape: [co], data: rand(co, seed + 2) },
        };
        await expectDotBound(graph, inputs, k * k * c + 1, { target });
      }),
      { seed: 31, numRuns: 12 },
    );
  });
});
