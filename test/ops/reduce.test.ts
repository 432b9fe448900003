import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { codegen } from "../../compiler/codegen.ts";
import type { Program } from "../../compiler/program.ts";
import { GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import { printGraph } from "../../src/ir/print.ts";
import type { DType, Graph } from "../../src/ir/types.ts";
import { Executable, type OutputTensor } from "../../runtime/execute.ts";
import { expectMatchesReference, useGpu } from "../helpers/gpu.ts";

useGpu();

const EXACT = { atol: 0, rtol: 0 };
const U = 2 ** -24; // f32 unit roundoff
const size = (s: readonly number[]) => s.reduce((a, d) => a * d, 1);

/** Error bounds against the float64 reference, per output element, for f32 inputs.
 *  sum: any order of adding n floats errs by at most γ_h·Σ|x_i|, γ_h = h·u/(1 − h·u), where h is
 *  the depth of the summation tree: the most roundings one element passes through (Higham,
 *  "Accuracy and Stability of Numerical Algorithms", §4.2). The loop kernel adds serially
 *  (h = n); the tree kernel adds ceil(n/256) per thread, then halves 8 times. So the bound grows
 *  with Σ|x| (not with |Σx|: cancellation is where f32 sums lose digits) and with n.
 *  mean: that bound / n, plus a few ulps for the division.
 *  max, min: exact, the result is one of the inputs.
 *  All: lavapipe may flush subnormals to zero, moving each element by < 2^-126. */
function bound(op: string, n: number, tree: boolean, absSum: number, ref: number): number {
  const ftz = n * 2 ** -126;
  if (op === "max" || op === "min") return ftz;
  const h = tree ? Math.ceil(n / 256) + 8 : n;
  const sumErr = ((h * U) / (1 - h * U)) * absSum + ftz;
  return op === "sum" ? sumErr : sumErr / n + 8 * U * Math.abs(ref);
}

async function runProgram(p: Program, inputs: Readonly<Record<string, HostTensor>>): Promise<Record<string, OutputTensor>> {
  const exe = await Executable.load(p);
  try {
    return await exe.run(inputs);
  } finally {
    exe.dispose();
  }
}

const isTree = (p: Program, id: number) => p.kernels.find((k) => k.output === id)!.wgsl.includes("var<workgroup>");

type Reduction = { op: "sum" | "mean" | "max" | "min" | "argmax"; axes: number[]; keepdims: boolean };

/** Graphs for reductions of `x`, and beside them Σ|x| over the same axes for the f32 bounds. */
function reductions(g: GraphBuilder, x: Tensor, rs: Readonly<Record<string, Reduction>>) {
  const of = ({ op, axes, keepdims }: Reduction) => (op === "argmax" ? x.argmax(axes[0], keepdims) : x[op](axes, keepdims));
  const outs = Object.fromEntries(Object.entries(rs).map(([name, r]) => [name, of(r)]));
  const abs =
    x.dtype === "f32"
      ? g.build(Object.fromEntries(Object.entries(rs).map(([name, r]) => [name, x.abs().sum(r.axes, r.keepdims)])))
      : undefined;
  return { graph: g.build(outs), abs };
}

/** Check Dawn's outputs against the reference within `bound` (exact for ints and argmax). */
function check(
  p: Program,
  rs: Readonly<Record<string, Reduction>>,
  abs: Graph | undefined,
  gpu: Record<string, OutputTensor>,
  inputs: Readonly<Record<string, HostTensor>>,
): void {
  const ref = interpret(p.graph, inputs);
  const absSum = abs && interpret(abs, inputs);
  const shape = Object.values(inputs)[0].shape;
  for (const { name, id } of p.graph.outputs) {
    const { op, axes } = rs[name];
    const n = size(axes.map((a) => shape[a]));
    const tree = isTree(p, id);
    const tol = (i: number) => (!absSum || op === "argmax" ? 0 : bound(op, n, tree, absSum[name].data[i], ref[name].data[i]));
    const [got, want] = [gpu[name], ref[name]];
    expect(got.shape, name).toEqual(want.shape);
    for (let i = 0; i < want.data.length; i++) {
      const [a, b] = [got.data[i], want.data[i]];
      const ok = Number.isNaN(b) ? Number.isNaN(a) : a === b || (Number.isFinite(b) && Math.abs(a - b) <= tol(i));
      if (!ok) throw new Error(`${name}[${i}]: gpu ${a}, reference ${b}, tolerance ${tol(i)}\n${printGraph(p.graph)}`);
    }
  }
}

describe("reduce: shape inference", () => {
  const g = new GraphBuilder();
  const x = g.input("x", "f32", ["B", 5, 3]);

  test("drops or keeps the reduced axes; symbolic dims pass through or reduce away", () => {
    expect(x.sum([0, 2]).type).toEqual({ dtype: "f32", shape: [5] });
    expect(x.sum([2, 0], true).shape).toEqual([1, 5, 1]);
    expect(x.mean(-1).shape).toEqual(["B", 5]);
    expect(x.max().shape).toEqual([]);
    expect(x.min(undefined, true).shape).toEqual([1, 1, 1]);
    expect(x.sum([]).shape).toEqual(["B", 5, 3]);
    expect(g.input("s", "i32", []).sum().type).toEqual({ dtype: "i32", shape: [] });
  });

  test("argmax gives i32 and drops or keeps its axis", () => {
    expect(x.argmax().type).toEqual({ dtype: "i32", shape: ["B", 5] });
    expect(x.argmax(0, true).type).toEqual({ dtype: "i32", shape: [1, 5, 3] });
    expect(g.input("u", "u32", [0, 4]).argmax(1).shape).toEqual([0]);
  });

  test("bad axes, dtypes and empty argmax axes are rejected with the shapes", () => {
    expect(() => x.sum([3])).toThrow(/reduce_sum %\d+ @ .*: axes: axis 3 is out of range for rank 3 \(f32\[B,5,3\]\)/);
    expect(() => x.max([-4])).toThrow("axes: axis -4 is out of range for rank 3 (f32[B,5,3])");
    expect(() => x.sum([1, -2])).toThrow("axes: axis 1 appears twice in [1,1] (f32[B,5,3])");
    expect(() => g.add("reduce_min", [x], { axes: [0.5], keepdims: false })).toThrow("axes: axis 0.5 is out of range");
    expect(() => g.input("i", "i32", [4]).mean()).toThrow("reduce_mean needs f32, got i32 (i32[4])");
    expect(() => g.input("b", "bool", [4]).sum()).toThrow("reduce_sum needs f32 or i32 or u32, got bool (bool[4])");
    expect(() => x.argmax(3)).toThrow("argmax %");
    expect(() => x.argmax(3)).toThrow("axis 3 is out of range for rank 3 (f32[B,5,3])");
    expect(() => g.input("e", "f32", [2, 0]).argmax(1)).toThrow("axis 1 has size 0: an empty axis has no argmax (f32[2,0])");
    expect(() => g.input("z", "f32", []).argmax()).toThrow("axis -1 is out of range for rank 0 (f32[])");
  });
});

describe("reduce: Dawn matches the float64 reference", () => {
  // Odd sizes and long dims: a reduction of 257 or 600 elements into few outputs takes the tree
  // kernel, short ones the loop kernel; 0 makes empty reductions and empty outputs.
  const shapeArb = fc.array(fc.constantFrom(0, 1, 2, 3, 5, 7, 64, 257, 600), { maxLength: 4 }).filter((s) => size(s) <= 6000);
  const specArb = shapeArb.chain((shape) =>
    fc.record({
      shape: fc.constant(shape),
      axes: fc.shuffledSubarray(shape.map((_, a) => a)),
      keepdims: fc.boolean(),
    }),
  );

  test("f32 sum, mean, max, min over random shapes and axes, within the f32 error bound", async () => {
    const seen = new Set<string>();
    const caseArb = specArb.chain((spec) =>
      fc.record({
        spec: fc.constant(spec),
        data: fc.float32Array({ minLength: size(spec.shape), maxLength: size(spec.shape), min: -100, max: 100, noNaN: true }),
      }),
    );
    await fc.assert(
      fc.asyncProperty(caseArb, async ({ spec: { shape, axes, keepdims }, data }) => {
        const g = new GraphBuilder();
        const rs = Object.fromEntries((["sum", "mean", "max", "min"] as const).map((op) => [op, { op, axes, keepdims }]));
        const { graph, abs } = reductions(g, g.input("x", "f32", shape), rs);
        const p = codegen(graph);
        const inputs = { x: { shape, data } };
        check(p, rs, abs, await runProgram(p, inputs), inputs);
        for (const k of p.kernels) seen.add(k.wgsl.includes("var<workgroup>") ? "tree" : "loop");
      }),
      { seed: 42, numRuns: 30 },
    );
    expect([...seen].sort()).toEqual(["loop", "tree"]);
  });

  test("i32 and u32 sum (wrapping), max, min: exact", async () => {
    const intArb = fc.tuple(specArb, fc.constantFrom<DType>("i32", "u32")).chain(([spec, dtype]) =>
      fc.record({
        spec: fc.constant(spec),
        dtype: fc.constant(dtype),
        data: fc.array(dtype === "i32" ? fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }) : fc.integer({ min: 0, max: 2 ** 32 - 1 }), {
          minLength: size(spec.shape),
          maxLength: size(spec.shape),
        }),
      }),
    );
    await fc.assert(
      fc.asyncProperty(intArb, async ({ spec: { shape, axes, keepdims }, dtype, data }) => {
        const g = new GraphBuilder();
        const x = g.input("x", dtype, shape);
        const graph = g.build({ sum: x.sum(axes, keepdims), max: x.max(axes, keepdims), min: x.min(axes, keepdims) });
        await expectMatchesReference(graph, { x: { shape, data } }, EXACT);
      }),
      { seed: 42, numRuns: 15 },
    );
  });

  test("argmax: the first index among ties; NaN counts as the largest", async () => {
    // Few distinct values, so most slots have ties; f32 adds -inf and the odd NaN.
    const values = (dtype: DType): fc.Arbitrary<number> =>
      dtype === "f32"
        ? fc.oneof({ arbitrary: fc.constantFrom(-Infinity, -1, 0, 0.5, 2), weight: 12 }, { arbitrary: fc.constant(NaN), weight: 1 })
        : fc.constantFrom(...(dtype === "i32" ? [-(2 ** 31), -1, 0, 3] : [0, 1, 2 ** 32 - 1]));
    const argArb = fc
      .record({
        shape: fc.array(fc.constantFrom(1, 2, 3, 7, 300), { minLength: 1, maxLength: 3 }).filter((s) => size(s) <= 3000),
        dtype: fc.constantFrom<DType>("f32", "i32", "u32"),
        axis: fc.nat(),
        keepdims: fc.boolean(),
      })
      .chain((c) =>
        fc.record({ c: fc.constant(c), data: fc.array(values(c.dtype), { minLength: size(c.shape), maxLength: size(c.shape) }) }),
      );
    await fc.assert(
      fc.asyncProperty(argArb, async ({ c: { shape, dtype, axis, keepdims }, data }) => {
        const g = new GraphBuilder();
        const x = g.input("x", dtype, shape);
        const graph = g.build({ i: x.argmax(axis % shape.length, keepdims) });
        await expectMatchesReference(graph, { x: { shape, data } }, EXACT);
      }),
      { seed: 42, numRuns: 20 },
    );
  });

  test("NaN and infinities: max/min propagate NaN, argmax picks the first NaN", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [4, 300]);
    const graph = g.build({ max: x.max(1), min: x.min(1), arg: x.argmax(1), argT: x.transpose().argmax(0) });
    const data = new Float32Array(1200).fill(1);
    data.fill(-Infinity, 0, 300); // row 0: all -inf → max -inf, argmax 0
    data[310] = NaN;
    data[320] = NaN;
    data[330] = Infinity; // row 1: NaN wins at 10
    data[600 + 299] = Infinity;
    data[600 + 5] = -Infinity; // row 2: inf at 299, -inf the min
    data[900 + 299] = NaN; // row 3: NaN at the last index, after equal 1s
    const gpu = await runProgram(codegen(graph), { x: { shape: [4, 300], data } });
    expect(Array.from(gpu.max.data)).toEqual([-Infinity, NaN, Infinity, NaN]);
    expect(Array.from(gpu.min.data)).toEqual([-Infinity, NaN, -Infinity, NaN]);
    expect(Array.from(gpu.arg.data)).toEqual([0, 10, 299, 299]);
    expect(Array.from(gpu.argT.data)).toEqual([0, 10, 299, 299]);
    await expectMatchesReference(graph, { x: { shape: [4, 300], data } }, EXACT);
  });

  test("empty reductions: sum 0, mean NaN, max/min the dtype's extremes", async () => {
    const g = new GraphBuilder();
    const f = g.input("f", "f32", [0, 3]);
    const i = g.input("i", "i32", [2, 0]);
    const u = g.input("u", "u32", [0]);
    const graph = g.build({
      s: f.sum(0),
      m: f.mean(0),
      mx: f.max(0),
      mn: f.min(0),
      imx: i.max(1),
      imn: i.min(1),
      us: u.sum(),
      umn: u.min(),
    });
    const gpu = await runProgram(codegen(graph), {
      f: { shape: [0, 3], data: [] },
      i: { shape: [2, 0], data: [] },
      u: { shape: [0], data: [] },
    });
    const vals = Object.fromEntries(Object.entries(gpu).map(([k, v]) => [k, Array.from(v.data)]));
    expect(vals).toEqual({
      s: [0, 0, 0],
      m: [NaN, NaN, NaN],
      mx: [-Infinity, -Infinity, -Infinity],
      mn: [Infinity, Infinity, Infinity],
      imx: [-(2 ** 31), -(2 ** 31)],
      imn: [2 ** 31 - 1, 2 ** 31 - 1],
      us: [0],
      umn: [2 ** 32 - 1],
    });
    await expectMatchesReference(
      graph,
      { f: { shape: [0, 3], data: [] }, i: { shape: [2, 0], data: [] }, u: { shape: [0], data: [] } },
      EXACT,
    );
  });
});

