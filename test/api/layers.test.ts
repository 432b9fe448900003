import { describe, expect, test } from "vitest";
import { GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import { glorotNormal, glorotUniform, heNormal, heUniform, orthogonal, gaussian, fans } from "../../src/api/initializers.ts";
import {
  activation,
  avgPool2d,
  batchNorm,
  conv2d,
  dense,
  dropout,
  embedding,
  flatten,
  maxout,
  maxPool2d,
  padding2d,
  type Layer,
  type Scope,
} from "../../src/api/layers.ts";
import { input, model, sequential } from "../../src/api/model.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import { expectGradOk } from "../helpers/gradcheck.ts";
import { host } from "../helpers/data.ts";

/** A scope over given tensors: params by name (differentiated in a gradient check), variables,
 *  noise with a fixed key (so the function is deterministic). */
function fixedScope(g: GraphBuilder, xs: Readonly<Record<string, Tensor>>, training: boolean): Scope & { assigned: Map<number, Tensor> } {
  const assigned = new Map<number, Tensor>();
  const get = (name: string) => {
    if (!xs[name]) throw new Error(`test: no tensor for ${name}`);
    return xs[name];
  };
  return {
    training,
    assigned,
    param: (name) => get(name),
    variable: (name) => get(name),
    assign: (v, next) => void assigned.set(v.id, next),
    uniform: (shape) => g.random(shape, 11, 5),
    addLoss: () => {
      throw new Error("unexpected");
    },
  };
}

/** Check a layer's gradient wrt its input and every parameter by central differences. */
function layerGradOk(
  layer: Layer,
  x: HostTensor,
  params: Record<string, HostTensor>,
  opts: { training?: boolean; fixed?: Record<string, HostTensor> } = {},
) {
  layer.nameAs("layer");
  expectGradOk(
    {
      inputs: { x, ...params },
      fixed: Object.fromEntries(Object.entries(opts.fixed ?? {}).map(([k, v]) => [k, { ...v, dtype: "f32" as const }])),
      f: (xs, g) => layer.call([xs.x], fixedScope(g, xs, opts.training ?? false)),
    },
    1e-5,
  );
}

const outShape = (layers: Layer[], inputShape: number[]) => sequential(layers, { inputShape }).outputs[0].shape;

describe("layer output shapes", () => {
  test("dense, activations, maxout on odd sizes", () => {
    expect(outShape([dense(7, { activation: "relu" }), dense(3, { activation: "softmax" })], [5])).toEqual(["B", 3]);
    expect(outShape([dense(9), maxout(3), activation("tanh")], [1])).toEqual(["B", 3]);
    expect(() => outShape([dense(7), maxout(2)], [3])).toThrow(/maxout: the last axis \(7\) must be a static multiple of pieces \(2\)/);
  });

  test("conv2d same/valid with strides, pools, flatten", () => {
    expect(outShape([conv2d(4, 3, { padding: "same", strides: 2 })], [7, 5, 3])).toEqual(["B", 4, 3, 4]);
    expect(outShape([conv2d(2, [3, 2])], [7, 5, 3])).toEqual(["B", 5, 4, 2]);
    expect(outShape([conv2d(6, 5, { padding: "same" }), maxPool2d(2), avgPool2d(3, 1), flatten()], [9, 11, 1])).toEqual(["B", 2 * 3 * 6]);
  });

  test("'same' padding splits as TF does (the larger half after)", () => {
    expect(padding2d("same", [7, 6], [3, 3], [2, 2])).toEqual([1, 1, 0, 1]);
    expect(padding2d("same", [5, 5], [1, 4], [1, 1])).toEqual([0, 0, 1, 2]);
    expect(padding2d("same", [4, 4], [2, 2], [4, 4])).toEqual([0, 0, 0, 0]);
    expect(padding2d("valid", [4, 4], [3, 3], [1, 1])).toEqual([0, 0, 0, 0]);
  });

  test("embedding maps i32 [B, T] to [B, T, dim]", () => {
    expect(sequential([embedding(10, 3)], { inputShape: [4], inputDtype: "i32" }).outputs[0].shape).toEqual(["B", 4, 3]);
    expect(() => sequential([embedding(10, 3)], { inputShape: [4] })).toThrow(
      /^embedding_1 @ layers\.test\.ts:\d+: takes one i32 index tensor/,
    );
  });

  test("a wrong rank names the layer", () => {
    expect(() => sequential([conv2d(2, 3)], { inputShape: [5] })).toThrow(
      /^conv2d_1 @ layers\.test\.ts:\d+: expects rank 4, got f32\[B,5\]/,
    );
  });
});

describe("initializers", () => {
  test("fans and variance follow Keras", () => {
    expect(fans([3, 3, 2, 8])).toEqual([18, 72]);
    expect(fans([20, 30])).toEqual([20, 30]);
    const stats = (a: Float32Array) => {
      const m = a.reduce((s, v) => s + v, 0) / a.length;
      return { m, v: a.reduce((s, v) => s + (v - m) ** 2, 0) / a.length, max: a.reduce((s, v) => Math.max(s, Math.abs(v)), 0) };
    };
    const shape = [200, 300];
    for (const [init, variance] of [
      [glorotUniform(), 2 / 500],
      [glorotNormal(), 2 / 500],
      [heNormal(), 2 / 200],
      [heUniform(), 2 / 200],
      [gaussian(0.1), 0.01],
    ] as const) {
      const s = stats(init.init(shape, 3));
      expect(Math.abs(s.m)).toBeLessThan(0.01);
      expect(s.v / variance).toBeGreaterThan(0.97);
      expect(s.v / variance).toBeLessThan(1.03);
    }
    // Truncated at 2σ of the widened normal, uniform at its limit.
    expect(stats(heNormal().init(shape, 1)).max).toBeLessThanOrEqual((2 * Math.sqrt(2 / 200)) / 0.87962566103423978 + 1e-6);
    expect(stats(glorotUniform().init(shape, 1)).max).toBeLessThanOrEqual(Math.sqrt(6 / 500));
    expect(glorotUniform().init([4, 4], 9)).toEqual(glorotUniform().init([4, 4], 9));
    expect(glorotUniform().init([4, 4], 9)).not.toEqual(glorotUniform().init([4, 4], 10));
  });

  test("orthogonal gives orthonormal columns (or rows when wide)", () => {
    for (const [r, c] of [
      [6, 4],
      [3, 5],
    ]) {
      const q = orthogonal().init([r, c], 2);
      const small = Math.min(r, c);
      for (let a = 0; a < small; a++)
        for (let b = 0; b < small; b++) {
          let d = 0;
          for (let k = 0; k < Math.max(r, c); k++) d += r >= c ? q[k * c + a] * q[k * c + b] : q[a * c + k] * q[b * c + k];
          expect(d).toBeCloseTo(a === b ? 1 : 0, 5);
        }
    }
  });
});

describe("layer gradients (float64 central differences)", () => {
  test("dense with each activation", () => {
    for (const act of ["sigmoid", "tanh", "leakyRelu", "softmax", "linear"] as const) {
      layerGradOk(dense(3, { activation: act }), host([2, 5], 1), { kernel: host([5, 3], 2), bias: host([3], 3) });
    }
  });

  test("conv2d same with strides, pools, flatten, maxout", () => {
    layerGradOk(conv2d(2, 3, { padding: "same", strides: 2 }), host([2, 5, 4, 3], 4), {
      kernel: host([3, 3, 3, 2], 5),
      bias: host([2], 6),
    });
    layerGradOk(maxPool2d(2), host([1, 4, 5, 2], 7), {});
    layerGradOk(avgPool2d(2, 1), host([2, 3, 3, 2], 8), {});
    layerGradOk(flatten(), host([2, 3, 2, 2], 9), {});
    layerGradOk(maxout(2), host([3, 6], 10), {});
  });

  test("batchNorm in training and inference mode", () => {
    const c = 3;
    const moving = { moving_mean: host([c], 20), moving_variance: { shape: [c], data: [0.5, 1.5, 2] } };
    layerGradOk(batchNorm(), host([4, 2, 2, c], 11), { gamma: host([c], 12), beta: host([c], 13) }, { training: true, fixed: moving });
    layerGradOk(batchNorm(), host([5, c], 14), { gamma: host([c], 15), beta: host([c], 16) }, { training: false, fixed: moving });
  });

  test("dropout in training (fixed mask) and embedding wrt its table", () => {
    layerGradOk(dropout(0.4), host([3, 7], 17), {}, { training: true });
    const emb = embedding(5, 3);
    emb.nameAs("emb");
    expectGradOk({
      inputs: { embeddings: host([5, 3], 18) },
      fixed: { ids: { shape: [2, 3], data: [0, 4, 4, 1, 2, 0], dtype: "i32" } },
      f: (xs, g) => emb.call([xs.ids], fixedScope(g, xs, true)),
    });
  });
});

describe("batchNorm", () => {
  // The graph's constants are f32: momentum, 1 − momentum and ε as the GPU will see them.
  const [M, M1, EPS] = [Math.fround(0.9), Math.fround(1 - 0.9), Math.fround(1e-3)];
  const data = host([4, 3], 30);
  const gammaBeta = {
    "batch_norm_1/gamma": { shape: [3], data: [1.5, -0.5, 2] },
    "batch_norm_1/beta": { shape: [3], data: [0.1, 0.2, -0.3] },
  };
  const moving = {
    "batch_norm_1/moving_mean": { shape: [3], data: [0.2, -0.1, 0] },
    "batch_norm_1/moving_variance": { shape: [3], data: [1.2, 0.7, 2] },
  };

  function run(training: boolean) {
    const m = sequential([batchNorm({ momentum: 0.9, epsilon: 1e-3 })], { inputShape: [3] });
    const g = new GraphBuilder();
    const built = m.build(g, [g.input("x", "f32", ["B", 3])], { training, step: g.input("t", "f32", []) });
    const outs: Record<string, Tensor> = { y: built.outputs[0] };
    for (const v of built.variables) if (v.next) outs[v.name] = v.next;
    return { built, out: interpret(g.build(outs), { x: data, t: { shape: [], data: [1] }, ...gammaBeta, ...moving }) };
  }

  test("training: batch statistics (biased variance) and the moving averages", () => {
    const { built, out } = run(true);
    expect(built.params.map((p) => p.name)).toEqual(["batch_norm_1/gamma", "batch_norm_1/beta"]);
    expect(built.variables.map((v) => v.name)).toEqual(["batch_norm_1/moving_mean", "batch_norm_1/moving_variance"]);
    for (let j = 0; j < 3; j++) {
      const col = [0, 1, 2, 3].map((i) => data.data[i * 3 + j]);
      const mean = col.reduce((a, v) => a + v, 0) / 4;
      const variance = col.reduce((a, v) => a + (v - mean) ** 2, 0) / 4;
      col.forEach((v, i) =>
        expect(out.y.data[i * 3 + j]).toBeCloseTo(
          (gammaBeta["batch_norm_1/gamma"].data[j] * (v - mean)) / Math.sqrt(variance + EPS) + gammaBeta["batch_norm_1/beta"].data[j],
          12,
        ),
      );
      expect(out["batch_norm_1/moving_mean"].data[j]).toBeCloseTo(M * moving["batch_norm_1/moving_mean"].data[j] + M1 * mean, 12);
      expect(out["batch_norm_1/moving_variance"].data[j]).toBeCloseTo(
        M * moving["batch_norm_1/moving_variance"].data[j] + M1 * variance,
        12,
      );
    }
  });

  test("inference: the moving statistics, nothing assigned", () => {
    const { built, out } = run(false);
    expect(built.variables.every((v) => v.next === undefined)).toBe(true);
    for (let i = 0; i < 12; i++) {
      const j = i % 3;
      const ref =
        (gammaBeta["batch_norm_1/gamma"].data[j] * (data.data[i] - moving["batch_norm_1/moving_mean"].data[j])) /
          Math.sqrt(moving["batch_norm_1/moving_variance"].data[j] + EPS) +
        gammaBeta["batch_norm_1/beta"].data[j];
      expect(out.y.data[i]).toBeCloseTo(ref, 12);
    }
  });
});

describe("dropout", () => {
  const ones = { shape: [50, 40], data: new Array(2000).fill(1) };
  function masks(rate: number, steps: number[], training = true) {
    const x = input([40]);
    const m = model({ inputs: x, outputs: dropout(rate).apply(x) });
    const g = new GraphBuilder();
    const t = g.input("t", "f32", []);
    const built = m.build(g, [g.input("x", "f32", ["B", 40])], { training, step: t });
    const graph = g.build({ y: built.outputs[0] });
    return steps.map((s) => Array.from(interpret(graph, { x: ones, t: { shape: [], data: [s] } }).y.data));
  }

  test("drops about `rate` of the units and scales the rest by 1/(1 − rate)", () => {
    const [a] = masks(0.3, [1]);
    const dropped = a.filter((v) => v === 0).length / a.length;
    expect(dropped).toBeGreaterThan(0.27);
    expect(dropped).toBeLessThan(0.33);
    for (const v of a) if (v !== 0) expect(v).toBeCloseTo(1 / 0.7, 6);
    const mean = a.reduce((s, v) => s + v, 0) / a.length;
    expect(Math.abs(mean - 1)).toBeLessThan(0.05);
  });

  test("a new mask at every step; the identity at inference", () => {
    const [a, b, a2] = masks(0.5, [1, 2, 1]);
    expect(a).toEqual(a2);
    const same = a.filter((v, i) => (v === 0) === (b[i] === 0)).length / a.length;
    expect(same).toBeLessThan(0.6);
    expect(masks(0.5, [1], false)[0]).toEqual(ones.data);
  });

  test("two dropout layers draw different masks", () => {
    const x = input([40]);
    const m = model({ inputs: x, outputs: [dropout(0.5).apply(x), dropout(0.5).apply(x)] });
    const g = new GraphBuilder();
    const built = m.build(g, [g.input("x", "f32", ["B", 40])], { training: true, step: g.input("t", "f32", []) });
    const out = interpret(g.build({ a: built.outputs[0], b: built.outputs[1] }), { x: ones, t: { shape: [], data: [3] } });
    expect(Array.from(out.a.data)).not.toEqual(Array.from(out.b.data));
    expect(() => m.build(g, [g.input("x2", "f32", ["B", 40])], { training: true })).toThrow(
      /dropout_1: random noise in training needs the step counter/,
    );
  });
});
