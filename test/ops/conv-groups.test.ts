/** Grouped and depthwise conv2d (`groups`): the shape rule; the float64 reference against an
 *  independent oracle (each block of channels convolved on its own, then concatenated); the
 *  vjps of conv2d and its two gradient primitives against float64 central differences; and the
 *  three GEMM kernels on Dawn against the reference, with a symbolic batch, on both targets. */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import type { CompileOptions } from "../../compiler/pipeline.ts";
import { concat, GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import { interpret } from "../../src/interpret.ts";
import { parseGraph } from "../../src/ir/parse.ts";
import { printGraph } from "../../src/ir/print.ts";
import type { OpAttrs, Shape } from "../../src/ir/types.ts";
import { host } from "../helpers/data.ts";
import { expectGradOk } from "../helpers/gradcheck.ts";
import { GEMM_TARGETS, runsFor, useGpu } from "../helpers/gpu.ts";
import { expectWithinUlps } from "../helpers/ulps.ts";

useGpu();

type Pair = [number, number];
type Pads = [number, number, number, number];
type ConvAttrs = OpAttrs["conv2d"];

const pair = (max: number) => fc.tuple(fc.integer({ min: 1, max }), fc.integer({ min: 1, max })) as fc.Arbitrary<Pair>;
const outLen = (len: number, k: number, before: number, after: number, s: number, d: number) =>
  Math.floor((len + before + after - d * (k - 1) - 1) / s) + 1;

interface GroupCase {
  attrs: ConvAttrs;
  groups: number;
  x: number[];
  f: number[];
  y: number[];
  seed: number;
}
/** Random grouped convs: g blocks of cg input and cog output channels (depthwise when cg = 1). */
const groupCases = (maxCog: number): fc.Arbitrary<GroupCase> =>
  fc
    .record({
      n: fc.integer({ min: 1, max: 2 }),
      h: fc.integer({ min: 1, max: 7 }),
      w: fc.integer({ min: 1, max: 7 }),
      groups: fc.integer({ min: 1, max: 4 }),
      cg: fc.integer({ min: 1, max: 3 }),
      cog: fc.integer({ min: 1, max: maxCog }),
      k: pair(3),
      strides: pair(2),
      dilations: pair(2),
      padding: fc.tuple(fc.nat(2), fc.nat(2), fc.nat(2), fc.nat(2)) as fc.Arbitrary<Pads>,
      seed: fc.nat(),
    })
    .filter(
      (t) =>
        t.h + t.padding[0] + t.padding[1] > t.dilations[0] * (t.k[0] - 1) &&
        t.w + t.padding[2] + t.padding[3] > t.dilations[1] * (t.k[1] - 1),
    )
    .map((t) => ({
      attrs: { strides: t.strides, padding: t.padding, dilations: t.dilations, ...(t.groups > 1 ? { groups: t.groups } : {}) },
      groups: t.groups,
      seed: t.seed,
      x: [t.n, t.h, t.w, t.groups * t.cg],
      f: [...t.k, t.cg, t.groups * t.cog],
      y: [
        t.n,
        outLen(t.h, t.k[0], t.padding[0], t.padding[1], t.strides[0], t.dilations[0]),
        outLen(t.w, t.k[1], t.padding[2], t.padding[3], t.strides[1], t.dilations[1]),
        t.groups * t.cog,
      ],
    }));

const withN = (s: readonly number[]): Shape => ["N", ...s.slice(1)];
const opts = (c: GroupCase) => ({ ...c.attrs, groups: c.groups });

describe("grouped conv2d: infer and the text IR", () => {
  test("filter [KH, KW, C/g, Cout]; depthwise is g = C", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["N", 8, 8, 6]);
    expect(x.conv2d(g.input("f", "f32", [3, 3, 2, 9]), { groups: 3 }).shape).toEqual(["N", 6, 6, 9]);
    expect(x.conv2d(g.input("d", "f32", [3, 3, 1, 12]), { groups: 6, padding: [1, 1, 1, 1] }).shape).toEqual(["N", 8, 8, 12]);
  });

  test("errors name the groups and the channels", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["N", 8, 8, 6]);
    expect(() => x.conv2d(g.input("f", "f32", [3, 3, 3, 9]), { groups: 3 })).toThrow(
      /^conv2d %\d+ @ conv-groups\.test\.ts:\d+: input channels differ: the input has 6, the filter expects 3, not 2 \(6 \/ groups 3\) \(f32\[N,8,8,6\], f32\[3,3,3,9\]\)$/,
    );
    expect(() => x.conv2d(g.input("f2", "f32", [3, 3, 2, 8]), { groups: 3 })).toThrow(
      /groups 3 must divide the input channels 6 and the output channels 8/,
    );
    expect(() => x.conv2d(g.input("f3", "f32", [3, 3, 1, 6]), { groups: 0 })).toThrow(/groups must be an integer ≥ 1, got 0/);
    const b = new GraphBuilder();
    const dy = b.input("g", "f32", ["N", 6, 6, 9]);
    expect(() =>
      b.add("conv2d_grad_input", [dy, b.input("f", "f32", [3, 3, 2, 9])], {
        strides: [1, 1],
        padding: [0, 0, 0, 0],
        dilations: [1, 1],
        groups: 3,
        shape: ["N", 8, 8, 4],
      }),
    ).toThrow(/groups 3 must divide the input channels 4 and the output channels 9/);
  });

  test("groups = 1 is left out of the node, so an ungrouped conv prints as before; groups round-trips", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [1, 4, 4, 2]);
    const plain = x.conv2d(g.input("f", "f32", [3, 3, 2, 4]), { groups: 1 });
    const grouped = x.conv2d(g.input("h", "f32", [3, 3, 1, 4]), { groups: 2 });
    const graph = g.build({ plain, grouped });
    const text = printGraph(graph);
    expect(text).toContain("conv2d %0, %1 strides=[1,1] padding=[0,0,0,0] dilations=[1,1]   @");
    expect(text).toContain("dilations=[1,1] groups=2   @");
    expect(printGraph(parseGraph(text))).toBe(text);
  });
});

