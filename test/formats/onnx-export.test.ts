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
import { softmax } from "../../src/api/composites.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import type { Graph } from "../../src/ir/types.ts";
import { exportOnnx, onnxModel } from "../../formats/onnx/export.ts";
import { lenet5 } from "../../examples/lenet5.ts";
import { buildStep, lenet, lenetShapes, mlp, mlpShapes } from "../../examples/models/networks.ts";
import { squeezeNetKiln, squeezeNetOnnx } from "../bench/onnx-models.ts";
import { squeezeParams } from "../bench/workloads.ts";
import { floats, host } from "../helpers/data.ts";
import { runGpu, useGpu } from "../helpers/gpu.ts";
import { buildGradGraph } from "../helpers/gradcheck.ts";
import { notSmooth } from "../helpers/kinks.ts";
import { buildOpRecipe, forwardGraph, opRecipeArb, recipeInputs, recipeShapes } from "../helpers/random-op-graph.ts";
import { MODEL_CASES, modelCase } from "../helpers/model-cases.ts";
import { agreement, ORT_TOL, runOrt, runOrtFeeds, type Agreement } from "../helpers/ort.ts";

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

describe("the model API's models", () => {
  test.each(MODEL_CASES)("%s", async (what, make) => {
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

describe("the bench's W7 file (onnx-models.ts)", () => {
  test("ONNX Runtime runs it as the same network built in Kiln computes, in float64 and on Dawn", async () => {
    const graph = squeezeNetKiln();
    const x: HostTensor = { shape: [2, 3, 64, 64], data: floats(2 * 3 * 64 * 64, 31) };
    const all: Record<string, HostTensor> = { x };
    for (const { name, value } of squeezeParams(7)) all[name] = value;
    const ort = await runOrtFeeds(squeezeNetOnnx(7), { x: { dtype: "f32", ...x } });
    const ref = agreement(ort, interpret(graph, all));
    const gpu = agreement(ort, await runGpu(graph, all));
    expect(ref.mismatch, "ORT vs float64").toBeUndefined();
    expect(gpu.mismatch, "ORT vs Dawn").toBeUndefined();
    figures.push(`  W7 SqueezeNet-style file vs the same net in Kiln: vs float64 ${fmt(ref)}; vs Dawn ${fmt(gpu)}`);
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

  test("softmax is folded to Softmax; its parts are still exported where something else reads them", async () => {
    const { graph, weights } = modelCase(lenet5(), 2);
    const ops = onnxModel(graph, { weights }).graph!.node.map((n) => n.opType);
    expect(ops.filter((o) => o === "Softmax")).toHaveLength(1);
    expect(ops).not.toContain("Exp");
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 3]);
    const e = x.sub(x.max(1, true).stopGradient()).exp();
    const shared = g.build({ p: e.div(e.sum(1, true)), e, q: softmax(x, 0) });
    expect(
      onnxModel(shared)
        .graph!.node.map((n) => n.opType)
        .filter((o) => o === "Softmax" || o === "Exp"),
    ).toEqual(["Exp", "Softmax", "Softmax"]);
    const data = { x: { shape: [2, 3], data: [1, 2, 3, -4, 0, 40] } };
    expect(agreement(await runOrt(exportOnnx(shared), shared, data), interpret(shared, data)).mismatch).toBeUndefined();
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
