/** Source ops: constants (splat and data), iota and the counter-based random generator, on Dawn
 *  against the float64 reference. All are exact: constants and iota are integers or given f32
 *  values, and random is integer hashing scaled by 2^-24, so tolerance 0 throughout. */
import { describe, expect, test } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import { interpret } from "../../src/interpret.ts";
import { DTYPES, type DType } from "../../src/ir/types.ts";
import { uniformAt } from "../../src/ops/sources.ts";
import { Executable } from "../../runtime/execute.ts";
import { expectMatchesReference, runGpu, useGpu } from "../helpers/gpu.ts";

useGpu();

const EXACT = { atol: 0, rtol: 0 };
const I32_MIN = -(2 ** 31);
const U32_MAX = 2 ** 32 - 1;

describe("const", () => {
  test("a splat fills its shape, in every dtype, rank 0 included", async () => {
    const g = new GraphBuilder();
    const graph = g.build({
      f: g.constant(2.5, "f32", [3, 4]),
      i: g.constant(-7, "i32", [5]),
      u: g.constant(4e9, "u32", [2, 3]),
      b: g.constant(1, "bool", [2]),
      s: g.constant(0.1),
      m: g.constant(I32_MIN, "i32", [1]),
    });
    await expectMatchesReference(graph, {}, EXACT);
    const r = await runGpu(graph, {});
    expect(Array.from(r.f.data)).toEqual(new Array(12).fill(2.5));
    expect(Array.from(r.i.data)).toEqual(new Array(5).fill(-7));
    expect(Array.from(r.u.data)).toEqual(new Array(6).fill(4e9));
    expect(Array.from(r.b.data)).toEqual([1, 1]);
    expect(r.s).toMatchObject({ shape: [], data: new Float32Array([0.1]) });
    expect(Array.from(r.m.data)).toEqual([I32_MIN]);
  });

  test("a splat with a symbolic shape takes its size from the inputs", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 3]);
    const graph = g.build({ y: x.add(g.constant(0.5, "f32", ["B", 1])) });
    await expectMatchesReference(graph, { x: { shape: [4, 3], data: [...Array(12).keys()] } }, EXACT);
  });

  test("data in every dtype, as an output and broadcast into a kernel", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "i32", ["B", 3]);
    const f = g.constant([1.5, -2, 1e-3, 3e38, 0, -0], "f32", [2, 3]);
    const i = g.constant([-1, I32_MIN, 7], "i32");
    const u = g.constant([0, U32_MAX, 5], "u32");
    const b = g.constant([1, 0, 1], "bool");
    const graph = g.build({ f, i, u, b, sum: x.add(i), picked: b.select(x, i) });
    const inputs = { x: { shape: [2, 3], data: [10, 20, 30, 40, 50, 60] } };
    await expectMatchesReference(graph, inputs, EXACT);
    const r = await runGpu(graph, inputs);
    expect(Array.from(r.f.data)).toEqual([1.5, -2, Math.fround(1e-3), Math.fround(3e38), 0, -0]);
    expect(Array.from(r.i.data)).toEqual([-1, I32_MIN, 7]);
    expect(Array.from(r.u.data)).toEqual([0, U32_MAX, 5]);
    expect(Array.from(r.b.data)).toEqual([1, 0, 1]);
    expect(Array.from(r.sum.data)).toEqual([9, I32_MIN + 20, 37, 39, I32_MIN + 50, 67]);
    expect(Array.from(r.picked.data)).toEqual([10, I32_MIN, 30, 40, I32_MIN, 60]);
  });

  test("shape errors", () => {
    const g = new GraphBuilder();
    expect(() => g.constant([1, 2, 3, 4, 5], "f32", [2, 3])).toThrow(
      /^const %0 @ sources\.test\.ts:\d+: const has 5 values for shape \[2,3\] \(6 elements\)$/,
    );
    expect(() => g.constant([1, 2], "f32", ["B"])).toThrow("const data needs a static shape, got [B]");
    expect(() => g.constant(1, "f32", [2, -1])).toThrow("const: bad shape [2,-1]");
  });
});