describe("grouped conv2d: the float64 reference", () => {
  test("equals each block of channels convolved on its own, then concatenated", () => {
    fc.assert(
      fc.property(groupCases(3), (c) => {
        const b = new GraphBuilder();
        const x = b.input("x", "f32", c.x);
        const f = b.input("f", "f32", c.f);
        const [cg, cog] = [c.f[2], c.f[3] / c.groups];
        const blocks: Tensor[] = [];
        for (let z = 0; z < c.groups; z++) {
          const xz = x.slice([0, 0, 0, z * cg], [...c.x.slice(0, 3), (z + 1) * cg]);
          const fz = f.slice([0, 0, 0, z * cog], [...c.f.slice(0, 3), (z + 1) * cog]);
          blocks.push(xz.conv2d(fz, { ...c.attrs, groups: 1 }));
        }
        const out = interpret(b.build({ grouped: x.conv2d(f, opts(c)), blocks: concat(blocks, 3) }), {
          x: host(c.x, c.seed),
          f: host(c.f, c.seed + 1),
        });
        expect(out.grouped.shape).toEqual(c.y);
        expect([...out.grouped.data]).toEqual([...out.blocks.data]);
      }),
      { seed: 51, numRuns: 40 },
    );
  });
});

describe("grouped conv2d: vjps against float64 central differences", () => {
  test("conv2d, conv2d_grad_input and conv2d_grad_filter", () => {
    fc.assert(
      fc.property(groupCases(2), (c) => {
        const a = opts(c);
        const inputs = { x: host(c.x, c.seed), f: host(c.f, c.seed + 1) };
        expectGradOk({ inputs, f: (xs) => xs.x.conv2d(xs.f, a) }, 1e-5, { seed: c.seed });
        const gi = (xs: Readonly<Record<string, Tensor>>, b: GraphBuilder) =>
          b.add("conv2d_grad_input", [xs.g, xs.f], { ...c.attrs, shape: c.x });
        expectGradOk({ inputs: { g: host(c.y, c.seed + 2), f: inputs.f }, f: gi }, 1e-5, { seed: c.seed });
        const gf = (xs: Readonly<Record<string, Tensor>>, b: GraphBuilder) =>
          b.add("conv2d_grad_filter", [xs.x, xs.g], { ...c.attrs, shape: c.f });
        expectGradOk({ inputs: { x: inputs.x, g: host(c.y, c.seed + 2) }, f: gf }, 1e-5, { seed: c.seed });
      }),
      { seed: 52, numRuns: 15 },
    );
  });
});

