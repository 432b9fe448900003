import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { concat, GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import { oneHot } from "../../src/api/composites.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import type { DType, Dim, Shape } from "../../src/ir/types.ts";
import { expectMatchesReference, runGpu, useGpu, type Tolerance } from "../helpers/gpu.ts";

useGpu();

// Movement and gather copy values and compute nothing, and the data are integers below 2^21, so
// the consumers used here (add, neg, mul by 2, eq, select) are exact in f32 too: Dawn must match
// the float64 reference exactly.
const EXACT: Tolerance = { atol: 0, rtol: 0 };

/** Deterministic integers in [lo, hi] (mulberry32): a case is reproducible from its seed. */
function ints(n: number, seed: number, lo: number, hi: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return lo + Math.floor((((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * (hi - lo + 1));
  });
}

const bind = (shape: Shape, b: number): number[] => shape.map((d) => (d === "B" ? b : (d as number)));

/** Random host data for an input of `dtype` and shape (B bound to `b`). */
function host(dtype: DType, shape: Shape, b: number, seed: number): HostTensor {
  const s = bind(shape, b);
  const n = s.reduce((a, d) => a * d, 1);
  return { shape: s, data: dtype === "bool" ? ints(n, seed, 0, 1) : ints(n, seed, -(2 ** 20), 2 ** 20) };
}

const dim = fc.integer({ min: 1, max: 7 });
const batch = fc.integer({ min: 1, max: 9 });
const permOf = (n: number) => fc.shuffledSubarray([...Array(n).keys()], { minLength: n, maxLength: n });
const reversed = (r: number): number[] => [...Array(r).keys()].reverse();

/** A builder with input x: dtype[B, ...dims]. */
function withX(dtype: DType, dims: readonly number[]): { g: GraphBuilder; x: Tensor } {
  const g = new GraphBuilder();
  return { g, x: g.input("x", dtype, ["B", ...dims]) };
}

describe("reshape", () => {
  test("infer: static and symbolic", () => {
    const g = new GraphBuilder();
    expect(g.input("a", "f32", ["B", 16, 5, 5]).reshape(["B", 400]).shape).toEqual(["B", 400]);
    const x = g.input("x", "i32", ["B", 4]);
    expect(x.reshape([4, "B"]).type).toEqual({ dtype: "i32", shape: [4, "B"] });
    expect(x.reshape([2, "B", 1, 2]).shape).toEqual([2, "B", 1, 2]);
    expect(() => x.reshape([8, "B"])).toThrow(
      /reshape %\d+ @ movement\.test\.ts:\d+: reshape to \[8,B\] changes the element count: 8\*B vs 4\*B \(i32\[B,4\]\)/,
    );
    expect(() => x.reshape(["C", 4])).toThrow(/changes the element count: 4\*C vs 4\*B/);
    expect(() => x.reshape([-1, 4])).toThrow(/reshape: bad shape \[-1,4\]/);
  });
});

describe("permute", () => {
  test("infer", () => {
    const x = new GraphBuilder().input("x", "f32", ["B", 3, 5]);
    expect(x.permute([2, 0, 1]).shape).toEqual([5, "B", 3]);
    expect(x.permute([-1, 0, 1]).shape).toEqual([5, "B", 3]);
    expect(x.transpose().shape).toEqual(["B", 5, 3]);
    expect(() => x.permute([0, 0, 1])).toThrow(/permute: perm \[0,0,1\] is not a permutation of the 3 axes \(f32\[B,3,5\]\)/);
    expect(() => x.permute([1, 0])).toThrow(/perm \[1,0\] is not a permutation of the 3 axes/);
    expect(() => x.permute([0, 1, 3])).toThrow(/perm \[0,1,3\] is not a permutation/);
  });
});

describe("reshape and permute on Dawn", () => {
  // x:[B, ...ds] is permuted, then reshaped to the static dims in another order, some merged,
  // with B anywhere: as graph outputs and inlined into an add.
  const cases = fc.array(dim, { minLength: 1, maxLength: 3 }).chain((ds) =>
    fc.record({
      ds: fc.constant(ds),
      perm: permOf(ds.length + 1),
      order: permOf(ds.length),
      merge: fc.array(fc.boolean(), { minLength: ds.length, maxLength: ds.length }),
      bAt: fc.nat(ds.length),
      b: batch,
      seed: fc.nat(),
    }),
  );

  test("property: matches the reference exactly", async () => {
    await fc.assert(
      fc.asyncProperty(cases, async ({ ds, perm, order, merge, bAt, b, seed }) => {
        const target: Dim[] = [];
        order.forEach((i, k) =>
          k > 0 && merge[k] ? (target[target.length - 1] = (target[target.length - 1] as number) * ds[i]) : target.push(ds[i]),
        );
        target.splice(Math.min(bAt, target.length), 0, "B");
        const { g, x } = withX("f32", ds);
        const y = g.input("y", "f32", target);
        const graph = g.build({ r: x.reshape(target), p: x.permute(perm), s: x.permute(perm).reshape(target).add(y) });
        await expectMatchesReference(graph, { x: host("f32", ["B", ...ds], b, seed), y: host("f32", target, b, seed + 1) }, EXACT);
      }),
      { seed: 42, numRuns: 20 },
    );
  });

  test("a movement chain is inlined into its consumer: one kernel, no copies", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 3, 4]);
    const y = g.input("y", "f32", [4, "B", 3]);
    const p = compile(g.build({ s: x.permute([2, 0, 1]).reshape([4, "B", 3]).add(y) }));
    expect(p.kernels).toHaveLength(1);
    expect(p.buffers.map((b) => b.role)).toEqual(["input", "input", "temp"]);
  });
});

