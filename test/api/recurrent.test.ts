import { describe, expect, test } from "vitest";
import { GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import type { Layer, Scope } from "../../src/api/layers.ts";
import { predictGraph, sequential } from "../../src/api/model.ts";
import { lstm, simpleRnn } from "../../src/api/recurrent.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import { host } from "../helpers/data.ts";
import { expectGradOk } from "../helpers/gradcheck.ts";
import { expectMatchesReference, useGpu } from "../helpers/gpu.ts";

useGpu();

const [B, T, F, U] = [2, 3, 4, 3];
const sig = (v: number) => 1 / (1 + Math.exp(-v));

/** Row-major [n, m] · [m, k] in float64. */
function matmul(a: ArrayLike<number>, b: ArrayLike<number>, n: number, m: number, k: number): number[] {
  const out = new Array(n * k).fill(0);
  for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) for (let l = 0; l < m; l++) out[i * k + j] += a[i * m + l] * b[l * k + j];
  return out;
}

/** The unrolled cell by hand: per step z = x_t W + h U + b, then the cell's update. */
function reference(kind: "rnn" | "lstm", x: HostTensor, w: HostTensor, u: HostTensor, b: HostTensor): number[][] {
  const n = kind === "lstm" ? 4 * U : U;
  let h = new Array(B * U).fill(0);
  let c = new Array(B * U).fill(0);
  const hs: number[][] = [];
  for (let t = 0; t < T; t++) {
    const xt = Array.from({ length: B * F }, (_, i) => x.data[Math.floor(i / F) * T * F + t * F + (i % F)]);
    const xw = matmul(xt, w.data, B, F, n);
    const hu = matmul(h, u.data, B, U, n);
    const z = xw.map((v, i) => v + hu[i] + b.data[i % n]);
    if (kind === "rnn") h = z.map(Math.tanh);
    else {
      const at = (gate: number, r: number, j: number) => z[r * n + gate * U + j];
      const nc = c.map((_, i) => {
        const [r, j] = [Math.floor(i / U), i % U];
        return sig(at(1, r, j)) * c[i] + sig(at(0, r, j)) * Math.tanh(at(2, r, j));
      });
      h = nc.map((cv, i) => sig(at(3, Math.floor(i / U), i % U)) * Math.tanh(cv));
      c = nc;
    }
    hs.push(h);
  }
  return hs;
}

function paramsFor(kind: "rnn" | "lstm"): Record<string, HostTensor> {
  const n = kind === "lstm" ? 4 * U : U;
  return { kernel: host([F, n], 2), recurrent_kernel: host([U, n], 3), bias: host([n], 4) };
}

function scopeOver(xs: Readonly<Record<string, Tensor>>): Scope {
  return {
    training: true,
    param: (name) => xs[name],
    variable: () => {
      throw new Error("unexpected");
    },
    assign: () => {
      throw new Error("unexpected");
    },
    uniform: () => {
      throw new Error("unexpected");
    },
    addLoss: () => {
      throw new Error("unexpected");
    },
  };
}

function forward(layer: Layer, p: Record<string, HostTensor>, x: HostTensor) {
  layer.nameAs("rec");
  const g = new GraphBuilder();
  const xs = Object.fromEntries(Object.entries(p).map(([k, v]) => [k, g.input(k, "f32", v.shape)]));
  const y = layer.call([g.input("x", "f32", ["B", T, F])], scopeOver(xs));
  return { y, out: interpret(g.build({ y }), { x, ...p }).y };
}

describe.each(["rnn", "lstm"] as const)("%s unrolled over T = 3", (kind) => {
  const make = (returnSequences: boolean) => (kind === "rnn" ? simpleRnn(U, { returnSequences }) : lstm(U, { returnSequences }));
  const x = host([B, T, F], 1);

  test("the last h and the whole sequence match the cell written by hand", () => {
    const hs = reference(kind, x, ...(Object.values(paramsFor(kind)) as [HostTensor, HostTensor, HostTensor]));
    const last = forward(make(false), paramsFor(kind), x);
    expect(last.y.shape).toEqual(["B", U]);
    Array.from(last.out.data).forEach((v, i) => expect(v).toBeCloseTo(hs[T - 1][i], 12));
    const seq = forward(make(true), paramsFor(kind), x);
    expect(seq.y.shape).toEqual(["B", T, U]);
    Array.from(seq.out.data).forEach((v, i) => {
      const [r, t, j] = [Math.floor(i / (T * U)), Math.floor(i / U) % T, i % U];
      expect(v).toBeCloseTo(hs[t][r * U + j], 12);
    });
  });

  test("BPTT: the gradient of the unrolled graph by central differences", () => {
    for (const returnSequences of [false, true]) {
      const layer = make(returnSequences);
      layer.nameAs("rec");
      expectGradOk({ inputs: { x, ...paramsFor(kind) }, f: (xs) => layer.call([xs.x], scopeOver(xs)) }, 1e-5);
    }
  });
});

test("parameters: Keras names and shapes; the forget gate's bias starts at 1", () => {
  const m = sequential([lstm(U)], { inputShape: [T, F] });
  const g = new GraphBuilder();
  const built = m.build(g, [g.input("x", "f32", ["B", T, F])], { training: false });
  expect(built.params.map((p) => [p.name, p.shape])).toEqual([
    ["lstm_1/kernel", [F, 4 * U]],
    ["lstm_1/recurrent_kernel", [U, 4 * U]],
    ["lstm_1/bias", [4 * U]],
  ]);
  expect(Array.from(built.params[2].initial(7))).toEqual([0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0]);
  const plain = sequential([lstm(2, { unitForgetBias: false })], { inputShape: [T, F] });
  const g2 = new GraphBuilder();
  const bias = plain.build(g2, [g2.input("x", "f32", ["B", T, F])], { training: false }).params[2];
  expect(Array.from(bias.initial(7))).toEqual(new Array(8).fill(0));
  expect(() => sequential([simpleRnn(3)], { inputShape: [F] })).toThrow(
    /^simple_rnn_1 @ recurrent\.test\.ts:\d+: expects rank 3, got f32\[B,4\]/,
  );
});

test("stacked LSTMs: the forward pass on Dawn matches the reference", async () => {
  const m = sequential([lstm(5, { returnSequences: true }), lstm(3)], { inputShape: [T, F] });
  const { graph, params } = predictGraph(m);
  const inputs: Record<string, HostTensor> = { x: host([3, T, F], 9) };
  params.forEach((p) => (inputs[p.name] = { shape: p.shape, data: p.initial(1) }));
  await expectMatchesReference(graph, inputs, { atol: 1e-5, rtol: 1e-4 });
});
