import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { concat, GraphBuilder } from "../../src/api/builder.ts";
import { grad } from "../../src/api/grad.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import type { Dim, Shape } from "../../src/ir/types.ts";
import { host } from "../helpers/data.ts";
import { buildGradGraph, expectGradOk, type GradSpec } from "../helpers/gradcheck.ts";
import { expectMatchesReference, useGpu, type Tolerance } from "../helpers/gpu.ts";

useGpu();

// Movement ops are linear and have no kinks: any values do, and the float64 check is exact up to
// rounding. On Dawn the backward graph only copies values, except where cotangents are summed
// (expand's sumTo, gather's matmul, a value used twice): a few f32 roundings of sums of |u| ≤ 1.
const TOL: Tolerance = { atol: 1e-5, rtol: 1e-5 };
const RUNS = { numRuns: 25 };

const dims = (min: number) => fc.array(fc.integer({ min, max: 5 }), { minLength: 1, maxLength: 3 });
const permOf = (n: number) => fc.shuffledSubarray([...Array(n).keys()], { minLength: n, maxLength: n });
const indices = (shape: readonly number[], lo: number, hi: number, seed: number): HostTensor & { dtype: "i32" } => ({
  dtype: "i32",
  shape,
  data: Array.from(host(shape, seed).data, (v) => lo + Math.min(hi - lo, Math.floor(((v + 1) / 2) * (hi - lo + 1)))),
});

/** The gradient graph on Dawn against the float64 reference, at the data's bound dims. */
async function onDawn(spec: GradSpec): Promise<void> {
  await expectMatchesReference(buildGradGraph(spec).graph, { ...spec.inputs, ...spec.fixed }, TOL);
}

