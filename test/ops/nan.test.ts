/** NaN on the GPU follows the float64 reference (one rule, Kiln's): relu, max, min, max pooling
 *  and reduce max/min of a NaN give NaN, as Math.max does; comparisons with NaN are false (ne
 *  true) and select passes a NaN through only from the branch it picks. WGSL leaves max/min of
 *  NaN to the driver (lavapipe returns the other operand), so these lowerings test the bits. */
import { describe, expect, test } from "vitest";
import { GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import { expectMatchesReference, runGpu, useGpu } from "../helpers/gpu.ts";

useGpu();

const INF = Infinity;

async function unary(xs: number[], f: (x: Tensor) => Tensor): Promise<number[]> {
  const g = new GraphBuilder();
  const x = g.input("x", "f32", [xs.length]);
  const graph = g.build({ y: f(x) });
  const inputs = { x: { shape: [xs.length], data: xs } };
  await expectMatchesReference(graph, inputs, { atol: 0, rtol: 0 });
  return Array.from((await runGpu(graph, inputs)).y.data);
}

async function binary(xs: number[], ws: number[], f: (x: Tensor, w: Tensor) => Tensor): Promise<number[]> {
  const g = new GraphBuilder();
  const x = g.input("x", "f32", [xs.length]);
  const w = g.input("w", "f32", [ws.length]);
  const graph = g.build({ y: f(x, w) });
  const inputs = { x: { shape: [xs.length], data: xs }, w: { shape: [ws.length], data: ws } };
  await expectMatchesReference(graph, inputs, { atol: 0, rtol: 0 });
  return Array.from((await runGpu(graph, inputs)).y.data);
}

describe("NaN propagates as in the reference", () => {
  test("relu of NaN is NaN (Math.max(NaN, 0)); of ±inf, inf and 0", async () => {
    expect(await unary([NaN, -1, 2, INF, -INF], (x) => x.relu())).toEqual([NaN, 0, 2, INF, 0]);
  });

  test("max and min with a NaN on either side give NaN", async () => {
    const xs = [NaN, 1, NaN, -INF, 3];
    const ws = [1, NaN, NaN, NaN, -2];
    expect(await binary(xs, ws, (x, w) => x.maximum(w))).toEqual([NaN, NaN, NaN, NaN, 3]);
    expect(await binary(xs, ws, (x, w) => x.minimum(w))).toEqual([NaN, NaN, NaN, NaN, -2]);
  });

  test("relu fused after a matmul: a NaN in one example's features gives NaN in that row only", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [2, 3]);
    const w = g.input("w", "f32", [3, 2]);
    const graph = g.build({ y: x.matmul(w).relu() });
    const inputs = { x: { shape: [2, 3], data: [1, NaN, 2, 1, 1, 1] }, w: { shape: [3, 2], data: [-1, -1, -1, -1, -1, -1] } };
    await expectMatchesReference(graph, inputs, { atol: 0, rtol: 0 });
    expect(Array.from((await runGpu(graph, inputs)).y.data)).toEqual([NaN, NaN, 0, 0]);
  });

  test("max pooling: a window holding a NaN gives NaN, the others their max", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [1, 2, 4, 1]);
    const graph = g.build({ y: x.maxPool2d([2, 2], [2, 2]) });
    const inputs = { x: { shape: [1, 2, 4, 1], data: [1, NaN, 5, 6, -3, 2, 7, -8] } };
    await expectMatchesReference(graph, inputs, { atol: 0, rtol: 0 });
    expect(Array.from((await runGpu(graph, inputs)).y.data)).toEqual([NaN, 7]);
  });

  test("reduce max and min keep a NaN", async () => {
    expect(await unary([1, NaN, 3], (x) => x.max([0]).reshape([1]))).toEqual([NaN]);
    expect(await unary([1, NaN, 3], (x) => x.min([0]).reshape([1]))).toEqual([NaN]);
  });

  test("comparisons with NaN are false (ne true), and select keeps only the chosen side's NaN", async () => {
    const xs = [NaN, 1, 2];
    const ws = [0, NaN, 1];
    expect(await binary(xs, ws, (x, w) => x.gt(w).cast("f32"))).toEqual([0, 0, 1]);
    expect(await binary(xs, ws, (x, w) => x.le(w).cast("f32"))).toEqual([0, 0, 0]);
    expect(await binary(xs, ws, (x, w) => x.ne(w).cast("f32"))).toEqual([1, 1, 1]);
    // where x > w take x else w: NaN > 0 is false, so the first lane is w (0); the second is w = NaN.
    expect(await binary(xs, ws, (x, w) => x.gt(w).select(x, w))).toEqual([0, NaN, 2]);
  });
});