describe("expand", () => {
  test("infer", () => {
    const g = new GraphBuilder();
    expect(g.input("a", "f32", [3, 1]).expand(["B", 3, 4]).shape).toEqual(["B", 3, 4]);
    const x = g.input("x", "f32", ["B", 1]);
    expect(x.expand([2, "B", 6]).shape).toEqual([2, "B", 6]);
    expect(() => g.input("c", "f32", [3, 2]).expand([3, 4])).toThrow(
      /expand to \[3,4\]: input axis 1 \(2\) is neither 1 nor 4 \(f32\[3,2\]\)/,
    );
    expect(() => x.expand(["C", 1])).toThrow(/expand to \[C,1\]: input axis 0 \(B\) is neither 1 nor C/);
    expect(() => x.expand([6])).toThrow(/expand to \[6\]: the target has fewer axes than the input/);
  });

  // Target [lead..., B?, ts...]; each input axis keeps the target's dim or is 1.
  const cases = fc.array(dim, { minLength: 1, maxLength: 3 }).chain((ts) =>
    fc.record({
      ts: fc.constant(ts),
      lead: fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 2 }),
      keep: fc.array(fc.boolean(), { minLength: ts.length + 1, maxLength: ts.length + 1 }),
      b: batch,
      seed: fc.nat(),
    }),
  );

  test("property: Dawn matches the reference exactly", async () => {
    await fc.assert(
      fc.asyncProperty(cases, async ({ ts, lead, keep, b, seed }) => {
        const inner: Dim[] = ["B", ...ts];
        const target = [...lead, ...inner];
        const inShape = inner.map((d, i) => (keep[i] ? d : 1));
        const g = new GraphBuilder();
        const x = g.input("x", "i32", inShape);
        const y = g.input("y", "i32", target);
        const graph = g.build({
          e: x.expand(target),
          s: x
            .expand(target)
            .permute(reversed(target.length))
            .add(y.permute(reversed(target.length))),
        });
        await expectMatchesReference(graph, { x: host("i32", inShape, b, seed), y: host("i32", target, b, seed + 1) }, EXACT);
      }),
      { seed: 42, numRuns: 15 },
    );
  });
});

describe("slice", () => {
  test("infer", () => {
    const x = new GraphBuilder().input("x", "f32", ["B", 10, 7]);
    expect(x.slice([0, 1, 0], ["B", 9, 7], [1, 3, 2]).shape).toEqual(["B", 3, 4]);
    expect(x.slice([0, 4, 7], ["B", 4, 7]).shape).toEqual(["B", 0, 0]);
    expect(() => x.slice([1, 0, 0], ["B", 10, 7])).toThrow(
      /slice: axis 0 is symbolic \(B\); only the full range 0:B:1 is allowed, got 1:B:1 \(f32\[B,10,7\]\)/,
    );
    expect(() => x.slice([0, 0, 0], ["B", "B", 7])).toThrow(/slice: axis 1 has a symbolic end B, but its dim is 10/);
    expect(() => x.slice([0, 0, 0], ["B", 11, 7])).toThrow(/slice: axis 1 needs 0 ≤ begin ≤ end ≤ 10 and stride ≥ 1, got 0:11:1/);
    expect(() => x.slice([0, 5, 0], ["B", 4, 7])).toThrow(/got 5:4:1/);
    expect(() => x.slice([0, 0, 0], ["B", 4, 7], [1, 0, 1])).toThrow(/got 0:4:0/);
    expect(() => x.slice([0, 0], ["B", 4])).toThrow(/slice: begin, end and stride need one entry per axis \(3\), got 2, 2, 2/);
  });

  const cases = fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 3 }).chain((ds) =>
    fc.record({
      ds: fc.constant(ds),
      ranges: fc.tuple(...ds.map((d) => fc.tuple(fc.nat(d), fc.nat(d), fc.integer({ min: 1, max: 3 })))),
      b: batch,
      seed: fc.nat(),
    }),
  );

  test("property: Dawn matches the reference exactly, empty slices included", async () => {
    await fc.assert(
      fc.asyncProperty(cases, async ({ ds, ranges, b, seed }) => {
        const begin = [0, ...ranges.map(([p, q]) => Math.min(p, q))];
        const end: Dim[] = ["B", ...ranges.map(([p, q]) => Math.max(p, q))];
        const stride = [1, ...ranges.map(([, , s]) => s)];
        const { g, x } = withX("f32", ds);
        const s = x.slice(begin, end, stride);
        const graph = g.build({ s, t: s.permute(reversed(s.rank)).neg() });
        await expectMatchesReference(graph, { x: host("f32", ["B", ...ds], b, seed) }, EXACT);
      }),
      { seed: 42, numRuns: 15 },
    );
  });
});