describe("reduce: kernels", () => {
  test("an inlined transpose, broadcast and iota are read in place: one kernel each", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [5, 300]);
    const c = g.input("c", "f32", [3, 1]);
    const outs = { t: x.transpose().sum([0]), e: c.expand([4, 3, 7]).max([0, 2]), io: g.iota([2, 300], 1, "f32").sum([1]) };
    const graph = g.build(outs);
    const p = codegen(graph);
    expect(p.kernels.map((k) => k.wgsl.split("\n")[0].replace(/ @ .*/, ""))).toEqual([
      `// k0 = reduce_sum[permute] -> %${outs.t.id}, f32[5]`,
      `// k1 = reduce_max[expand] -> %${outs.e.id}, f32[3]`,
      `// k2 = reduce_sum[iota] -> %${outs.io.id}, f32[2]`,
    ]);
    const data = Array.from({ length: 1500 }, (_, i) => (i % 13) - 6); // integers: exact sums
    const inputs = { x: { shape: [5, 300], data }, c: { shape: [3, 1], data: [1, -2, 3] } };
    const gpu = await runProgram(p, inputs);
    expect(Array.from(gpu.io.data)).toEqual([44850, 44850]);
    await expectMatchesReference(graph, inputs, EXACT);
  });

  test("a full sum of 10^6 elements: one workgroup tree, exact on integer data", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [1000, 1000]);
    const graph = g.build({ s: x.sum(), m: x.mean() });
    const p = codegen(graph);
    expect(p.kernels.map((k) => k.dispatch)).toEqual([1, 1].map(() => ({ kind: "linear", total: { k: 1, syms: [] }, perGroup: 1 })));
    // Integers in [-7, 9]: every partial sum is an integer of magnitude ≤ 9·10^6 < 2^24, so each
    // f32 addition is exact and a dropped or doubled element shows.
    const data = Int8Array.from({ length: 1e6 }, (_, i) => ((i * 7919) % 17) - 7);
    const want = data.reduce((a, v) => a + v, 0);
    const gpu = await runProgram(p, { x: { shape: [1000, 1000], data } });
    expect(gpu.s.data[0]).toBe(want);
    expect(Math.abs(gpu.m.data[0] - want / 1e6)).toBeLessThanOrEqual(8 * U * (want / 1e6));
  });

  test("past 65,535 workgroups the loop kernel's index folds over x and y", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 2]);
    const p = codegen(g.build({ s: x.sum(1) }));
    const B = 65535 * 64 + 100; // 65,537 groups of 64 outputs
    const data = Float32Array.from({ length: 2 * B }, (_, i) => i % 7);
    const { s } = await runProgram(p, { x: { shape: [B, 2], data } });
    let wrong = 0;
    for (let i = 0; i < B; i++) if (s.data[i] !== data[2 * i] + data[2 * i + 1]) wrong++;
    expect(wrong).toBe(0);
  });

  test("a symbolic batch: one Executable serves B = 1, 7, 300, 0 and 4096", async () => {
    const g = new GraphBuilder();
    const rs: Record<string, Reduction> = {
      sum: { op: "sum", axes: [0], keepdims: false },
      mean: { op: "mean", axes: [0], keepdims: false },
      all: { op: "mean", axes: [0, 1], keepdims: false },
      rowMax: { op: "max", axes: [1], keepdims: true },
      arg: { op: "argmax", axes: [0], keepdims: false },
    };
    const { graph, abs } = reductions(g, g.input("x", "f32", ["B", 10]), rs);
    const p = codegen(graph);
    expect(p.kernels).toHaveLength(5);
    expect(p.kernels.every((k) => k.uniforms.join() === "B")).toBe(true);
    expect(p.kernels.filter((k) => k.wgsl.includes("var<workgroup>"))).toHaveLength(4); // all but rowMax
    const exe = await Executable.load(p);
    try {
      for (const B of [1, 7, 300, 0, 4096]) {
        const inputs = {
          x: { shape: [B, 10], data: Float32Array.from({ length: B * 10 }, (_, i) => Math.sin(i * 0.37) * (1 + (i % 10))) },
        };
        check(p, rs, abs, await exe.run(inputs), inputs);
      }
    } finally {
      exe.dispose();
    }
  });

  test("property over a symbolic batch: random B and values through one set of pipelines", async () => {
    const g = new GraphBuilder();
    const rs: Record<string, Reduction> = {
      s02: { op: "sum", axes: [0, 2], keepdims: true },
      m0: { op: "mean", axes: [0], keepdims: false },
      mx1: { op: "max", axes: [1], keepdims: false },
      mn: { op: "min", axes: [2, 1, 0], keepdims: false },
      a0: { op: "argmax", axes: [0], keepdims: true },
      s2: { op: "sum", axes: [2], keepdims: false },
    };
    const { graph, abs } = reductions(g, g.input("x", "f32", ["B", 3, 5]), rs);
    const p = codegen(graph);
    const exe = await Executable.load(p);
    try {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 0, max: 700 }), fc.nat(), async (B, seed) => {
          const data = Float32Array.from({ length: B * 15 }, (_, i) => (Math.sin(i * 12.9898 + seed) * 43758.5453) % 10);
          const inputs = { x: { shape: [B, 3, 5], data } };
          check(p, rs, abs, await exe.run(inputs), inputs);
        }),
        { seed: 42, numRuns: 15 },
      );
    } finally {
      exe.dispose();
    }
  });
});
