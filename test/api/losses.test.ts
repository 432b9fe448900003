import { describe, expect, test } from "vitest";
import { GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import { grad } from "../../src/api/grad.ts";
import { activate } from "../../src/api/layers.ts";
import {
  binaryCrossEntropy,
  binaryCrossEntropyFromLogits,
  categoricalCrossEntropy,
  categoricalCrossEntropyFromLogits,
  klSparsity,
  l2Penalty,
  lossByName,
  mse,
  sparseCategoricalCrossEntropy,
  sparseCategoricalCrossEntropyFromLogits,
  type LossName,
} from "../../src/api/losses.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import { printGraph } from "../../src/ir/print.ts";
import { host } from "../helpers/data.ts";
import { expectGradOk } from "../helpers/gradcheck.ts";

const [B, C] = [4, 3];
const EPS = Math.fround(1e-7);
const clip = (p: number) => Math.min(Math.max(p, EPS), Math.fround(1 - 1e-7));
const rows = (d: ArrayLike<number>) => Array.from({ length: B }, (_, r) => Array.from({ length: C }, (_, j) => d[r * C + j]));
const softmaxRow = (z: number[]) => {
  const m = Math.max(...z);
  const e = z.map((v) => Math.exp(v - m));
  const s = e.reduce((a, v) => a + v, 0);
  return e.map((v) => v / s);
};
const mean = (xs: number[]) => xs.reduce((a, v) => a + v, 0) / xs.length;

const logits = host([B, C], 1);
const probsData = rows(logits.data).flatMap(softmaxRow);
const probs = { shape: [B, C], data: probsData };
const onehot = { shape: [B, C], data: [0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0] };
const sparse = { shape: [B], data: [1, 0, 2, 1] };
const binary = { shape: [B, C], data: [1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1] };

/** Evaluate f(p, y) in float64 with p f32 [B, C] and y of the given dtype. */
function value(f: (p: Tensor, y: Tensor) => Tensor, p: HostTensor, y: HostTensor, dtype: "f32" | "i32" = "f32"): number {
  const g = new GraphBuilder();
  const out = f(g.input("p", "f32", ["B", C]), g.input("y", dtype, dtype === "i32" ? ["B"] : ["B", C]));
  return interpret(g.build({ out }), { p, y }).out.data[0];
}

describe("losses against float64 formulas", () => {
  test("mse", () => {
    expect(value(mse, logits, binary)).toBeCloseTo(mean(Array.from(logits.data, (v, i) => (v - binary.data[i]) ** 2)), 12);
  });

  test("categorical cross-entropy from probabilities (clipped) and from logits", () => {
    const ref = mean(rows(probsData).map((p, r) => -p.reduce((a, v, j) => a + onehot.data[r * C + j] * Math.log(clip(v)), 0)));
    expect(value(categoricalCrossEntropy, probs, onehot)).toBeCloseTo(ref, 10);
    expect(value(categoricalCrossEntropyFromLogits, logits, onehot)).toBeCloseTo(ref, 10);
    // An unnormalised row is rescaled to sum 1 first, as Keras does.
    const doubled = { shape: [B, C], data: probsData.map((v) => 2 * v) };
    expect(value(categoricalCrossEntropy, doubled, onehot)).toBeCloseTo(ref, 10);
  });

  test("sparse categorical cross-entropy with i32 labels", () => {
    const ref = mean(rows(probsData).map((p, r) => -Math.log(clip(p[sparse.data[r]]))));
    expect(value(sparseCategoricalCrossEntropy, probs, sparse, "i32")).toBeCloseTo(ref, 10);
    expect(value(sparseCategoricalCrossEntropyFromLogits, logits, sparse, "i32")).toBeCloseTo(ref, 10);
  });

  test("binary cross-entropy from probabilities (clipped) and from logits", () => {
    const sig = Array.from(logits.data, (z) => 1 / (1 + Math.exp(-z)));
    const ref = mean(sig.map((p, i) => -(binary.data[i] * Math.log(clip(p)) + (1 - binary.data[i]) * Math.log(1 - clip(p)))));
    expect(value(binaryCrossEntropy, { shape: [B, C], data: sig }, binary)).toBeCloseTo(ref, 10);
    expect(value(binaryCrossEntropyFromLogits, logits, binary)).toBeCloseTo(ref, 10);
    // Saturated probabilities are clipped: finite.
    expect(Number.isFinite(value(binaryCrossEntropy, { shape: [B, C], data: binary.data.map((v) => 1 - v) }, binary))).toBe(true);
  });

  test("l2Penalty is λ/2 · Σ‖W‖²", () => {
    const g = new GraphBuilder();
    const [w1, w2] = [g.input("w1", "f32", [2, 3]), g.input("w2", "f32", [4])];
    const [a, b] = [host([2, 3], 5), host([4], 6)];
    const ss = [...Array.from(a.data), ...Array.from(b.data)].reduce((s, v) => s + v * v, 0);
    const out = interpret(g.build({ p: l2Penalty([w1, w2], 0.3) }), { w1: a, w2: b }).p.data[0];
    expect(out).toBeCloseTo(Math.fround(0.15) * ss, 12);
  });

  test("klSparsity against the formula, and its gradient", () => {
    const h = { shape: [5, 3], data: Array.from(host([5, 3], 7).data, (v) => 0.5 + 0.45 * v) };
    const [rho, beta] = [0.05, 3];
    const ref =
      beta *
      [0, 1, 2].reduce((s, j) => {
        const r = mean([0, 1, 2, 3, 4].map((i) => h.data[i * 3 + j]));
        return s + rho * Math.log(rho / r) + (1 - rho) * Math.log((1 - rho) / (1 - r));
      }, 0);
    const g = new GraphBuilder();
    const out = interpret(g.build({ k: klSparsity(g.input("h", "f32", ["B", 3]), rho, beta) }), { h }).k.data[0];
    expect(out).toBeCloseTo(ref, 6); // ρ and 1 − ρ are f32 constants
    expectGradOk({ inputs: { h }, f: (xs) => klSparsity(xs.h, rho, beta) });
  });

  test("gradients of the from-probability forms", () => {
    expectGradOk({ inputs: { p: probs }, fixed: { y: { ...onehot, dtype: "f32" } }, f: (xs) => categoricalCrossEntropy(xs.p, xs.y) });
    expectGradOk({ inputs: { p: probs }, fixed: { y: { ...sparse, dtype: "i32" } }, f: (xs) => sparseCategoricalCrossEntropy(xs.p, xs.y) });
    expectGradOk({ inputs: { p: probs }, fixed: { y: { ...binary, dtype: "f32" } }, f: (xs) => binaryCrossEntropy(xs.p, xs.y) });
  });

  test("shape and dtype mistakes are named", () => {
    const g = new GraphBuilder();
    const p = g.input("p", "f32", ["B", 3]);
    expect(() => categoricalCrossEntropy(p, g.input("y", "f32", ["B", 1]))).toThrow(
      "categoricalCrossEntropy: shapes differ (f32[B,3] vs f32[B,1])",
    );
    expect(() => sparseCategoricalCrossEntropy(p, g.input("z", "f32", ["B"]))).toThrow(/sparseCategoricalCrossEntropy: needs i32 labels/);
    expect(() => lossByName("hinge" as LossName)).toThrow(/unknown loss "hinge"/);
  });

  test("Keras's loss names are the same losses", () => {
    const graphOf = (name: LossName, sparse: boolean): string => {
      const g = new GraphBuilder();
      const p = activate(g.input("z", "f32", ["B", 3]), "softmax");
      const y = sparse ? g.input("y", "i32", ["B"]) : g.input("y", "f32", ["B", 3]);
      return printGraph(g.build({ l: lossByName(name).compute(p, y) }));
    };
    for (const [keras, ours] of [
      ["categorical_crossentropy", "categoricalCrossEntropy"],
      ["binary_crossentropy", "binaryCrossEntropy"],
      ["mean_squared_error", "mse"],
    ] as const) {
      expect(graphOf(keras, false)).toBe(graphOf(ours, false));
    }
    expect(graphOf("sparse_categorical_crossentropy", true)).toBe(graphOf("sparseCategoricalCrossEntropy", true));
  });
});

describe("lossByName fuses a softmax / sigmoid output with the loss", () => {
  /** The loss and its gradient wrt the logits, through the activation the layer would apply. */
  function fused(name: LossName, act: "softmax" | "sigmoid", z: HostTensor, y: HostTensor, dtype: "f32" | "i32" = "f32") {
    const g = new GraphBuilder();
    const zt = g.input("z", "f32", ["B", C]);
    const yt = g.input("y", dtype, dtype === "i32" ? ["B"] : ["B", C]);
    const loss = lossByName(name).compute(activate(zt, act), yt);
    const [dz] = grad(loss, [zt]);
    return interpret(g.build({ loss, dz }), { z, y });
  }

  test("stable for large logits: exact loss and gradient (p − y)/B where the clipped form saturates", () => {
    const big = { shape: [B, C], data: [900, -800, 0, -1000, 1000, 0, 0, 0, 1200, 50, -50, 700] };
    const lse = (z: number[]) => Math.max(...z) + Math.log(z.reduce((a, v) => a + Math.exp(v - Math.max(...z)), 0));
    const exact = mean(rows(big.data).map((z, r) => lse(z) - z.reduce((a, v, j) => a + onehot.data[r * C + j] * v, 0)));
    for (const [name, y, dtype] of [
      ["categoricalCrossEntropy", onehot, "f32"],
      ["sparseCategoricalCrossEntropy", sparse, "i32"],
    ] as const) {
      const out = fused(name, "softmax", big, y, dtype);
      expect(out.loss.data[0]).toBeCloseTo(exact, 6);
      const p = rows(big.data).flatMap(softmaxRow);
      Array.from(out.dz.data).forEach((v, i) => expect(v).toBeCloseTo((p[i] - onehot.data[i]) / B, 12));
    }
    // The unfused form clips: log(1e-7) caps the loss, and the gradient vanishes.
    expect(value(categoricalCrossEntropy, { shape: [B, C], data: rows(big.data).flatMap(softmaxRow) }, onehot)).toBeLessThan(exact / 10);
  });

  test("binary: sigmoid output with binaryCrossEntropy is the stable from-logits form", () => {
    const big = { shape: [B, C], data: [90, -80, 0, -100, 100, 0, 0, 0, 120, 50, -50, 70] };
    const exact = mean(Array.from(big.data, (z, i) => Math.max(z, 0) - z * binary.data[i] + Math.log1p(Math.exp(-Math.abs(z)))));
    const out = fused("binaryCrossEntropy", "sigmoid", big, binary);
    expect(out.loss.data[0]).toBeCloseTo(exact, 6);
    Array.from(out.dz.data).forEach((v, i) => expect(v).toBeCloseTo((1 / (1 + Math.exp(-big.data[i])) - binary.data[i]) / (B * C), 12));
  });

  test("a loss from probabilities is not fused with an unrelated activation", () => {
    const g = new GraphBuilder();
    const z = g.input("z", "f32", ["B", C]);
    const y = g.input("y", "f32", ["B", C]);
    const sig = activate(z, "sigmoid");
    const viaName = lossByName("categoricalCrossEntropy").compute(sig, y);
    const direct = categoricalCrossEntropy(sig, y);
    const out = interpret(g.build({ viaName, direct }), { z: logits, y: onehot });
    expect(out.viaName.data[0]).toBe(out.direct.data[0]);
  });
});

describe("accuracy counts (f32 scalars)", () => {
  const count = (name: LossName, p: HostTensor, y: HostTensor, dtype: "f32" | "i32" = "f32") =>
    value((pt, yt) => lossByName(name).correct!(pt, yt), p, y, dtype);

  test("categorical, sparse and binary", () => {
    // argmax of each logits row: computed, then compared with hand-made labels.
    const am = rows(logits.data).map((r) => r.indexOf(Math.max(...r)));
    const hits = am.filter((a, r) => onehot.data[r * C + a] === 1).length;
    expect(count("categoricalCrossEntropyFromLogits", logits, onehot)).toBe(hits);
    expect(count("sparseCategoricalCrossEntropy", probs, sparse, "i32")).toBe(am.filter((a, r) => a === sparse.data[r]).length);
    const sig = Array.from(logits.data, (z) => 1 / (1 + Math.exp(-z)));
    const right = sig.filter((p, i) => (p > 0.5 ? 1 : 0) === binary.data[i]).length;
    expect(count("binaryCrossEntropy", { shape: [B, C], data: sig }, binary)).toBeCloseTo(right / C, 12);
    expect(count("binaryCrossEntropyFromLogits", logits, binary)).toBeCloseTo(right / C, 12);
    expect(lossByName("mse").correct).toBeUndefined();
  });
});