describe("pad", () => {
  test("infer", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 3, 4]);
    expect(x.pad([0, 1, 2], [0, 0, 3]).shape).toEqual(["B", 4, 9]);
    expect(() => x.pad([1, 0, 0], [0, 0, 0])).toThrow(/pad: axis 0 is symbolic \(B\) and cannot be padded \(f32\[B,3,4\]\)/);
    expect(() => x.pad([0, -1, 0], [0, 0, 0])).toThrow(/pad: padding must be non-negative integers, got before \[0,-1,0\] after \[0,0,0\]/);
    expect(() => x.pad([0, 1], [0, 1])).toThrow(/pad: before and after need one entry per axis \(3\), got 2 and 2/);
    expect(() => g.input("i", "i32", [3]).pad([1], [1], 0.5)).toThrow(/pad: value 0.5 is not a i32/);
    expect(() => g.input("u", "u32", [3]).pad([1], [1], -1)).toThrow(/pad: value -1 is not a u32/);
    expect(() => g.input("c", "bool", [3]).pad([1], [1], 2)).toThrow(/pad: value 2 is not a bool \(0 or 1\)/);
  });

  const pads = (n: number) => fc.array(fc.integer({ min: 0, max: 3 }), { minLength: n, maxLength: n });
  const cases = fc.array(fc.integer({ min: 0, max: 6 }), { minLength: 1, maxLength: 3 }).chain((ds) =>
    fc.record({
      ds: fc.constant(ds),
      dtype: fc.constantFrom<DType>("f32", "i32", "bool"),
      p1: fc.tuple(pads(ds.length), pads(ds.length)),
      p2: fc.tuple(pads(ds.length), pads(ds.length)),
      value: fc.oneof(fc.integer({ min: -100, max: 100 }), fc.constantFrom(0.5, -Infinity, NaN)),
      b: batch,
      seed: fc.nat(),
    }),
  );

  test("property: Dawn matches the reference exactly, as output, chained and under a select", async () => {
    await fc.assert(
      fc.asyncProperty(cases, async ({ ds, dtype, p1, p2, value, b, seed }) => {
        const v = dtype === "bool" ? Math.abs(value % 2) | 0 : dtype === "i32" && !Number.isInteger(value) ? 7 : value;
        const { g, x } = withX(dtype, ds);
        const padded = x.pad([0, ...p1[0]], [0, ...p1[1]], v);
        const z = g.input("z", dtype, padded.shape);
        const c = g.input("c", "bool", padded.shape);
        const graph = g.build({ padded, chain: padded.pad([0, ...p2[0]], [0, ...p2[1]], v), sel: c.select(padded, z) });
        const inputs = { x: host(dtype, x.shape, b, seed), z: host(dtype, z.shape, b, seed + 1), c: host("bool", c.shape, b, seed + 2) };
        await expectMatchesReference(graph, inputs, EXACT);
      }),
      { seed: 42, numRuns: 20 },
    );
  });
});

