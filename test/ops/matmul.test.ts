import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { compile, type CompileOptions } from "../../compiler/pipeline.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import { Executable } from "../../runtime/execute.ts";
import { host } from "../helpers/data.ts";
import { checkDotBound, expectDotBound } from "../helpers/dot-bound.ts";
import { GEMM_TARGETS, runsFor, useGpu } from "../helpers/gpu.ts";

useGpu();

/** Sizes: 1, odd ones, around one tile (64) and over two (up to 130). */
const size = fc.oneof(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 60, max: 70 }), fc.integer({ min: 120, max: 130 }));

describe("matmul: infer", () => {
  test("shapes, broadcast batch dims, symbolic dims", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 784]);
    expect(x.matmul(g.input("w", "f32", [784, 500])).type).toEqual({ dtype: "f32", shape: ["B", 500] });
    expect(g.input("s", "f32", ["B", "T", 16]).matmul(g.input("v", "f32", [16, 8])).shape).toEqual(["B", "T", 8]);
    expect(g.input("a", "f32", [2, 1, 5, 7]).matmul(g.input("b", "f32", [3, 7, 4])).shape).toEqual([2, 3, 5, 4]);
    expect(g.input("c", "f32", [6, 7]).matmul(g.input("d", "f32", ["B", 7, 4])).shape).toEqual(["B", 6, 4]);
    expect(g.input("m", "f32", ["M", "K"]).matmul(g.input("n", "f32", ["K", "N"])).shape).toEqual(["M", "N"]);
  });

  test("errors name the op, the site and both types", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 784]);
    expect(() => x.matmul(g.input("w", "f32", [500, 10]))).toThrow(
      /^matmul %\d+ @ matmul\.test\.ts:\d+: inner dims differ \(f32\[B,784\] × f32\[500,10\]\)$/,
    );
    expect(() => x.matmul(g.input("k", "f32", ["K", 10]))).toThrow(/inner dims differ \(f32\[B,784\] × f32\[K,10\]\)/);
    expect(() => g.input("v", "f32", [784]).matmul(g.input("w2", "f32", [784, 10]))).toThrow(
      /needs operands of rank ≥ 2; reshape a vector to \[1,K\] or \[K,1\] \(f32\[784\] × f32\[784,10\]\)/,
    );
    expect(() => x.matmul(g.input("u", "f32", [784]))).toThrow(/needs operands of rank ≥ 2/);
    expect(() => g.input("a", "f32", [2, 3, 4]).matmul(g.input("b", "f32", [5, 4, 6]))).toThrow(
      /batch dims do not broadcast \(f32\[2,3,4\] × f32\[5,4,6\]\)/,
    );
    expect(() => g.input("i", "i32", [2, 3]).matmul(g.input("j", "i32", [3, 2]))).toThrow(/matmul needs f32, got i32/);
    expect(() => x.matmul(g.input("h", "i32", [784, 10]))).toThrow(/dtypes differ; cast explicitly/);
  });
});

