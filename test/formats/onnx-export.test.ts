/** Exported models run in ONNX Runtime (onnxruntime-node, CPU) — an independent runtime — and
 *  agree with Kiln: |ort − kiln| ≤ 1e-5 + 1e-5·|kiln| per element, against both the float64
 *  interpreter and Dawn, for the model API's models (MLP with dropout, LeNet-5, batchNorm, an
 *  LSTM as in examples/sequence.ts, the sparse autoencoder, an embedding), the benchmarks'
 *  MLP and LeNet-5 graphs (examples/models/networks.ts), and random graphs over the op table
 *  (against float64: Dawn's own agreement with it is tested in test/api/random-grad.test.ts, to
 *  a looser bound because WGSL's sin and cos are only accurate to 2^-11). The largest errors
 *  are printed per model. */
import fc from "fast-check";
import { afterAll, describe, expect, test } from "vitest";
import { GraphBuilder } from "../../src/api/builder.ts";
import { avgPool2d, batchNorm, conv2d, dense, dropout, embedding, flatten, maxout } from "../../src/api/layers.ts";
import { predictGraph, sequential, type Model } from "../../src/api/model.ts";
import { lstm, simpleRnn } from "../../src/api/recurrent.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import type { Graph } from "../../src/ir/types.ts";
import { exportOnnx, onnxModel } from "../../formats/onnx/export.ts";
import { lenet5 } from "../../examples/lenet5.ts";
import { buildStep, lenet, lenetShapes, mlp, mlpShapes } from "../../examples/models/networks.ts";
import { sparseAutoencoder } from "../../examples/sparse-autoencoder.ts";
import { floats, host } from "../helpers/data.ts";
import { runGpu, useGpu } from "../helpers/gpu.ts";
import { buildGradGraph } from "../helpers/gradcheck.ts";
import { notSmooth } from "../helpers/kinks.ts";
import { buildOpRecipe, forwardGraph, opRecipeArb, recipeInputs, recipeShapes } from "../helpers/random-op-graph.ts";
import { agreement, ORT_TOL, runOrt, type Agreement } from "../helpers/ort.ts";

useGpu();

const figures: string[] = [];
afterAll(() => console.log(`ONNX Runtime vs Kiln (max |Δ|, max |Δ|/|kiln|):\n${figures.join("\n")}`));

const fmt = (a: Agreement) => `${a.maxAbs.toExponential(1)} abs, ${a.maxRel.toExponential(1)} rel`;

/** ORT against the float64 reference and (unless `dawn` is false) against Dawn. */
async function expectAgrees(
  what: string,
  graph: Graph,
  weights: Record<string, Float32Array>,
  data: Record<string, HostTensor>,
  dawn = true,
) {
  const bytes = exportOnnx(graph, { weights });
  const all: Record<string, HostTensor> = { ...data };
  for (const [k, v] of Object.entries(weights))
    all[k] = {
      shape: graph.nodes.find((n) => n.op === "input" && (n.attrs as { name: string }).name === k)!.type.shape as number[],
      data: v,
    };
  const ort = await runOrt(bytes, graph, data);
  const ref = agreement(ort, interpret(graph, all));
  expect(ref.mismatch, `${what}: ORT vs float64`).toBeUndefined();
  let line = `  ${what}: vs float64 ${fmt(ref)}`;
  if (dawn) {
    const gpu = agreement(ort, await runGpu(graph, all));
    expect(gpu.mismatch, `${what}: ORT vs Dawn`).toBeUndefined();
    line += `; vs Dawn ${fmt(gpu)}`;
  }
  figures.push(line);
}

/** A model's inference graph, its weights at `seed` (variables too, perturbed so moving
 *  statistics are not the identity) and a batch of 5. */
function modelCase(m: Model, seed: number, x: (n: number) => number[] = (n) => floats(n, seed + 7)) {
  const mg = predictGraph(m);
  const weights: Record<string, Float32Array> = {};
  for (const p of mg.params) weights[p.name] = p.initial(seed);
  mg.variables.forEach((v, k) => (weights[v.name] = Float32Array.from(floats(v.initial(seed).length, seed + k), (u) => 1 + 0.5 * u)));
  const [spec] = m.inputs;
  const shape = [5, ...spec.shape];
  return { graph: mg.graph, weights, data: { [spec.name]: { shape, data: x(shape.reduce((a, d) => a * d, 1)) } } };
}

describe("the model API's models", () => {
  const models: [string, () => ReturnType<typeof modelCase>][] = [
    [
      "MNIST MLP 784-500-500-10, relu, dropout, softmax",
      () =>
        modelCase(
          sequential(
            [
              dense(500, { activation: "relu" }),
              dropout(0.2),
              dense(500, { activation: "relu" }),
              dropout(0.2),
              dense(10, { activation: "softmax" }),
            ],
            {
              inputShape: [784],
            },
          ),
          1,
          (n) => floats(n, 3).map((v) => (v + 1) / 2),
        ),
    ],
    ["LeNet-5 (examples/lenet5.ts)", () => modelCase(lenet5(), 2, (n) => floats(n, 4).map((v) => (v + 1) / 2))],
    [
      "conv + batchNorm + avgPool, dense + batchNorm, maxout, tanh",
      () =>
        modelCase(
          sequential(
            [
              conv2d(4, 3, { padding: "same", strides: 2 }),
              batchNorm(),
              avgPool2d(2),
              flatten(),
              dense(12),
              batchNorm({ epsilon: 1e-2 }),
              maxout(3),
              dense(3, { activation: "tanh" }),
            ],
            { inputShape: [9, 8, 3] },
          ),
          3,
        ),
    ],
    [
      "LSTM 16 units over 12 steps + dense(1) (examples/sequence.ts)",
      () => modelCase(sequential([lstm(16), dense(1)], { inputShape: [12, 2] }), 4),
    ],
    [
      "simple RNN, returnSequences",
      () => modelCase(sequential([simpleRnn(8, { returnSequences: true }), flatten(), dense(2)], { inputShape: [5, 3] }), 5),
    ],
    [
      "sparse autoencoder 784-64-784 (examples/sparse-autoencoder.ts)",
      () => modelCase(sparseAutoencoder(64, 0.1, 3), 6, (n) => floats(n, 8).map((v) => (v + 1) / 2)),
    ],
    [
      "embedding (i32 indices) + dense softmax",
      () =>
        modelCase(
          sequential([embedding(20, 4), flatten(), dense(5, { activation: "softmax" })], { inputShape: [6], inputDtype: "i32" }),
          7,
          (n) => Array.from({ length: n }, (_, i) => (i * 7) % 20),
        ),
    ],
  ];
  test.each(models)("%s", async (what, make) => {
    const { graph, weights, data } = make();
    await expectAgrees(what, graph, weights, data);
  });
});