describe("concat", () => {
  test("infer", () => {
    const g = new GraphBuilder();
    const [a, b, c] = [2, 3, 1].map((k, i) => g.input(`x${i}`, "f32", ["B", k]));
    expect(concat([a, b, c], 1).shape).toEqual(["B", 6]);
    expect(concat([a, b], -1).shape).toEqual(["B", 5]);
    expect(concat([a], 0).shape).toEqual(["B", 2]);
    expect(() => concat([a, a], 0)).toThrow(/concat: several inputs need static dims on axis 0, got \[B,B\] \(f32\[B,2\], f32\[B,2\]\)/);
    expect(() => concat([a, b], 0)).toThrow(/concat: dims differ on axis 1 \(only the concat axis 0 may differ\)/);
    expect(() => concat([a, g.input("i", "i32", ["B", 2])], 1)).toThrow(/concat: dtypes differ; cast explicitly/);
    expect(() => concat([a, g.input("r", "f32", [2])], 0)).toThrow(/concat: ranks differ/);
    expect(() => concat([a, b], 2)).toThrow(/concat: axis 2 out of range for rank 2/);
    expect(() => concat([], 0)).toThrow(/concat needs at least one tensor/);
  });

  // 1–5 inputs [B, k_i, m] or [B, m, k_i] (k_i may be 0), as output and inlined into an add.
  const cases = fc.record({
    ks: fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 1, maxLength: 5 }),
    m: dim,
    axis: fc.constantFrom(1, 2),
    dtype: fc.constantFrom<DType>("f32", "i32"),
    b: batch,
    seed: fc.nat(),
  });

  test("property: Dawn matches the reference exactly", async () => {
    await fc.assert(
      fc.asyncProperty(cases, async ({ ks, m, axis, dtype, b, seed }) => {
        const g = new GraphBuilder();
        const xs = ks.map((k, i) => g.input(`x${i}`, dtype, axis === 1 ? ["B", k, m] : ["B", m, k]));
        const joined = concat(xs, axis);
        const y = g.input("y", dtype, joined.shape);
        const graph = g.build({ joined, sum: joined.add(y) });
        const inputs = Object.fromEntries([...xs, y].map((t, i) => [i < xs.length ? `x${i}` : "y", host(dtype, t.shape, b, seed + i)]));
        await expectMatchesReference(graph, inputs, EXACT);
      }),
      { seed: 42, numRuns: 20 },
    );
  });

  test("one input on a symbolic axis is the identity", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 3]);
    await expectMatchesReference(g.build({ c: concat([x], 0).neg() }), { x: host("f32", ["B", 3], 5, 1) }, EXACT);
  });

  test("wide concat: 12 inputs, more than a kernel may bind, as a graph output and inlined", async () => {
    const g = new GraphBuilder();
    const xs = Array.from({ length: 12 }, (_, i) => g.input(`x${i}`, "f32", ["B", (i % 4) + 1]));
    const joined = concat(xs, 1);
    const graph = g.build({ joined, doubled: joined.mul(2) });
    await expectMatchesReference(graph, Object.fromEntries(xs.map((t, i) => [`x${i}`, host("f32", t.shape, 70, i)])), EXACT);
  });
});