describe.each(GEMM_TARGETS)("grouped conv2d kernels on Dawn (ulps of Σ|terms|), $name", ({ target, share }) => {
  const compileOpts: CompileOptions = { target };

  test("conv2d, symbolic N: a sum of KH·KW·C/g products", async () => {
    await fc.assert(
      fc.asyncProperty(groupCases(5), async (c) => {
        const b = new GraphBuilder();
        const y = b.input("x", "f32", withN(c.x)).conv2d(b.input("f", "f32", c.f), opts(c));
        const ulps = c.f[0] * c.f[1] * c.f[2] + 1;
        await expectWithinUlps(b.build(y), { x: host(c.x, c.seed), f: host(c.f, c.seed + 1) }, ulps, [], compileOpts);
      }),
      { seed: 53, numRuns: runsFor(15, share) },
    );
  });

  test("conv2d_grad_input and conv2d_grad_filter, symbolic N", async () => {
    await fc.assert(
      fc.asyncProperty(groupCases(5), async (c) => {
        const b = new GraphBuilder();
        const gy = b.input("g", "f32", withN(c.y));
        const dx = b.add("conv2d_grad_input", [gy, b.input("f", "f32", c.f)], { ...c.attrs, shape: withN(c.x) });
        const df = b.add("conv2d_grad_filter", [b.input("x", "f32", withN(c.x)), gy], { ...c.attrs, shape: c.f });
        const inputs = { g: host(c.y, c.seed), f: host(c.f, c.seed + 1), x: host(c.x, c.seed + 2) };
        const ulps = Math.max(c.f[0] * c.f[1] * (c.f[3] / c.groups), c.y[0] * c.y[1] * c.y[2]) + 1;
        await expectWithinUlps(b.build({ dx, df }), inputs, ulps, [], compileOpts);
      }),
      { seed: 54, numRuns: runsFor(10, share) },
    );
  });

  test("depthwise 3×3 over 32 channels (MobileNet's block), stride 2, 'same' padding", async () => {
    const b = new GraphBuilder();
    const y = b
      .input("x", "f32", ["N", 9, 9, 32])
      .conv2d(b.input("f", "f32", [3, 3, 1, 32]), { groups: 32, strides: [2, 2], padding: [1, 1, 1, 1] });
    await expectWithinUlps(b.build(y), { x: host([2, 9, 9, 32], 7), f: host([3, 3, 1, 32], 8) }, 10, [], compileOpts);
  });
});

describe("conv2dTranspose: conv2d's input gradient as an op", () => {
  test("is conv2d's adjoint, ⟨conv2dTranspose(h, f), x⟩ = ⟨h, conv2d(x, f)⟩, with output padding; and runs on Dawn", async () => {
    await fc.assert(
      fc.asyncProperty(groupCases(3), fc.tuple(fc.nat(1), fc.nat(1)), async (c, extra) => {
        // output padding below the stride, and rows the forward's floor leaves unread
        const op: Pair = [Math.min(extra[0], c.attrs.strides[0] - 1), Math.min(extra[1], c.attrs.strides[1] - 1)];
        const b = new GraphBuilder();
        const h = b.input("h", "f32", c.y);
        const f = b.input("f", "f32", c.f);
        const t = h.conv2dTranspose(f, { ...opts(c), outputPadding: op });
        const x = b.input("x", "f32", t.shape);
        const lhs = t.mul(x).sum();
        const rhs = h.mul(x.conv2d(f, opts(c)).slice([0, 0, 0, 0], c.y)).sum();
        const xs = t.shape as number[];
        const inputs = { h: host(c.y, c.seed), f: host(c.f, c.seed + 1), x: host(xs, c.seed + 2) };
        const out = interpret(b.build({ lhs, rhs, t }), inputs);
        expect(Math.abs(out.lhs.data[0] - out.rhs.data[0])).toBeLessThanOrEqual(1e-12 * (1 + Math.abs(out.rhs.data[0])));
        expect(xs[1]).toBe(
          (c.y[1] - 1) * c.attrs.strides[0] + c.attrs.dilations[0] * (c.f[0] - 1) + 1 - c.attrs.padding[0] - c.attrs.padding[1] + op[0],
        );
        const g2 = new GraphBuilder();
        const t2 = g2.input("h", "f32", withN(c.y)).conv2dTranspose(g2.input("f", "f32", c.f), { ...opts(c), outputPadding: op });
        await expectWithinUlps(g2.build(t2), { h: inputs.h, f: inputs.f }, c.f[0] * c.f[1] * (c.f[3] / c.groups) + 1);
      }),
      { seed: 55, numRuns: 10 },
    );
  });
});
