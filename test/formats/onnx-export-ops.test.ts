/** Every primitive exports, and ONNX Runtime computes what Kiln's float64 reference does:
 *  exactly for integers and bools, within 1e-5 absolute + 1e-5 relative for f32. Each case
 *  covers the edges Kiln defines (integer ÷ 0 and MIN ÷ −1, casts of NaN and of out-of-range
 *  floats, u32 wrap-around, empty axes, ties in argmax) and a symbolic batch where the op
 *  allows one. */
import { describe, expect, test } from "vitest";
import { concat, GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import type { DType, Shape } from "../../src/ir/types.ts";
import { exportOnnx } from "../../formats/onnx/export.ts";
import { floats } from "../helpers/data.ts";
import { agreement, ORT_TOL, runOrt } from "../helpers/ort.ts";

interface Case {
  readonly name: string;
  /** Inputs: declared dtype and shape (with "B"), and the values, bound at B = 3 unless the shape says. */
  readonly inputs: Readonly<Record<string, { dtype: DType; shape: Shape; data: readonly number[] }>>;
  readonly build: (x: Record<string, Tensor>) => Record<string, Tensor>;
}

const I32_MIN = -2147483648;
const F = (n: number, seed: number, scale = 2) => floats(n, seed).map((v) => Math.fround(v * scale));
const f32 = (shape: Shape, data: readonly number[]) => ({ dtype: "f32" as const, shape, data });
const i32 = (shape: Shape, data: readonly number[]) => ({ dtype: "i32" as const, shape, data });
const u32 = (shape: Shape, data: readonly number[]) => ({ dtype: "u32" as const, shape, data });
const bool = (shape: Shape, data: readonly number[]) => ({ dtype: "bool" as const, shape, data });

const positive = f32(["B", 4], [0.25, 1, 2, 9, 0.5, 3, 4, 16, 1e-3, 7, 100, 0.75]);
const mixed = f32(["B", 4], [-2.5, -1, -0.5, 0, 0.5, 1, 1.5, 2.5, -3.7, 3.7, 1e-3, -1e-3]);

const UNARY_F32 = ["neg", "abs", "sign", "exp", "sin", "cos", "tanh", "sigmoid", "relu", "floor", "ceil"] as const;
const UNARY_POS = ["log", "sqrt", "rsqrt", "recip"] as const;
const BINARY = ["add", "sub", "mul", "div", "mod", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge"] as const;

const intA = [7, -7, 7, -7, 0, 5, I32_MIN, I32_MIN, 2147483647, 3, -9, 12];
const intB = [2, 2, -2, -2, 3, 0, -1, 1, -1, 0, 4, -5];
const uA = [7, 4294967295, 0, 5, 4294967295, 100, 3, 2147483648, 1, 9, 4000000000, 12];
const uB = [2, 1, 5, 0, 4294967295, 7, 0, 2, 4294967295, 3, 3000000000, 12];

const cases: Case[] = [
  ...UNARY_F32.map((op): Case => ({ name: `${op} f32`, inputs: { x: mixed }, build: ({ x }) => ({ y: x[op]() }) })),
  ...UNARY_POS.map((op): Case => ({ name: `${op} f32`, inputs: { x: positive }, build: ({ x }) => ({ y: x[op]() }) })),
  ...(["neg", "abs", "sign", "relu"] as const).map(
    (op): Case => ({ name: `${op} i32`, inputs: { x: i32(["B", 4], intA) }, build: ({ x }) => ({ y: x[op]() }) }),
  ),
  {
    name: "pow f32, stop_gradient",
    inputs: { a: positive, b: f32([4], [0.5, 2, -1, 3]) },
    build: ({ a, b }) => ({ y: a.pow(b).stopGradient() }),
  },
  ...BINARY.map(
    (op): Case => ({
      name: `${op} f32, broadcast`,
      inputs: { a: mixed, b: f32([4], [1.5, -0.5, 2, -3]) },
      build: ({ a, b }) => ({ y: a[op](b) }),
    }),
  ),
  ...BINARY.map(
    (op): Case => ({
      name: `${op} i32`,
      inputs: { a: i32(["B", 4], intA), b: i32(["B", 4], intB) },
      build: ({ a, b }) => ({ y: a[op](b) }),
    }),
  ),
  ...BINARY.map(
    (op): Case => ({ name: `${op} u32`, inputs: { a: u32(["B", 4], uA), b: u32(["B", 4], uB) }, build: ({ a, b }) => ({ y: a[op](b) }) }),
  ),
  {
    name: "NaN: max, min, reduce max/min propagate it, comparisons are false, ne is true",
    inputs: { a: f32([2, 3], [NaN, 1, NaN, 2, -1, 0]), b: f32([3], [0, NaN, 5]) },
    build: ({ a, b }) => ({ max: a.maximum(b), min: a.minimum(b), rmax: a.max(1), rmin: a.min(1), lt: a.lt(b), ne: a.ne(b), eq: a.eq(b) }),
  },
  {
    name: "and, or, not, eq, ne bool",
    inputs: { a: bool([2, 2], [0, 0, 1, 1]), b: bool([2], [0, 1]) },
    build: ({ a, b }) => ({ and: a.and(b), or: a.or(b), not: a.not(), eq: a.eq(b), ne: a.ne(b) }),
  },
  ...(["f32", "i32", "u32", "bool"] as const).map(
    (d): Case => ({
      name: `select, ${d} branches`,
      inputs: {
        c: bool(["B"], [1, 0, 1]),
        x: { dtype: d, shape: [2, "B"], data: [1, 0, 1, 0, 1, 1] },
        z: { dtype: d, shape: ["B"], data: [0, 1, 0] },
      },
      build: ({ c, x, z }) => ({ y: c.select(x, z) }),
    }),
  ),
  ...(["f32", "i32", "u32", "bool"] as const).flatMap((from) =>
    (["f32", "i32", "u32", "bool"] as const).map(
      (to): Case => ({
        name: `cast ${from} → ${to}`,
        inputs: {
          x: {
            f32: f32([12], [NaN, -1.7, 1.7, -0.2, 0, 3e9, -3e9, 5e9, 2147483647, 4294967295, Infinity, -Infinity]),
            i32: i32([12], [0, 1, -1, I32_MIN, 2147483647, 16777217, -16777217, 5, -5, 100, 0, 7]),
            u32: u32([12], [0, 1, 4294967295, 2147483648, 16777217, 5, 100, 0, 7, 3000000000, 9, 2]),
            bool: bool([12], [0, 1, 1, 0, 0, 1, 1, 1, 0, 0, 1, 0]),
          }[from],
        },
        build: ({ x }) => ({ y: x.cast(to) }),
      }),
    ),
  ),
  ...(["f32", "i32", "u32"] as const).flatMap((d) =>
    (["sum", "max", "min", ...(d === "f32" ? (["mean"] as const) : [])] as const).map(
      (op): Case => ({
        name: `reduce ${op} ${d}: axes, keepdims, none, all`,
        inputs: { x: { dtype: d, shape: ["B", 2, 2], data: d === "u32" ? uA : d === "i32" ? intA.map((v) => v >> 4) : mixed.data } },
        build: ({ x }) => ({ a: x[op]([0, 2]), k: x[op]([1], true), none: x[op]([]), all: x[op]() }),
      }),
    ),
  ),
  ...(["f32", "i32", "u32"] as const).map(
    (d): Case => ({
      name: `argmax ${d}, ties to the first`,
      inputs: {
        x: {
          dtype: d,
          shape: ["B", 4],
          data: [3, 1, 3, 2, 0, 0, 0, 0, 1, 4000000, 2, 4000000].map((v) => (d === "u32" && v === 4000000 ? 4000000000 : v)),
        },
      },
      build: ({ x }) => ({ a: x.argmax(1), k: x.argmax(0, true) }),
    }),
  ),
  ...(["f32", "i32", "bool"] as const).map(
    (d): Case => ({
      name: `movement ${d}: reshape, permute, expand, slice, pad, concat, gather`,
      inputs: {
        x: { dtype: d, shape: ["B", 2, 3], data: Array.from({ length: 18 }, (_, i) => (d === "bool" ? (i % 3 === 0 ? 1 : 0) : i - 7)) },
      },
      build: ({ x }) => ({
        reshape: x.reshape(["B", 6]),
        flat: x.reshape([2, "B", 3]),
        permute: x.permute([2, 0, 1]),
        expand: x.reshape(["B", 1, 6]).expand([2, "B", 4, 6]),
        slice: x.slice([0, 1, 0], ["B", 2, 3], [1, 1, 2]),
        pad: x.pad([0, 1, 0], [0, 0, 2], 1),
        concat: concat([x, x.slice([0, 0, 1], ["B", 2, 3])], 2),
        gather: x.gather(x.builder.constant([2, 0, 2, 1], "i32", [2, 2]), 2),
      }),
    }),
  ),
  {
    name: "const (scalar, data, splat over B), iota f32/i32/u32",
    inputs: { x: f32(["B", 2], [1, 2, 3, 4, 5, 6]) },
    build: ({ x }) => {
      const g = x.builder;
      return {
        data: x.add(g.constant([0.5, -0.25])),
        splat: g.constant(2, "f32", ["B", 2]).mul(x),
        count: g.constant(1, "f32", ["B"]).sum(),
        iotaB: g.iota(["B", 3], 0, "f32").add(x.sum(1, true)),
        iota: g.iota([2, 4], 1, "i32"),
        iotaU: g.iota([3, 1], 0, "u32"),
      };
    },
  },
  {
    name: "matmul: batched, broadcast batch dims",
    inputs: { a: f32(["B", 1, 2, 3], F(18, 1)), b: f32([2, 3, 4], F(24, 2)) },
    build: ({ a, b }) => ({ y: a.matmul(b), z: a.reshape(["B", 2, 3]).matmul(b.slice([0, 0, 0], [1, 3, 4]).reshape([3, 4])) }),
  },
  ...(
    [
      [
        [1, 1],
        [0, 0, 0, 0],
        [1, 1],
      ],
      [
        [2, 1],
        [1, 0, 2, 1],
        [1, 1],
      ],
      [
        [1, 2],
        [1, 1, 0, 1],
        [2, 1],
      ],
    ] as const
  ).map(
    ([strides, padding, dilations]): Case => ({
      name: `conv2d and its gradients, strides ${strides}, padding ${padding}, dilations ${dilations}`,
      inputs: { x: f32(["B", 5, 6, 2], F(120, 3)), f: f32([2, 3, 2, 3], F(36, 4)), g: f32([1, 1, 1, 1], [1]) },
      build: ({ x, f }) => {
        const y = x.conv2d(f, { strides, padding, dilations });
        const h = y.mul(y.builder.iota(y.shape, 3, "f32").add(0.5));
        const gi = x.builder.add("conv2d_grad_input", [h, f], { strides, padding, dilations, shape: x.shape });
        const gf = x.builder.add("conv2d_grad_filter", [x, h], { strides, padding, dilations, shape: f.shape });
        return { y, gi, gf };
      },
    }),
  ),
  ...(
    [
      [
        [2, 2],
        [2, 2],
        [0, 0, 0, 0],
      ],
      [
        [3, 2],
        [1, 2],
        [1, 1, 0, 1],
      ],
      [
        [2, 3],
        [2, 1],
        [1, 0, 2, 1],
      ],
    ] as const
  ).map(
    ([window, strides, padding]): Case => ({
      name: `pools and their gradients, window ${window}, strides ${strides}, padding ${padding}`,
      inputs: {
        x: f32(
          ["B", 5, 4, 2],
          F(120, 5).map((v, i) => (i % 7 === 0 ? 0.5 : v)),
        ),
      },
      build: ({ x }) => {
        const m = x.maxPool2d(window, strides, padding);
        const a = x.avgPool2d(window, strides, padding);
        const b = x.builder;
        const gm = b.add("max_pool2d_grad", [x, m.mul(2).add(1)], { window, strides, padding });
        const ga = b.add("avg_pool2d_grad", [a.mul(a)], { window, strides, padding, shape: x.shape });
        return { m, a, gm, ga };
      },
    }),
  ),
];

function bindB(shape: Shape, n: number): number[] {
  const known = shape.filter((d) => typeof d === "number") as number[];
  const b = n / known.reduce((a, d) => a * d, 1);
  return shape.map((d) => (typeof d === "number" ? d : b));
}

async function check(c: Case): Promise<void> {
  const g = new GraphBuilder();
  const xs = Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, g.input(k, v.dtype, v.shape)]));
  const graph = g.build(c.build(xs));
  const inputs: Record<string, HostTensor> = Object.fromEntries(
    Object.entries(c.inputs).map(([k, v]) => [
      k,
      { shape: bindB(v.shape, v.data.length), data: v.dtype === "f32" ? v.data.map(Math.fround) : v.data },
    ]),
  );
  const want = interpret(graph, inputs);
  const got = await runOrt(exportOnnx(graph), graph, inputs);
  const float = graph.outputs.some((o) => graph.nodes[o.id].type.dtype === "f32");
  const a = agreement(got, want, float ? ORT_TOL : { atol: 0, rtol: 0 });
  expect(a.mismatch, c.name).toBeUndefined();
}

describe("each primitive in ONNX Runtime agrees with the float64 reference", () => {
  test.each(cases.map((c) => [c.name, c] as const))("%s", async (_, c) => check(c));
});

describe("what has no ONNX form is refused, naming the node", () => {
  test("random (dropout's mask in a training graph)", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 4]);
    const graph = g.build({ y: x.mul(g.random(["B", 4], 7)) });
    expect(() => exportOnnx(graph)).toThrow(/^random %\d+ @ .*onnx-export-ops\.test\.ts:\d+: random has no ONNX form: .*counter-based/);
  });
  test("a weight that is not an input, or of the wrong size", () => {
    const g = new GraphBuilder();
    const graph = g.build({ y: g.input("x", "f32", [2]).add(g.input("w", "f32", [2])) });
    expect(() => exportOnnx(graph, { weights: { v: [1, 2] } })).toThrow(/weight "v" is given, but the graph has no input of that name/);
    expect(() => exportOnnx(graph, { weights: { w: [1] } })).toThrow(/weight "w" f32\[2\] has 1 values, not 2/);
  });
});
