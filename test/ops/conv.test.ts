import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { compile, type CompileOptions } from "../../compiler/pipeline.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import { printGraph } from "../../src/ir/print.ts";
import type { Graph } from "../../src/ir/types.ts";
import { host } from "../helpers/data.ts";
import { GEMM_TARGETS, runGpu, runsFor, useGpu } from "../helpers/gpu.ts";

useGpu();

/** Tolerance, per output, in units u = 2^-24 of Σ|terms| (the same graph on |inputs|):
 *  - conv2d: a dot product of K = KH·KW·Cin f32 products (padding adds exact zeros); in any
 *    summation order it is within γ_K·Σ|x·f| of the exact value, γ_K = K·u/(1 − K·u) (Higham,
 *    Accuracy and Stability, §3.1), so K + 1 units;
 *  - avg_pool2d: a sum of n ≤ KH·KW values, then one division: (n − 1)·u·Σ|x|/n for the sum and
 *    u·|mean| for the division, within (n + 1)·u·mean|x|;
 *  - max_pool2d: picks one of its inputs, exactly: 0.
 *  Bounding by Σ|terms| instead of |result| stays tight where terms cancel; an indexing bug is
 *  off by whole terms, far beyond it. */
async function expectWithin(
  graph: Graph,
  inputs: Readonly<Record<string, HostTensor>>,
  ulps: Readonly<Record<string, number>>,
  opts?: CompileOptions,
): Promise<void> {
  const ref = interpret(graph, inputs);
  const abs = Object.fromEntries(Object.entries(inputs).map(([n, t]) => [n, { shape: t.shape, data: Array.from(t.data, Math.abs) }]));
  const mag = interpret(graph, abs);
  const gpu = await runGpu(graph, inputs, opts);
  for (const [name, r] of Object.entries(ref)) {
    expect(gpu[name].shape).toEqual(r.shape);
    for (let i = 0; i < r.data.length; i++) {
      const bound = ulps[name] * 2 ** -24 * mag[name].data[i];
      const err = Math.abs(gpu[name].data[i] - r.data[i]);
      if (!(err <= bound))
        throw new Error(`${name}[${i}]: gpu ${gpu[name].data[i]}, reference ${r.data[i]}, bound ${bound}\n${printGraph(graph)}`);
    }
  }
}

type Pair = [number, number];
type Pads = [number, number, number, number];

describe("conv2d: infer", () => {
  test("output sizes: OH = floor((H + top + bottom − dh·(KH−1) − 1)/sh) + 1", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["N", 28, 28, 1]);
    expect(x.conv2d(g.input("f", "f32", [5, 5, 1, 6]), { padding: [2, 2, 2, 2] }).type).toEqual({ dtype: "f32", shape: ["N", 28, 28, 6] });
    expect(g.input("p", "f32", ["N", 14, 14, 6]).conv2d(g.input("f2", "f32", [5, 5, 6, 16])).shape).toEqual(["N", 10, 10, 16]);
    // H: (10 + 1 + 0 − 2·2 − 1)/3 + 1 = 3;  W: (11 + 2 + 1 − 3·1 − 1)/2 + 1 = 6.
    const y = g
      .input("y", "f32", [1, 10, 11, 2])
      .conv2d(g.input("f3", "f32", [3, 2, 2, 4]), { strides: [3, 2], padding: [1, 0, 2, 1], dilations: [2, 3] });
    expect(y.shape).toEqual([1, 3, 6, 4]);
    // floor: (7 − 3)/3 + 1 = 2 rows; a 5-wide window fills a 5-wide input once.
    expect(g.input("z", "f32", [2, 7, 5, 1]).conv2d(g.input("f4", "f32", [3, 5, 1, 1]), { strides: [3, 1] }).shape).toEqual([2, 2, 1, 1]);
  });

  test("errors name the attribute and show the shapes", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["N", 28, 28, 3]);
    const f = g.input("f", "f32", [5, 5, 1, 6]);
    expect(() => x.conv2d(f)).toThrow(
      /^conv2d %\d+ @ conv\.test\.ts:\d+: input channels differ: the input has 3, the filter expects 1 \(f32\[N,28,28,3\], f32\[5,5,1,6\]\)$/,
    );
    const x1 = g.input("x1", "f32", ["N", 28, 28, 1]);
    expect(() => g.input("r", "f32", [28, 28, 1]).conv2d(f)).toThrow(
      /the input must be NHWC \(rank 4\) \(f32\[28,28,1\], f32\[5,5,1,6\]\)/,
    );
    expect(() => x1.conv2d(g.input("f3", "f32", [5, 5, 6]))).toThrow(/the filter must be HWIO \(rank 4\)/);
    expect(() => g.input("s", "f32", ["N", "H", 28, 1]).conv2d(f)).toThrow(/H, W and C of the input must be static, got \[N,H,28,1\]/);
    expect(() => x1.conv2d(g.input("fs", "f32", [5, 5, 1, "C"]))).toThrow(/the filter must have a static shape, got \[5,5,1,C\]/);
    expect(() => x1.conv2d(f, { strides: [0, 1] })).toThrow(/strides must be 2 integers ≥ 1, got \[0,1\]/);
    expect(() => x1.conv2d(f, { dilations: [1] as never })).toThrow(/dilations must be 2 integers ≥ 1, got \[1\]/);
    expect(() => x1.conv2d(f, { padding: [-1, 0, 0, 0] })).toThrow(
      /padding \[top,bottom,left,right\] must be 4 integers ≥ 0, got \[-1,0,0,0\]/,
    );
    expect(() => g.input("t", "f32", [1, 4, 9, 1]).conv2d(g.input("f5", "f32", [3, 3, 1, 1]), { dilations: [2, 2] })).toThrow(
      /the window spans 5 along H, more than the padded H of 4/,
    );
    expect(() => g.input("i", "i32", [1, 5, 5, 1]).conv2d(g.input("fi", "i32", [5, 5, 1, 6]))).toThrow(/conv2d needs f32, got i32/);
  });
});

