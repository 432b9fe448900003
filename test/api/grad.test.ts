import { describe, expect, test } from "vitest";
import { GraphBuilder } from "../../src/api/builder.ts";
import { softmax, softmaxCrossEntropy } from "../../src/api/composites.ts";
import { customGradient, grad } from "../../src/api/grad.ts";
import { interpret } from "../../src/interpret.ts";
import { printGraph } from "../../src/ir/print.ts";
import { floats } from "../helpers/data.ts";

const x3 = { shape: [3], data: [0.5, -1.25, 2] };

describe("grad", () => {
  test("a value used several times sums its cotangents: d/dx Σ(x·x + x) = 2x + 1", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [3]);
    const [dx] = grad(x.mul(x).add(x).sum(), [x]);
    expect(Array.from(interpret(g.build({ dx }), { x: x3 }).dx.data)).toEqual([2, -1.5, 5]);
  });

  test("broadcasting is undone by summing back to the input's shape", () => {
    const g = new GraphBuilder();
    const b = g.input("b", "f32", [3]);
    const w = g.input("w", "f32", ["B", 3]);
    const [db, dw] = grad(w.add(b).mul(w).sum(), [b, w]);
    expect(db.shape).toEqual([3]);
    expect(dw.shape).toEqual(["B", 3]);
    const out = interpret(g.build({ db, dw }), { b: x3, w: { shape: [2, 3], data: [1, 2, 3, 4, 5, 6] } });
    expect(Array.from(out.db.data)).toEqual([5, 7, 9]); // Σ_rows w
    expect(Array.from(out.dw.data)).toEqual([2.5, 2.75, 8, 8.5, 8.75, 14]); // 2w + b
  });

  test("stopGradient blocks the gradient: d/dx Σ x·stop(x) = x", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [3]);
    const [dx] = grad(x.mul(x.stopGradient()).sum(), [x]);
    expect(Array.from(interpret(g.build({ dx }), { x: x3 }).dx.data)).toEqual(x3.data);
  });

  test("branches that do not reach the output make no backward work", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [3]);
    const unused = x.sin();
    const before = printGraph(g.build({ unused })).split("\n").length;
    const [dx] = grad(x.exp().sum(), [x]);
    const text = printGraph(g.build({ dx }));
    expect(text).not.toMatch(/= cos /);
    expect(text.split("\n").length - before).toBeLessThan(8);
  });

  test("integer values carry no gradient, and a value off every path gets zeros", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 3]);
    const k = g.input("k", "i32", ["B", 3]);
    const z = g.input("z", "f32", [2]);
    const [dx, dz] = grad(k.cast("f32").mul(x).sum(), [x, z]);
    const out = interpret(g.build({ dx, dz }), {
      x: { shape: [1, 3], data: [1, 2, 3] },
      k: { shape: [1, 3], data: [4, -5, 6] },
      z: { shape: [2], data: [1, 1] },
    });
    expect(Array.from(out.dx.data)).toEqual([4, -5, 6]);
    expect(Array.from(out.dz.data)).toEqual([0, 0]);
    expect(() => grad(x.sum(), [k])).toThrow("grad: cannot differentiate with respect to i32[B,3]");
  });

  test("non-scalar outputs need a seed of their shape", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [3]);
    expect(() => grad(x.exp(), [x])).toThrow("grad: f32[3] is not a scalar; reduce it first or pass a seed");
    const [dx] = grad(x.exp(), [x], g.constant(2, "f32", [3]));
    const out = interpret(g.build({ dx }), { x: x3 });
    out.dx.data.forEach((v, i) => expect(v).toBeCloseTo(2 * Math.exp(x3.data[i]), 12));
  });

  test("grad of grad: Hessian-vector products match differences of gradients", () => {
    // f(x) = Σ tanh(x)·x² + exp(x·0.3)·sin(x); H·v by reverse-over-reverse.
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [5]);
    const v = g.input("v", "f32", [5]);
    const f = x.tanh().mul(x.mul(x)).add(x.mul(0.3).exp().mul(x.sin())).sum();
    const [gx] = grad(f, [x]);
    const [hv] = grad(gx.mul(v).sum(), [x]);
    const graph = g.build({ gx, hv });
    const xv = floats(5, 3);
    const vv = floats(5, 4);
    const eps = 1e-5;
    const at = (s: number) =>
      interpret(graph, { x: { shape: [5], data: xv.map((a, i) => a + s * eps * vv[i]) }, v: { shape: [5], data: vv } });
    const [plus, minus, here] = [at(1), at(-1), at(0)];
    here.hv.data.forEach((h, i) => expect(Math.abs(h - (plus.gx.data[i] - minus.gx.data[i]) / (2 * eps))).toBeLessThan(1e-7));
  });

  test("customGradient: the rule replaces the chain rule through the composite's nodes", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [3]);
    // A straight-through estimator: floor forward, identity backward.
    const y = customGradient(x.floor(), [x], (ct) => [ct]);
    const [dx] = grad(y.mul(x).sum(), [x]);
    const out = interpret(g.build({ dx }), { x: x3 });
    expect(Array.from(out.dx.data)).toEqual(x3.data.map((v) => Math.floor(v) + v));
    expect(() => customGradient(x, [y], (ct) => [ct])).toThrow("customGradient: %0 must be computed after its input %1");
    expect(() => customGradient(y, [x], (ct) => [ct])).toThrow("already has a gradient rule");
    const bad = customGradient(x.exp(), [x], (ct) => [ct.sum()]);
    expect(() => grad(bad.sum(), [x])).toThrow(/grad: the custom rule of exp %\d+ @ .* gave f32\[\] for input %0 f32\[3\]/);
  });

  test("grad of grad through softmax cross-entropy's own rule: H·v = (diag p − p pᵀ) v / B", () => {
    const g = new GraphBuilder();
    const z = g.input("z", "f32", [2, 4]);
    const y = g.constant([0, 1, 0, 0, 0.5, 0, 0, 0.5], "f32", [2, 4]);
    const v = g.input("v", "f32", [2, 4]);
    const [gz] = grad(softmaxCrossEntropy(z, y), [z]);
    const [hv] = grad(gz.mul(v).sum(), [z]);
    const p = softmax(z);
    const expected = p.mul(v.sub(p.mul(v).sum(1, true))).div(2);
    const out = interpret(g.build({ hv, expected }), {
      z: { shape: [2, 4], data: floats(8, 5) },
      v: { shape: [2, 4], data: floats(8, 6) },
    });
    out.hv.data.forEach((h, i) => expect(h).toBeCloseTo(out.expected.data[i], 12));
  });
});