describe("movement vjp matches central differences (float64)", () => {
  test("reshape: to the dims in another order, some merged", () => {
    const arb = dims(1).chain((ds) =>
      fc.record({
        ds: fc.constant(ds),
        order: permOf(ds.length),
        merge: fc.array(fc.boolean(), { minLength: ds.length, maxLength: ds.length }),
        seed: fc.nat(),
      }),
    );
    fc.assert(
      fc.property(arb, ({ ds, order, merge, seed }) => {
        const target: number[] = [];
        order.forEach((i, k) => (k > 0 && merge[k] ? (target[target.length - 1] *= ds[i]) : target.push(ds[i])));
        expectGradOk({ inputs: { x: host(ds, seed) }, f: ({ x }) => x.reshape(target) });
      }),
      { seed: 1, ...RUNS },
    );
  });

  test("permute", () => {
    const arb = dims(1).chain((ds) => fc.record({ ds: fc.constant(ds), perm: permOf(ds.length), seed: fc.nat() }));
    fc.assert(
      fc.property(arb, ({ ds, perm, seed }) => {
        expectGradOk({ inputs: { x: host(ds, seed) }, f: ({ x }) => x.permute(perm) });
      }),
      { seed: 2, ...RUNS },
    );
  });

  test("expand: size-1 dims stretched and new leading axes", () => {
    const arb = dims(2).chain((ts) =>
      fc.record({
        ts: fc.constant(ts),
        lead: fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 2 }),
        keep: fc.array(fc.boolean(), { minLength: ts.length, maxLength: ts.length }),
        seed: fc.nat(),
      }),
    );
    fc.assert(
      fc.property(arb, ({ ts, lead, keep, seed }) => {
        const inShape = ts.map((d, i) => (keep[i] ? d : 1));
        expectGradOk({ inputs: { x: host(inShape, seed) }, f: ({ x }) => x.expand([...lead, ...ts]) });
      }),
      { seed: 3, ...RUNS },
    );
  });

  test("slice: strides 1–3, empty slices included", () => {
    const arb = fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 3 }).chain((ds) =>
      fc.record({
        ds: fc.constant(ds),
        ranges: fc.tuple(...ds.map((d) => fc.tuple(fc.nat(d), fc.nat(d), fc.integer({ min: 1, max: 3 })))),
        seed: fc.nat(),
      }),
    );
    fc.assert(
      fc.property(arb, ({ ds, ranges, seed }) => {
        const begin = ranges.map(([p, q]) => Math.min(p, q));
        const end = ranges.map(([p, q]) => Math.max(p, q));
        expectGradOk({
          inputs: { x: host(ds, seed) },
          f: ({ x }) =>
            x.slice(
              begin,
              end,
              ranges.map(([, , s]) => s),
            ),
        });
      }),
      { seed: 4, ...RUNS },
    );
  });

  test("pad: the padding value gets no gradient", () => {
    const pads = (n: number) => fc.array(fc.integer({ min: 0, max: 3 }), { minLength: n, maxLength: n });
    const arb = dims(1).chain((ds) =>
      fc.record({
        ds: fc.constant(ds),
        before: pads(ds.length),
        after: pads(ds.length),
        value: fc.integer({ min: -5, max: 5 }),
        seed: fc.nat(),
      }),
    );
    fc.assert(
      fc.property(arb, ({ ds, before, after, value, seed }) => {
        expectGradOk({ inputs: { x: host(ds, seed) }, f: ({ x }) => x.pad(before, after, value) });
      }),
      { seed: 5, ...RUNS },
    );
  });

  test("concat: 1–3 inputs, sizes 0–3 on the axis, one input used twice", () => {
    const arb = dims(1).chain((ds) =>
      fc.record({
        ds: fc.constant(ds),
        axis: fc.nat(ds.length - 1),
        sizes: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 3 }),
        seed: fc.nat(),
      }),
    );
    fc.assert(
      fc.property(arb, ({ ds, axis, sizes, seed }) => {
        const inputs = Object.fromEntries(
          sizes.map((s, k) => [
            `x${k}`,
            host(
              ds.map((d, ax) => (ax === axis ? s : d)),
              seed + k,
            ),
          ]),
        );
        expectGradOk({ inputs, f: (xs) => concat([...sizes.map((_, k) => xs[`x${k}`]), xs.x0], axis) });
      }),
      { seed: 6, ...RUNS },
    );
  });

  // Indices in range only: the reference rejects others (they are tested below). Few table rows
  // and several indices make repeats, whose cotangents must add up.
  test("gather: any axis, indices of rank 0–2 with repeats", () => {
    const arb = dims(1).chain((ds) =>
      fc.record({
        ds: fc.constant(ds),
        axis: fc.nat(ds.length - 1),
        is: fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 2 }),
        seed: fc.nat(),
      }),
    );
    fc.assert(
      fc.property(arb, ({ ds, axis, is, seed }) => {
        expectGradOk({
          inputs: { t: host(ds, seed) },
          fixed: { i: indices(is, 0, ds[axis] - 1, seed + 1) },
          f: ({ t, i }) => t.gather(i, axis),
        });
      }),
      { seed: 7, ...RUNS },
    );
  });
});