describe("pools: infer", () => {
  test("output sizes", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["N", 28, 28, 6]);
    expect(x.maxPool2d([2, 2]).type).toEqual({ dtype: "f32", shape: ["N", 14, 14, 6] });
    expect(x.avgPool2d([3, 3], [2, 2], [1, 1, 1, 1]).shape).toEqual(["N", 14, 14, 6]);
    expect(g.input("y", "f32", [1, 5, 7, 2]).maxPool2d([2, 3], [2, 1], [0, 1, 2, 0]).shape).toEqual([1, 3, 7, 2]);
  });

  test("errors", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["N", 4, 4, 2]);
    expect(() => x.maxPool2d([2, 2], [2, 2], [2, 0, 0, 0])).toThrow(
      /^max_pool2d %\d+ @ conv\.test\.ts:\d+: padding \[2,0,0,0\] must be smaller than the window \[2,2\] on each side \(f32\[N,4,4,2\]\)$/,
    );
    expect(() => x.avgPool2d([3, 1], [1, 1], [0, 0, 0, 1])).toThrow(/padding \[0,0,0,1\] must be smaller than the window \[3,1\]/);
    expect(() => x.avgPool2d([0, 2])).toThrow(/avg_pool2d %\d+ .*window must be 2 integers ≥ 1, got \[0,2\]/);
    expect(() => x.maxPool2d([2, 2], [1, 0])).toThrow(/strides must be 2 integers ≥ 1, got \[1,0\]/);
    expect(() => x.maxPool2d([5, 1])).toThrow(/the window spans 5 along H, more than the padded H of 4/);
    expect(() => g.input("r", "f32", [4, 4, 2]).maxPool2d([2, 2])).toThrow(/the input must be NHWC \(rank 4\)/);
    expect(() => g.input("w", "f32", [1, 4, "W", 2]).maxPool2d([2, 2])).toThrow(/H, W and C of the input must be static/);
  });
});