describe("the benchmarks' networks (examples/models/networks.ts), forward graphs", () => {
  const weightsOf = (shapes: Record<string, { shape: number[] }>) =>
    Object.fromEntries(Object.entries(shapes).map(([k, { shape }], i) => [k, Float32Array.from(host(shape, 40 + i).data, (v) => v * 0.2)]));
  test.each([
    ["MLP", mlp, mlpShapes(), [6, 784]],
    ["LeNet-5", lenet, lenetShapes(), [3, 28, 28, 1]],
  ] as const)("%s", async (what, forward, shapes, xShape) => {
    const values = { ...shapes, x: { shape: ["B", ...xShape.slice(1)] } };
    const { graph } = buildStep({ kind: "forward", lr: 0 }, forward, values as never);
    await expectAgrees(`${what} (networks.ts)`, graph, weightsOf(shapes), { x: host(xShape, 9) });
  });
});

describe("random graphs over the op table, against float64", () => {
  const smooth = (g: Graph, inputs: Record<string, HostTensor>) => notSmooth(g, [inputs], { margin: 1e-3, limit: 1e3 }) === undefined;
  let worst = { maxAbs: 0, maxRel: 0 };
  afterAll(() => figures.push(`  random graphs (forward and gradient): vs float64 ${fmt(worst)}`));

  const check = async (graph: Graph, inputs: Record<string, HostTensor>) => {
    const a = agreement(await runOrt(exportOnnx(graph), graph, inputs), interpret(graph, inputs), ORT_TOL);
    if (a.mismatch) throw new Error(`${a.mismatch}\n${JSON.stringify(onnxModel(graph).graph!.node.map((n) => n.opType))}`);
    worst = { maxAbs: Math.max(worst.maxAbs, a.maxAbs), maxRel: Math.max(worst.maxRel, a.maxRel) };
  };

  test("200 forward graphs", async () => {
    await fc.assert(
      fc.asyncProperty(opRecipeArb, async (r) => {
        const inputs = recipeInputs(r);
        fc.pre(smooth(forwardGraph(r), inputs));
        await check(forwardGraph(r), inputs);
      }),
      { seed: 1713, numRuns: 200 },
    );
  });

  test("100 gradient graphs (conv2d_grad_*, pool gradients, gather's one-hot matmul …)", async () => {
    await fc.assert(
      fc.asyncProperty(opRecipeArb, async (r) => {
        const inputs = recipeInputs(r);
        fc.pre(smooth(forwardGraph(r), inputs));
        const { graph } = buildGradGraph({ inputs, shapes: recipeShapes(r), f: (xs) => buildOpRecipe(r, xs) }, r.seed);
        await check(graph, inputs);
      }),
      { seed: 1714, numRuns: 100 },
    );
  });
});

describe("the file keeps Kiln's names", () => {
  test("inputs, outputs, weights, a symbolic batch as dim_param, conv filters OIHW", () => {
    const { graph, weights } = modelCase(lenet5(), 2);
    const g = onnxModel(graph, { weights }).graph!;
    expect(g.input.map((v) => v.name)).toEqual(["x"]);
    expect(g.output.map((v) => v.name)).toEqual(["y"]);
    const dims = (v: (typeof g.input)[number]) =>
      (v.type!.value.value as { shape: { dim: { value: { value: unknown } }[] } }).shape.dim.map((d) => d.value.value);
    expect(dims(g.input[0])).toEqual(["B", 28n, 28n, 1n]);
    expect(dims(g.output[0])).toEqual(["B", 10n]);
    const inits = Object.fromEntries(g.initializer.map((t) => [t.name, t.dims.map(Number)]));
    expect(inits["conv2d_1/kernel"]).toEqual([6, 1, 5, 5]);
    expect(inits["dense_1/kernel"]).toEqual([400, 120]);
    expect(Object.keys(weights).every((k) => k in inits)).toBe(true);
    expect(g.node.every((n) => n.docString.startsWith("%"))).toBe(true);
    expect(g.node.find((n) => n.opType === "Conv")!.docString).toMatch(/conv2d @ .*lenet5\.ts:\d+ \(conv2d_1\)/);
  });

  test("an output that is an input, or two outputs of one value, get Identity nodes", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 2]);
    const y = x.mul(2);
    const graph = g.build({ same: x, y, z: y });
    const data = { x: { shape: [2, 2], data: [1, 2, 3, 4] } };
    expect(agreement(await runOrt(exportOnnx(graph), graph, data), interpret(graph, data)).mismatch).toBeUndefined();
  });
});