describe("gather vjp: symbolic dims and out-of-range indices", () => {
  const t = host([5, 3], 1);
  const i23 = indices([2, 3], 0, 4, 2);

  // Symbolic dims among the indices (summed batch dims of the matmul), before the axis (batch
  // dims), after it (moved back into place), and on the axis itself (a symbolic one-hot depth).
  test.each<[string, Readonly<Record<string, Shape>>, GradSpec]>([
    ["indices [B,3]", { i: ["B", 3] }, { inputs: { t }, fixed: { i: i23 }, f: ({ t, i }) => t.gather(i, 0) }],
    ["indices [2,T]", { i: [2, "T"] }, { inputs: { t }, fixed: { i: i23 }, f: ({ t, i }) => t.gather(i, 0) }],
    [
      "table [B,5,3] on axis 1",
      { t: ["B", 5, 3] },
      { inputs: { t: host([2, 5, 3], 3) }, fixed: { i: indices([4], 0, 4, 4) }, f: ({ t, i }) => t.gather(i, 1) },
    ],
    [
      "table [5,B,3], indices [3,C]",
      { t: [5, "B", 3], i: [3, "C"] },
      { inputs: { t: host([5, 2, 3], 5) }, fixed: { i: indices([3, 2], 0, 4, 6) }, f: ({ t, i }) => t.gather(i, 0) },
    ],
    ["table [V,3], indices [B,3]", { t: ["V", 3], i: ["B", 3] }, { inputs: { t }, fixed: { i: i23 }, f: ({ t, i }) => t.gather(i, 0) }],
    [
      "table [B,4], indices [B]",
      { t: ["B", 4], i: ["B"] },
      { inputs: { t: host([3, 4], 7) }, fixed: { i: indices([3], 0, 3, 8) }, f: ({ t, i }) => t.gather(i, 1) },
    ],
  ])("%s", (_name, shapes, spec) => {
    expectGradOk({ ...spec, shapes });
  });

  test("an out-of-range index gets no gradient, in the reference and on Dawn", async () => {
    const g = new GraphBuilder();
    const table = g.input("t", "f32", [4, 2]);
    const idx = g.input("i", "i32", ["B"]);
    const u = g.input("u", "f32", ["B", 2]);
    // The cotangent needs no forward value, so the reference runs though gather would reject these.
    const [dt] = grad(table.gather(idx).mul(u).sum(), [table]);
    const graph = g.build({ dt });
    const inputs = {
      t: host([4, 2], 9),
      i: { shape: [5], data: [1, -1, 4, 1, 99] },
      u: { shape: [5, 2], data: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] },
    };
    expect(Array.from(interpret(graph, inputs).dt.data)).toEqual([0, 0, 8, 10, 0, 0, 0, 0]);
    await expectMatchesReference(graph, inputs, { atol: 0, rtol: 0 });
  });
});

describe("movement vjp on Dawn, with a symbolic batch", () => {
  const B = (shape: readonly Dim[]) => ["B", ...shape];
  test.each<[string, Readonly<Record<string, Shape>>, GradSpec]>([
    ["reshape", { x: B([3, 4]) }, { inputs: { x: host([2, 3, 4], 1) }, f: ({ x }) => x.reshape([4, "B", 3]) }],
    ["permute", { x: B([3, 4]) }, { inputs: { x: host([3, 3, 4], 2) }, f: ({ x }) => x.permute([2, 0, 1]) }],
    ["expand", { x: B([1, 3]) }, { inputs: { x: host([2, 1, 3], 3) }, f: ({ x }) => x.expand([2, "B", 4, 3]) }],
    ["slice", { x: B([7, 5]) }, { inputs: { x: host([2, 7, 5], 4) }, f: ({ x }) => x.slice([0, 1, 0], ["B", 7, 4], [1, 3, 2]) }],
    ["pad", { x: B([3, 2]) }, { inputs: { x: host([3, 3, 2], 5) }, f: ({ x }) => x.pad([0, 2, 0], [0, 1, 3], 7) }],
    ["concat", { x: B([2]), y: B([3]) }, { inputs: { x: host([2, 2], 6), y: host([2, 3], 7) }, f: ({ x, y }) => concat([y, x, y], 1) }],
    [
      "gather, indices [B,3]",
      { i: B([3]) },
      { inputs: { t: host([6, 4], 8) }, fixed: { i: indices([2, 3], 0, 5, 9) }, f: ({ t, i }) => t.gather(i, 0) },
    ],
    [
      "gather, table [B,5,2] on axis 1",
      { t: B([5, 2]) },
      { inputs: { t: host([3, 5, 2], 10) }, fixed: { i: indices([4], 0, 4, 11) }, f: ({ t, i }) => t.gather(i, 1) },
    ],
  ])("%s", async (_name, shapes, spec) => {
    await onDawn({ ...spec, shapes });
  });

  test("a 300-row table, so the matmul takes whole tiles", async () => {
    await onDawn({
      inputs: { t: host([300, 70], 12) },
      fixed: { i: indices([4, 33], 0, 299, 13) },
      shapes: { i: ["B", 33] },
      f: ({ t, i }) => t.gather(i, 0),
    });
  });
});