describe("gather", () => {
  test("infer", () => {
    const g = new GraphBuilder();
    const table = g.input("table", "f32", ["V", 4]);
    const idx = g.input("idx", "i32", ["B", "T"]);
    expect(table.gather(idx).shape).toEqual(["B", "T", 4]);
    expect(g.input("t3", "f32", [3, 10, 5]).gather(g.input("i1", "i32", ["B"]), 1).shape).toEqual([3, "B", 5]);
    expect(table.gather(g.input("i0", "i32", []), -1).shape).toEqual(["V"]);
    expect(() => table.gather(g.input("f", "f32", [3]))).toThrow(/gather: indices must be i32, got f32 \(f32\[V,4\], f32\[3\]\)/);
    expect(() => g.input("s", "f32", []).gather(idx)).toThrow(/gather: axis 0 out of range for a table of rank 0/);
    expect(() => table.gather(idx, 2)).toThrow(/gather: axis 2 out of range for a table of rank 2/);
  });

  test("the reference rejects an out-of-range index, naming it", () => {
    const g = new GraphBuilder();
    const graph = g.build({ r: g.input("t", "f32", [4, 2]).gather(g.input("i", "i32", [2, 2])) });
    const run = (i: number[]) => interpret(graph, { t: { shape: [4, 2], data: [...Array(8).keys()] }, i: { shape: [2, 2], data: i } });
    expect(() => run([0, 1, 4, 2])).toThrow(/gather: index 4 at position \[1,0\] of the indices is out of range for dim 4 \(axis 0\)/);
    expect(() => run([0, -1, 3, 2])).toThrow(/index -1 at position \[0,1\]/);
    expect(run([3, 1, 0, 0]).r.data.slice(0, 4)).toEqual(Float64Array.from([6, 7, 2, 3]));
  });

  test("on Dawn an out-of-range index reads 0 and never faults", async () => {
    const g = new GraphBuilder();
    const table = g.input("t", "i32", [4, 2]);
    const i = g.input("i", "i32", [6]);
    const out = await runGpu(g.build({ r: table.gather(i), s: table.gather(i).add(1) }), {
      t: { shape: [4, 2], data: [10, 11, 12, 13, 14, 15, 16, 17] },
      i: { shape: [6], data: [-1, 0, 4, 3, 2147483647, -2147483648] },
    });
    expect([...out.r.data]).toEqual([0, 0, 10, 11, 0, 0, 16, 17, 0, 0, 0, 0]);
    expect([...out.s.data]).toEqual([1, 1, 11, 12, 1, 1, 17, 18, 1, 1, 1, 1]);
  });

  test("property: rows of a [V, D] table by i32[B, T] indices", async () => {
    const cases = fc.record({ v: fc.integer({ min: 1, max: 40 }), d: dim, t: fc.integer({ min: 1, max: 5 }), b: batch, seed: fc.nat() });
    await fc.assert(
      fc.asyncProperty(cases, async ({ v, d, t, b, seed }) => {
        const g = new GraphBuilder();
        const table = g.input("table", "f32", [v, d]);
        const idx = g.input("idx", "i32", ["B", t]);
        const graph = g.build({ rows: table.gather(idx), twice: table.gather(idx).mul(2) });
        await expectMatchesReference(
          graph,
          { table: host("f32", [v, d], b, seed), idx: { shape: [b, t], data: ints(b * t, seed + 1, 0, v - 1) } },
          EXACT,
        );
      }),
      { seed: 42, numRuns: 15 },
    );
  });

  test("property: any axis, indices of rank 0–2", async () => {
    const cases = fc.array(dim, { minLength: 1, maxLength: 3 }).chain((ts) =>
      fc.record({
        ts: fc.constant(ts),
        axis: fc.nat(ts.length - 1),
        is: fc.array(fc.integer({ min: 1, max: 4 }), { maxLength: 2 }),
        seed: fc.nat(),
      }),
    );
    await fc.assert(
      fc.asyncProperty(cases, async ({ ts, axis, is, seed }) => {
        const g = new GraphBuilder();
        const table = g.input("table", "i32", ts);
        const idx = g.input("idx", "i32", is);
        const n = is.reduce((a, k) => a * k, 1);
        const graph = g.build({ r: table.gather(idx, axis) });
        await expectMatchesReference(
          graph,
          { table: host("i32", ts, 1, seed), idx: { shape: is, data: ints(n, seed + 1, 0, ts[axis] - 1) } },
          EXACT,
        );
      }),
      { seed: 42, numRuns: 15 },
    );
  });
});

describe("oneHot", () => {
  test("shape and errors", () => {
    const g = new GraphBuilder();
    const idx = g.input("idx", "i32", ["B", 3]);
    expect(oneHot(idx, 5).type).toEqual({ dtype: "f32", shape: ["B", 3, 5] });
    expect(oneHot(idx, 2, "bool").type).toEqual({ dtype: "bool", shape: ["B", 3, 2] });
    expect(() => oneHot(g.input("f", "f32", [3]), 4)).toThrow(/oneHot: indices must be i32, got f32/);
    expect(() => oneHot(idx, 0)).toThrow(/oneHot: depth must be a positive integer, got 0/);
  });

  test("property: Dawn matches the reference exactly, out-of-range indices give zero rows", async () => {
    const cases = fc.record({
      depth: dim,
      t: fc.integer({ min: 1, max: 5 }),
      dtype: fc.constantFrom<DType>("f32", "i32", "bool"),
      b: batch,
      seed: fc.nat(),
    });
    await fc.assert(
      fc.asyncProperty(cases, async ({ depth, t, dtype, b, seed }) => {
        const g = new GraphBuilder();
        const idx = g.input("idx", "i32", ["B", t]);
        const inputs = { idx: { shape: [b, t], data: ints(b * t, seed, -1, depth) } };
        const graph = g.build({ h: oneHot(idx, depth, dtype) });
        const ref = interpret(graph, inputs).h;
        // Every row holds one 1 exactly when its index is in range: the reference is not vacuous.
        inputs.idx.data.forEach((j, r) =>
          expect(ref.data.slice(r * depth, (r + 1) * depth).reduce((a, x) => a + x, 0)).toBe(j >= 0 && j < depth ? 1 : 0),
        );
        await expectMatchesReference(graph, inputs, EXACT);
      }),
      { seed: 42, numRuns: 15 },
    );
  });
});