// Both GEMM writers; the register-blocked one has 16×8 blocks, so these sizes cross its edges too.
describe.each(GEMM_TARGETS)("matmul on Dawn, $name", ({ target, share }) => {
  const opts: CompileOptions = { target };

  test("property: symbolic M, K, N (one pipeline) over 1, odd and multi-tile sizes", async () => {
    const g = new GraphBuilder();
    const graph = g.build(g.input("x", "f32", ["M", "K"]).matmul(g.input("w", "f32", ["K", "N"])));
    expect(compile(graph, opts).kernels).toHaveLength(1);
    await fc.assert(
      fc.asyncProperty(size, size, size, fc.nat(), async (m, k, n, seed) => {
        await expectDotBound(graph, { x: host([m, k], seed), w: host([k, n], seed + 1) }, k, opts);
      }),
      { seed: 42, numRuns: runsFor(25, share) },
    );
  });

  test("property: static shapes", async () => {
    await fc.assert(
      fc.asyncProperty(size, size, size, fc.nat(), async (m, k, n, seed) => {
        const g = new GraphBuilder();
        const graph = g.build(g.input("x", "f32", [m, k]).matmul(g.input("w", "f32", [k, n])));
        await expectDotBound(graph, { x: host([m, k], seed), w: host([k, n], seed + 1) }, k, opts);
      }),
      { seed: 42, numRuns: runsFor(5, share) },
    );
  });

  // The output's batch dims; each operand keeps a suffix of them with some replaced by 1.
  const batched = fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 3 }).chain((ob) =>
    fc.record({
      ob: fc.constant(ob),
      a: fc.tuple(fc.nat(ob.length), fc.array(fc.boolean(), { minLength: ob.length, maxLength: ob.length })),
      b: fc.tuple(fc.nat(ob.length), fc.array(fc.boolean(), { minLength: ob.length, maxLength: ob.length })),
      m: fc.integer({ min: 1, max: 70 }),
      k: fc.integer({ min: 1, max: 70 }),
      n: fc.integer({ min: 1, max: 70 }),
      seed: fc.nat(),
    }),
  );
  const operandBatch = (ob: number[], [drop, ones]: [number, boolean[]]) => ob.map((d, i) => (ones[i] ? 1 : d)).slice(drop);

  test("property: broadcast batch dims (static batch, symbolic M, K, N)", async () => {
    await fc.assert(
      fc.asyncProperty(batched, async ({ ob, a, b, m, k, n, seed }) => {
        const [ba, bb] = [operandBatch(ob, a), operandBatch(ob, b)];
        const g = new GraphBuilder();
        const graph = g.build(g.input("x", "f32", [...ba, "M", "K"]).matmul(g.input("w", "f32", [...bb, "K", "N"])));
        await expectDotBound(graph, { x: host([...ba, m, k], seed), w: host([...bb, k, n], seed + 1) }, k, opts);
      }),
      { seed: 42, numRuns: runsFor(10, share) },
    );
  });

  test("a symbolic batch dim runs on the grid's z axis: [B,T,K] × [K,N] and [B,M,K] × [B,K,N]", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 5, 33]);
    const y = g.input("y", "f32", ["B", 33, 70]);
    const graph = g.build({ shared: x.matmul(g.input("w", "f32", [33, 70])), paired: x.matmul(y) });
    await expectDotBound(graph, { x: host([3, 5, 33], 1), w: host([33, 70], 2), y: host([3, 33, 70], 3) }, 33, opts);
  });

  test("property: a transposed operand is a strided load, not a copy", async () => {
    // xᵀ·w and x·wᵀ, batched and not; all dims symbolic, so one pipeline per graph.
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["K", "M"]);
    const w = g.input("w", "f32", ["N", "K"]);
    const bx = g.input("bx", "f32", ["B", "K", "M"]);
    const graph = g.build({ t: x.transpose().matmul(w.transpose()), tb: bx.transpose().matmul(w.transpose()) });
    const program = compile(graph, opts);
    expect(program.kernels).toHaveLength(2);
    expect(program.buffers.map((b) => b.role)).toEqual(["input", "input", "input", "temp", "temp"]);
    await fc.assert(
      fc.asyncProperty(size, size, size, fc.integer({ min: 1, max: 3 }), fc.nat(), async (m, k, n, b, seed) => {
        await expectDotBound(graph, { x: host([k, m], seed), w: host([n, k], seed + 1), bx: host([b, k, m], seed + 2) }, k, opts);
      }),
      { seed: 42, numRuns: runsFor(12, share) },
    );
  });

  test("many row groups: a narrow [B,3] × [3,5] with B = 2500, symbolic (folded onto z) and static", async () => {
    // N = 5: the register-blocked writer stacks all 64 lanes along M, 1024 rows a group.
    for (const m of ["B", 2500] as const) {
      const g = new GraphBuilder();
      const graph = g.build(g.input("x", "f32", [m, 3]).matmul(g.input("w", "f32", [3, 5])));
      await expectDotBound(graph, { x: host([2500, 3], 8), w: host([3, 5], 9) }, 3, opts);
    }
  });

  test("one Executable of x:[B,K] × W:[K,N] serves B = 1, 65 and 200", async () => {
    const g = new GraphBuilder();
    const graph = g.build(g.input("x", "f32", ["B", 37]).matmul(g.input("W", "f32", [37, 70])));
    const program = compile(graph, opts);
    expect(program.kernels).toHaveLength(1);
    expect(program.kernels[0].uniforms).toEqual(["B"]);
    // B reaches the shader only through the uniform: the WGSL (the pipeline key) has no size for it.
    expect(program.kernels[0].wgsl).toContain("u.B");
    const exe = await Executable.load(program);
    try {
      const W = host([37, 70], 7);
      for (const b of [1, 65, 200]) {
        const inputs = { x: host([b, 37], b), W };
        const got = await exe.run(inputs);
        expect(got.out.shape).toEqual([b, 70]);
        checkDotBound(graph, inputs, got, 37);
      }
    } finally {
      exe.dispose();
    }
  });
});
