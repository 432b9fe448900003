import { describe, expect, test } from "vitest";
import { batchNorm, conv2d, dense, dropout, flatten, maxPool2d } from "../../src/api/layers.ts";
import { evalGraph, input, model, predictGraph, sequential, trainStepGraph } from "../../src/api/model.ts";
import type { Optimizer } from "../../src/api/optimizer.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import { host } from "../helpers/data.ts";
import { expectMatchesReference, useGpu } from "../helpers/gpu.ts";

useGpu();

/** Plain SGD, written here so these tests do not depend on ./optimizers.ts. */
const sgd = (lr: number): Optimizer => ({
  name: "sgd",
  learningRate: lr,
  slots: [],
  schedule: (t) => t.builder.constant(lr),
  update: (p, g, _s, step) => ({ param: p.sub(g.mul(step.lr)), slots: {} }),
});

/** Heavy-ball momentum with one slot, to see slots named and threaded through the state map. */
const momentum = (lr: number, mu: number): Optimizer => ({
  name: "momentum",
  learningRate: lr,
  slots: [{ name: "v", init: 0 }],
  schedule: (t) => t.builder.constant(lr),
  update: (p, g, s, step) => {
    const v = s.v.mul(mu).sub(g.mul(step.lr));
    return { param: p.add(v), slots: { v } };
  },
});

const inputsFor = (
  params: readonly { name: string; shape: readonly number[]; initial(seed: number): Float32Array }[],
  seed: number,
): Record<string, HostTensor> => Object.fromEntries(params.map((p) => [p.name, { shape: p.shape, data: p.initial(seed) }]));

describe("model definition", () => {
  test("layers are numbered per kind; explicit names are kept and must be unique", () => {
    const m = sequential([dense(4, { activation: "relu" }), dense(4, { name: "hidden" }), dense(2)], { inputShape: [3] });
    expect(m.layers.map((l) => l.name)).toEqual(["dense_1", "hidden", "dense_2"]);
    expect(predictGraph(m).params.map((p) => p.name)).toEqual([
      "dense_1/kernel",
      "dense_1/bias",
      "hidden/kernel",
      "hidden/bias",
      "dense_2/kernel",
      "dense_2/bias",
    ]);
    expect(() => sequential([dense(2, { name: "a" }), dense(2, { name: "a" })], { inputShape: [3] })).toThrow(
      'model: two layers are named "a"',
    );
    expect(m.inputs).toEqual([{ name: "x", shape: [3], dtype: "f32" }]);
    expect(m.outputs).toEqual([{ shape: ["B", 2], dtype: "f32" }]);
  });

  test("nodes carry the line that made their layer and its name; a layer's error names both", () => {
    const m = sequential([dense(4, { activation: "relu" }), dense(3)], { inputShape: [5] });
    const { graph } = predictGraph(m);
    const sites = new Set(graph.nodes.filter((n) => n.op === "matmul").map((n) => n.site));
    expect([...sites].sort()).toEqual([
      expect.stringMatching(/^model\.test\.ts:\d+ \(dense_1\)$/),
      expect.stringMatching(/^model\.test\.ts:\d+ \(dense_2\)$/),
    ]);
    // A model is built once as it is defined: the error comes at sequential().
    expect(() => sequential([dense(4), conv2d(2, 3)], { inputShape: [5] })).toThrow(
      /^conv2d_1 @ model\.test\.ts:\d+: expects rank 4, got f32\[B,4\]/,
    );
  });

  test("a functional model equals the sequential one, and a shared layer shares its parameters", () => {
    const [l1, l2] = [dense(5, { activation: "tanh" }), dense(2)];
    const x = input([3]);
    const fm = model({ inputs: x, outputs: l2.apply(l1.apply(x)) });
    const sm = sequential([dense(5, { activation: "tanh" }), dense(2)], { inputShape: [3] });
    const [a, b] = [predictGraph(fm), predictGraph(sm)];
    const feed = { x: host([4, 3], 1), ...inputsFor(a.params, 5) };
    expect(interpret(a.graph, feed).y.data).toEqual(interpret(b.graph, feed).y.data);

    const shared = dense(3);
    const x2 = input([3]);
    const twice = model({ inputs: x2, outputs: shared.apply(shared.apply(x2)) });
    expect(predictGraph(twice).params.map((p) => p.name)).toEqual(["dense_1/kernel", "dense_1/bias"]);
  });

  test("parameters carry their initialiser: seeded, different per parameter", () => {
    const { params } = predictGraph(sequential([dense(4), dense(4)], { inputShape: [4] }));
    expect(params[0].initial(1)).toEqual(params[0].initial(1));
    expect(params[0].initial(1)).not.toEqual(params[2].initial(1));
    expect(Array.from(params[1].initial(1))).toEqual([0, 0, 0, 0]);
    expect(params.map((p) => p.decay)).toEqual([true, false, true, false]);
  });
});