describe("iota", () => {
  const SHAPE = [3, 5, 7];
  test.each(DTYPES.filter((d) => d !== "bool").flatMap((dtype) => SHAPE.map((_, axis) => ({ dtype, axis }))))(
    "$dtype along axis $axis",
    async ({ dtype, axis }) => {
      const g = new GraphBuilder();
      const graph = g.build({ y: g.iota(SHAPE, axis, dtype as DType) });
      await expectMatchesReference(graph, {}, EXACT);
      const y = (await runGpu(graph, {})).y.data;
      // Element (i, j, k) holds its own coordinate along `axis`.
      const at = (i: number, j: number, k: number) => y[(i * 5 + j) * 7 + k];
      expect([at(2, 4, 6), at(1, 3, 0), at(0, 0, 5)]).toEqual([[2, 4, 6][axis], [1, 3, 0][axis], [0, 0, 5][axis]]);
    },
  );

  test("a symbolic axis, fused into a consumer", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "i32", ["B", 4]);
    const graph = g.build({ y: x.mul(g.iota(["B", 4], 0)).add(g.iota(["B", 4], -1)) });
    await expectMatchesReference(graph, { x: { shape: [70, 4], data: new Array(280).fill(3) } }, EXACT);
  });

  test("errors", () => {
    const g = new GraphBuilder();
    expect(() => g.iota([3, 5], 2)).toThrow("iota: axis 2 out of range for [3,5]");
    expect(() => g.iota([3], 0, "bool")).toThrow("iota: dtype bool has no counting");
  });
});

describe("random", () => {
  test("bit-exact with the reference, over a symbolic shape and several workgroups", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 65]);
    const graph = g.build({ r: g.random(["B", 65], 123), shifted: g.random([1, 65], 9).add(x) });
    // x is 0, so the add is exact too: each row of `shifted` is the same 65 values.
    for (const b of [1, 3]) await expectMatchesReference(graph, { x: { shape: [b, 65], data: new Array(b * 65).fill(0) } }, EXACT);
  });

  test("values lie in [0, 1) and look uniform over 10^5 samples", async () => {
    const n = 100_000;
    const g = new GraphBuilder();
    const { r } = await runGpu(g.build({ r: g.random([n], 2024) }), {});
    const deciles = new Array<number>(10).fill(0);
    let sum = 0;
    let outside = 0;
    for (const v of r.data) {
      if (v >= 0 && v < 1) deciles[Math.floor(v * 10)]++;
      else outside++;
      sum += v;
    }
    expect(outside).toBe(0);
    // Mean of n uniforms: σ = 1/√(12n) ≈ 9e-4; a decile count: σ = √(n·0.1·0.9) ≈ 95. Bounds are ~5σ.
    expect(Math.abs(sum / n - 0.5)).toBeLessThan(0.005);
    for (const c of deciles) expect(Math.abs(c - n / 10)).toBeLessThan(500);
    expect(r.data[0]).toBe(uniformAt(2024, 0, 0));
  });

  test("seeds and keys pick different streams; the same pair repeats", async () => {
    const g = new GraphBuilder();
    const shape = [1000];
    const graph = g.build({
      a: g.random(shape, 1),
      again: g.random(shape, 1),
      seed2: g.random(shape, 2),
      key1: g.random(shape, 1, 1),
    });
    const r = await runGpu(graph, {});
    const same = (p: ArrayLike<number>, q: ArrayLike<number>) => Array.from(p).filter((v, i) => v === q[i]).length;
    expect(same(r.a.data, r.again.data)).toBe(1000);
    // Two independent streams agree at a position with probability 2^-24.
    expect(same(r.a.data, r.seed2.data)).toBeLessThan(3);
    expect(same(r.a.data, r.key1.data)).toBeLessThan(3);
    expect(same(r.seed2.data, r.key1.data)).toBeLessThan(3);
  });

  test("a key input gives a fresh stream per run of one compiled executable", async () => {
    const g = new GraphBuilder();
    const step = g.input("step", "u32", []);
    const graph = g.build({ r: g.random([4, 33], 7, step) });
    const exe = await Executable.load(compile(graph));
    try {
      const runs = [];
      for (const key of [0, 1, U32_MAX]) {
        const inputs = { step: { shape: [], data: [key] } };
        const { r } = await exe.run(inputs);
        expect(Array.from(r.data)).toEqual(Array.from(interpret(graph, inputs).r.data));
        runs.push(Array.from(r.data));
      }
      expect(runs[0]).not.toEqual(runs[1]);
      expect(runs[1]).not.toEqual(runs[2]);
      expect(exe.program.kernels).toHaveLength(1);
    } finally {
      exe.dispose();
    }
  });

  test("errors", () => {
    const g = new GraphBuilder();
    expect(() => g.random([2], 1, g.input("k", "i32", []))).toThrow("random: the key must be a u32 scalar, got i32[]");
    expect(() => g.random([2], 1, g.input("k2", "u32", [1]))).toThrow("random: the key must be a u32 scalar, got u32[1]");
    expect(() => g.random([2], -1)).toThrow("random: seed must be a u32, got -1");
    expect(() => g.random([2], 1.5)).toThrow("random: seed must be a u32, got 1.5");
  });
});