describe.each(GEMM_TARGETS)("conv2d on Dawn, $name", ({ target, share }) => {
  const opts: CompileOptions = { target };
  const pair = (max: number) => fc.tuple(fc.integer({ min: 1, max }), fc.integer({ min: 1, max })) as fc.Arbitrary<Pair>;
  const cases = fc
    .record({
      n: fc.integer({ min: 1, max: 3 }),
      h: fc.integer({ min: 1, max: 10 }),
      w: fc.integer({ min: 1, max: 10 }),
      c: fc.integer({ min: 1, max: 4 }),
      k: pair(4),
      co: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 63, max: 70 })),
      strides: pair(3),
      dilations: pair(2),
      padding: fc.tuple(fc.nat(3), fc.nat(3), fc.nat(3), fc.nat(3)) as fc.Arbitrary<Pads>,
      seed: fc.nat(),
    })
    .filter(
      (t) =>
        t.h + t.padding[0] + t.padding[1] > t.dilations[0] * (t.k[0] - 1) &&
        t.w + t.padding[2] + t.padding[3] > t.dilations[1] * (t.k[1] - 1),
    );

  test("property: random shapes, strides, padding and dilations, symbolic N", async () => {
    await fc.assert(
      fc.asyncProperty(cases, async ({ n, h, w, c, k, co, strides, dilations, padding, seed }) => {
        const g = new GraphBuilder();
        const y = g.input("x", "f32", ["N", h, w, c]).conv2d(g.input("f", "f32", [...k, c, co]), { strides, dilations, padding });
        const graph = g.build(y);
        await expectWithin(graph, { x: host([n, h, w, c], seed), f: host([...k, c, co], seed + 1) }, { out: k[0] * k[1] * c + 1 }, opts);
      }),
      { seed: 42, numRuns: runsFor(15, share) },
    );
  });

  test("LeNet: 28×28×1 → 5×5×6 'same' ([2,2,2,2]), and 14×14×6 → 5×5×16 'valid'", async () => {
    const g = new GraphBuilder();
    const c1 = g.input("x", "f32", ["N", 28, 28, 1]).conv2d(g.input("f1", "f32", [5, 5, 1, 6]), { padding: [2, 2, 2, 2] });
    const c2 = g.input("p", "f32", ["N", 14, 14, 6]).conv2d(g.input("f2", "f32", [5, 5, 6, 16]));
    const graph = g.build({ c1, c2 });
    const inputs = { x: host([3, 28, 28, 1], 1), f1: host([5, 5, 1, 6], 2), p: host([3, 14, 14, 6], 3), f2: host([5, 5, 6, 16], 4) };
    await expectWithin(graph, inputs, { c1: 26, c2: 151 }, opts);
  });

  test("inlined operands: a reshaped flat image and a permuted OIHW filter, no copies", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["N", 784]).reshape(["N", 28, 28, 1]);
    const f = g.input("oihw", "f32", [6, 1, 5, 5]).permute([2, 3, 1, 0]);
    const graph = g.build(x.conv2d(f, { strides: [2, 2], padding: [2, 1, 2, 1] }));
    expect(compile(graph, opts).kernels).toHaveLength(1);
    await expectWithin(graph, { x: host([2, 784], 5), oihw: host([6, 1, 5, 5], 6) }, { out: 26 }, opts);
  });
});

describe("pools on Dawn", () => {
  test("padded positions are ignored: max of the valid elements, mean over their count", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [1, 2, 2, 1]);
    const graph = g.build({ max: x.neg().maxPool2d([2, 2], [1, 1], [1, 0, 1, 0]), avg: x.avgPool2d([2, 2], [1, 1], [1, 0, 1, 0]) });
    const inputs = { x: { shape: [1, 2, 2, 1], data: [1, 2, 3, 4] } };
    const want = { max: [-1, -1, -1, -1], avg: [1, 1.5, 2, 2.5] };
    expect(Object.fromEntries(Object.entries(interpret(graph, inputs)).map(([k, v]) => [k, [...v.data]]))).toEqual(want);
    const gpu = await runGpu(graph, inputs);
    expect(Object.fromEntries(Object.entries(gpu).map(([k, v]) => [k, [...v.data]]))).toEqual(want);
  });

  const cases = fc
    .record({
      n: fc.integer({ min: 1, max: 2 }),
      h: fc.integer({ min: 1, max: 9 }),
      w: fc.integer({ min: 1, max: 9 }),
      c: fc.integer({ min: 1, max: 5 }),
      window: fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 })),
      strides: fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 })),
      pad: fc.tuple(fc.nat(2), fc.nat(2), fc.nat(2), fc.nat(2)),
      seed: fc.nat(),
    })
    .map((t) => ({ ...t, padding: t.pad.map((p, i) => Math.min(p, t.window[i >> 1] - 1)) as Pads }))
    .filter((t) => t.h + t.padding[0] + t.padding[1] >= t.window[0] && t.w + t.padding[2] + t.padding[3] >= t.window[1]);

  test("property: max and avg over random windows, strides and padding, symbolic N", async () => {
    await fc.assert(
      fc.asyncProperty(cases, async ({ n, h, w, c, window, strides, padding, seed }) => {
        const g = new GraphBuilder();
        const x = g.input("x", "f32", ["N", h, w, c]);
        const graph = g.build({ max: x.maxPool2d(window, strides, padding), avg: x.avgPool2d(window, strides, padding) });
        await expectWithin(graph, { x: host([n, h, w, c], seed) }, { max: 0, avg: window[0] * window[1] + 1 });
      }),
      { seed: 42, numRuns: 15 },
    );
  });
});