describe("training step graph", () => {
  const [B, I, H, O] = [3, 3, 4, 2];
  const x = host([B, I], 11);
  const y = { shape: [B, O], data: [1, 0, 0, 1, 0, 1] };

  test("an MLP's step through the interpreter is the SGD step written by hand", () => {
    const m = sequential([dense(H, { activation: "relu" }), dense(O, { activation: "softmax" })], { inputShape: [I] });
    const [lr, lambda] = [0.5, 0.01];
    const step = trainStepGraph(m, { loss: "categoricalCrossEntropy", optimizer: sgd(lr), l2: lambda, metrics: ["accuracy"] });
    const p = inputsFor(step.params, 3);
    const out = interpret(step.graph, { x, y, "step/t": { shape: [], data: [1] }, ...p });

    // By hand, float64: forward, loss, the delta recursion, then W ← W − lr·(dW + λW).
    const [w1, b1, w2, b2] = ["dense_1/kernel", "dense_1/bias", "dense_2/kernel", "dense_2/bias"].map((n) => Array.from(p[n].data));
    const z1 = Array.from(
      { length: B * H },
      (_, k) => b1[k % H] + [...Array(I).keys()].reduce((s, i) => s + x.data[Math.floor(k / H) * I + i] * w1[i * H + (k % H)], 0),
    );
    const h = z1.map((v) => Math.max(v, 0));
    const z2 = Array.from(
      { length: B * O },
      (_, k) => b2[k % O] + [...Array(H).keys()].reduce((s, j) => s + h[Math.floor(k / O) * H + j] * w2[j * O + (k % O)], 0),
    );
    const prob = z2.map((_, k) => {
      const r = Math.floor(k / O) * O;
      const row = z2.slice(r, r + O);
      return Math.exp(z2[k]) / row.reduce((s, v) => s + Math.exp(v), 0);
    });
    const sq = [...w1, ...w2].reduce((s, v) => s + v * v, 0);
    const loss = -prob.reduce((s, pv, k) => s + y.data[k] * Math.log(pv), 0) / B + Math.fround(lambda / 2) * sq;
    const dz2 = prob.map((pv, k) => (pv - y.data[k]) / B);
    const dz1 = z1.map((v, k) =>
      v > 0 ? [...Array(O).keys()].reduce((s, o) => s + dz2[Math.floor(k / H) * O + o] * w2[(k % H) * O + o], 0) : 0,
    );
    const dW = (a: number[], d: number[], n: number, m2: number) =>
      Array.from({ length: n * m2 }, (_, k) =>
        [...Array(B).keys()].reduce((s, r) => s + a[r * n + Math.floor(k / m2)] * d[r * m2 + (k % m2)], 0),
      );
    const db = (d: number[], m2: number) =>
      Array.from({ length: m2 }, (_, j) => [...Array(B).keys()].reduce((s, r) => s + d[r * m2 + j], 0));
    const expectClose = (got: ArrayLike<number>, want: number[]) => want.forEach((v, i) => expect(got[i]).toBeCloseTo(v, 10));
    expect(out.loss.data[0]).toBeCloseTo(loss, 10);
    const lam = Math.fround(lambda / 2) * 2;
    expectClose(
      out["dense_1/kernel_next"].data,
      w1.map((w, k) => w - lr * (dW(Array.from(x.data), dz1, I, H)[k] + lam * w)),
    );
    expectClose(
      out["dense_1/bias_next"].data,
      b1.map((b, k) => b - lr * db(dz1, H)[k]),
    );
    expectClose(
      out["dense_2/kernel_next"].data,
      w2.map((w, k) => w - lr * (dW(h, dz2, H, O)[k] + lam * w)),
    );
    expectClose(
      out["dense_2/bias_next"].data,
      b2.map((b, k) => b - lr * db(dz2, O)[k]),
    );
    const correct = [0, 1, 2].filter((r) => (prob[r * 2] > prob[r * 2 + 1] ? 0 : 1) === (y.data[r * 2] === 1 ? 0 : 1)).length;
    expect(out.correct.data[0]).toBe(correct);
    expect(out["step/t_next"].data[0]).toBe(2);
    expect(step.metrics).toEqual({ accuracy: "correct" });
  });

  test("state map: params, slots, assigned variables and the counter are resident updates", () => {
    const m = sequential([dense(H), batchNorm(), dropout(0.5), dense(O)], { inputShape: [I] });
    const step = trainStepGraph(m, { loss: "mse", optimizer: momentum(0.1, 0.9) });
    expect(step.state).toEqual({
      "dense_1/kernel": "dense_1/kernel_next",
      "dense_1/kernel/v": "dense_1/kernel/v_next",
      "dense_1/bias": "dense_1/bias_next",
      "dense_1/bias/v": "dense_1/bias/v_next",
      "batch_norm_1/gamma": "batch_norm_1/gamma_next",
      "batch_norm_1/gamma/v": "batch_norm_1/gamma/v_next",
      "batch_norm_1/beta": "batch_norm_1/beta_next",
      "batch_norm_1/beta/v": "batch_norm_1/beta/v_next",
      "dense_2/kernel": "dense_2/kernel_next",
      "dense_2/kernel/v": "dense_2/kernel/v_next",
      "dense_2/bias": "dense_2/bias_next",
      "dense_2/bias/v": "dense_2/bias/v_next",
      "batch_norm_1/moving_mean": "batch_norm_1/moving_mean_next",
      "batch_norm_1/moving_variance": "batch_norm_1/moving_variance_next",
      "step/t": "step/t_next",
    });
    expect(step.slots[0]).toEqual({ name: "dense_1/kernel/v", param: "dense_1/kernel", shape: [I, H], init: 0 });
    const names = new Set(step.graph.outputs.map((o) => o.name));
    for (const out of Object.values(step.state)) expect(names.has(out!)).toBe(true);
    // Runs, with the slots at their init, and the loss is the batch mean (any batch size).
    const feed: Record<string, HostTensor> = {
      "step/t": { shape: [], data: [1] },
      ...inputsFor(step.params, 2),
      ...inputsFor(
        step.variables.filter((v) => v.name !== "step/t"),
        2,
      ),
    };
    for (const s of step.slots) feed[s.name] = { shape: s.shape, data: new Float32Array(s.shape.reduce((a, d) => a * d, 1)) };
    for (const b of [1, 5]) {
      const out = interpret(step.graph, { ...feed, x: host([b, I], 4), y: host([b, O], 5) });
      expect(out.loss.shape).toEqual([]);
      expect(Number.isFinite(out.loss.data[0])).toBe(true);
    }
  });

  test("eval and predict: inference mode, everything resident and unchanged", () => {
    const m = sequential([dense(H), batchNorm(), dropout(0.5), dense(O, { activation: "softmax" })], { inputShape: [I] });
    const ev = evalGraph(m, { loss: "sparseCategoricalCrossEntropy", metrics: ["accuracy"] });
    expect(Object.values(ev.state).every((v) => v === null)).toBe(true);
    expect(Object.keys(ev.state)).toContain("batch_norm_1/moving_variance");
    expect(ev.graph.nodes.some((n) => n.op === "random")).toBe(false);
    const yIn = ev.graph.nodes.find((n) => n.op === "input" && (n.attrs as { name: string }).name === "y")!;
    expect(yIn.type).toEqual({ dtype: "i32", shape: ["B"] });
    const pr = predictGraph(m);
    expect(pr.graph.outputs.map((o) => o.name)).toEqual(["y"]);
    expect(() => trainStepGraph(m, { loss: "mse", optimizer: sgd(1), metrics: ["accuracy"] })).toThrow(
      "metric accuracy: the loss mse has no notion of a correct prediction",
    );
  });
});

test("conv + batchNorm + dropout (inference): the forward pass on Dawn matches the reference", async () => {
  const m = sequential(
    [
      conv2d(4, 3, { padding: "same", activation: "relu" }),
      batchNorm(),
      dropout(0.3),
      maxPool2d(2),
      flatten(),
      dense(3, { activation: "softmax" }),
    ],
    { inputShape: [6, 5, 2] },
  );
  const { graph, params, variables } = predictGraph(m);
  const feed: Record<string, HostTensor> = { x: host([2, 6, 5, 2], 1), ...inputsFor(params, 4) };
  for (const v of variables)
    feed[v.name] = {
      shape: v.shape,
      data: Array.from(host(v.shape as number[], 9).data, (d) => (v.name.endsWith("variance") ? 1 + 0.5 * d : d)),
    };
  await expectMatchesReference(graph, feed, { atol: 1e-5, rtol: 1e-4 });
});
