/** ONNX import of Conv, ConvTranspose, the pools and LRN (formats/onnx/import-conv.ts), checked
 *  against ONNX Runtime on models written as an exporter writes them (NCHW, random weights, a
 *  symbolic batch), through the float64 interpreter and on Dawn; refusals that name the node;
 *  and the gradient of a loss of an imported CNN (Conv + BatchNormalization + Relu + MaxPool +
 *  Gemm) with respect to its imported weights against float64 central differences. The ONNX
 *  conformance cases of these ops run in the conformance test with the rest. */
import { toBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema } from "onnx-buf";
import { describe, expect, test } from "vitest";
import { Elem, OnnxWriter, type Attrs } from "../../formats/onnx/export-writer.ts";
import { exportOnnx } from "../../formats/onnx/export.ts";
import { importOnnx } from "../../formats/onnx/import.ts";
import { GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import type { Shape } from "../../src/ir/types.ts";
import { floats } from "../helpers/data.ts";
import { buildGradGraph, expectGradOk } from "../helpers/gradcheck.ts";
import { runGpu, useGpu } from "../helpers/gpu.ts";
import { replay } from "../helpers/onnx-importer.ts";
import { agreement, ORT_TOL, runOrt, runOrtFeeds } from "../helpers/ort.ts";

useGpu();

interface Spec {
  readonly input: Shape;
  /** Weights by name: their shapes (values are random, from the seed). */
  readonly weights: Readonly<Record<string, readonly number[]>>;
  /** Writes the nodes from input "x"; the last one's output is "y". */
  readonly nodes: (w: OnnxWriter) => void;
  /** The output's rank (default 4). */
  readonly outRank?: number;
}

const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** The model's bytes, and its weights' values. */
function model(spec: Spec, seed: number): { bytes: Uint8Array; weights: Record<string, HostTensor> } {
  const w = new OnnxWriter([], new Map());
  const weights: Record<string, HostTensor> = {};
  let k = 0;
  for (const [name, shape] of Object.entries(spec.weights)) {
    const data = floats(prod(shape), seed + ++k).map((v) => (name.includes("var") ? 0.5 + Math.abs(v) : v));
    weights[name] = { shape, data };
    w.weight(name, Elem.FLOAT, shape, data);
  }
  spec.nodes(w);
  const m = w.model({
    name: "t",
    inputs: [{ name: "x", type: { dtype: "f32", shape: spec.input } }],
    outputs: [{ name: "y", type: { dtype: "f32", shape: ["o0", "o1", "o2", "o3"].slice(0, spec.outRank ?? 4) } }],
    opset: 21,
    producer: { name: "kiln-test", version: "1" },
  });
  return { bytes: toBinary(ModelProtoSchema, m), weights };
}

/** Imports `spec`, runs it in the interpreter, on Dawn and in ONNX Runtime on a batch of 2. */
async function agree(spec: Spec, seed = 1, tol = 2e-5): Promise<number> {
  const { bytes } = model(spec, seed);
  const m = importOnnx(bytes);
  const shape = spec.input.map((d) => (typeof d === "number" ? d : 2));
  const x: HostTensor = { shape, data: floats(prod(shape), seed + 100) };
  const feeds: Record<string, HostTensor> = { x };
  for (const [name, data] of Object.entries(m.weights)) {
    const node = m.graph.nodes.find((n) => n.op === "input" && (n.attrs as { name: string }).name === name)!;
    feeds[name] = { shape: node.type.shape as number[], data };
  }
  const ort = (await runOrtFeeds(bytes, { x: { ...x, dtype: "f32" } })).y;
  const out = m.outputInfo[0].name;
  const ref = interpret(m.graph, feeds)[out];
  const gpu = (await runGpu(m.graph, feeds))[out];
  expect(ref.shape).toEqual(ort.shape);
  expect(gpu.shape).toEqual(ort.shape);
  let worst = 0;
  for (let i = 0; i < ort.data.length; i++) {
    for (const [who, v] of [
      ["float64", ref.data[i]],
      ["Dawn", gpu.data[i]],
    ] as const) {
      const err = Math.abs(v - ort.data[i]);
      worst = Math.max(worst, err);
      if (!(err <= tol * (1 + Math.abs(ort.data[i])))) throw new Error(`y[${i}]: ${who} ${v}, ONNX Runtime ${ort.data[i]}`);
    }
  }
  return worst;
}

const node = (w: OnnxWriter, op: string, ins: readonly string[], attrs: Attrs = {}, out?: string) => w.node(op, ins, attrs, { out });

describe("Conv, ConvTranspose, pools and LRN agree with ONNX Runtime", () => {
  test("grouped and depthwise convs: group 3 stride 2, depthwise dilated, SAME_LOWER with bias, depthwise SAME_UPPER stride 2", async () => {
    await agree({
      input: ["N", 6, 11, 9],
      weights: { w1: [12, 2, 3, 3], b1: [12], w2: [12, 1, 3, 3], w3: [9, 4, 2, 3], b3: [9], w4: [9, 1, 2, 2] },
      nodes: (w) => {
        const a = node(w, "Conv", ["x", "w1", "b1"], { group: 3, strides: [2, 2], pads: [1, 0, 2, 1] });
        const b = node(w, "Conv", [node(w, "Relu", [a]), "w2"], { group: 12, dilations: [2, 1], pads: [2, 1, 2, 0] });
        const c = node(w, "Conv", [b, "w3", "b3"], { group: 3, auto_pad: "SAME_LOWER", strides: [1, 2] });
        node(w, "Conv", [c, "w4"], { group: 9, auto_pad: "SAME_UPPER", strides: [2, 2] }, "y");
      },
    });
  });

  test("ConvTranspose: group 2, stride 2, pads, output_padding, dilations; and output_shape", async () => {
    await agree({
      input: ["N", 4, 5, 6],
      weights: { w: [4, 3, 3, 3], b: [6], w2: [6, 2, 2, 3] },
      nodes: (w) => {
        const a = node(w, "ConvTranspose", ["x", "w", "b"], { group: 2, strides: [2, 3], pads: [1, 0, 0, 2], output_padding: [1, 2] });
        node(w, "ConvTranspose", [a, "w2"], { dilations: [2, 1], strides: [2, 2], output_shape: [24, 38] }, "y");
      },
    });
  });

  test("MaxPool (ceil_mode, dilations), AveragePool (count_include_pad, ceil_mode), LRN", async () => {
    await agree({
      input: ["N", 5, 12, 11],
      weights: {},
      nodes: (w) => {
        const a = node(w, "MaxPool", ["x"], { kernel_shape: [3, 3], strides: [2, 2], ceil_mode: 1 });
        const b = node(w, "AveragePool", [a], {
          kernel_shape: [3, 2],
          pads: [1, 1, 1, 0],
          count_include_pad: 1,
          ceil_mode: 1,
          strides: [2, 1],
        });
        const c = node(w, "LRN", [b], { size: 3, alpha: { float: 0.02 }, beta: { float: 0.6 }, bias: { float: 1.5 } });
        const d = node(w, "MaxPool", [c], { kernel_shape: [2, 2], dilations: [2, 1], pads: [1, 1, 0, 1] });
        node(w, "AveragePool", [d], { kernel_shape: [2, 2], dilations: [1, 2], pads: [0, 1, 1, 0], strides: [1, 1] }, "y");
      },
    });
  });

  test("1-D Conv and pools ([N, C, L]) run as 2-D with H = 1", async () => {
    await agree({
      input: ["N", 4, 17],
      outRank: 3,
      weights: { w: [6, 2, 3], b: [6] },
      nodes: (w) => {
        const a = node(w, "Conv", ["x", "w", "b"], { group: 2, strides: [2], pads: [2, 1] });
        node(w, "AveragePool", [node(w, "MaxPool", [a], { kernel_shape: [2], strides: [1] })], { kernel_shape: [3], strides: [2] }, "y");
      },
    });
  });
});

describe("refusals name the node and what is missing", () => {
  const refused = (spec: Spec) => {
    try {
      importOnnx(model(spec, 1).bytes);
    } catch (e) {
      return (e as Error).message;
    }
    throw new Error("imported");
  };
  test("3-D convolution, MaxPool's Indices, output_padding past the stride", () => {
    expect(
      refused({ input: [1, 2, 3, 4, 5], weights: { w: [2, 2, 1, 1, 1] }, nodes: (w) => void node(w, "Conv", ["x", "w"], {}, "y") }),
    ).toMatch(/^onnx import: Conv "Conv_0" \(opset 21\): X has rank 5: 3-D Conv is not supported/);
    const indices = refused({
      input: [1, 2, 4, 4],
      weights: {},
      nodes: (w) => void w.nodeOutputs("MaxPool", ["x"], { kernel_shape: [2, 2] }, { out: "y", outputs: 2 }),
    });
    expect(indices).toMatch(/MaxPool "MaxPool_0" \(opset 21\): the Indices output is not supported/);
    expect(
      refused({
        input: [1, 2, 4, 4],
        weights: { w: [2, 2, 3, 3] },
        nodes: (w) => void node(w, "ConvTranspose", ["x", "w"], { strides: [2, 2], output_padding: [2, 0] }, "y"),
      }),
    ).toMatch(/ConvTranspose "ConvTranspose_0" \(opset 21\): the output extends 2 past the last window along spatial axis 0/);
  });
});

describe("an imported CNN is differentiable", () => {
  test("d loss / d weights of Conv + BatchNormalization + Relu + MaxPool + Gemm match float64 central differences", () => {
    const spec: Spec = {
      input: [2, 3, 7, 7],
      outRank: 2,
      weights: { w: [4, 3, 3, 3], b: [4], scale: [4], bias: [4], mean: [4], var: [4], fc: [5, 64], fcb: [5] },
      nodes: (w) => {
        const c = node(w, "Conv", ["x", "w", "b"], { pads: [1, 1, 1, 1] });
        const bn = node(w, "BatchNormalization", [c, "scale", "bias", "mean", "var"], { epsilon: { float: 1e-3 } });
        const p = node(w, "MaxPool", [node(w, "Relu", [bn])], { kernel_shape: [2, 2], strides: [2, 2], ceil_mode: 1 });
        const flat = node(w, "Flatten", [p], { axis: 1 });
        node(w, "Gemm", [flat, "fc", "fcb"], { transB: 1 }, "y");
      },
    };
    const { bytes, weights } = model(spec, 7);
    const m = importOnnx(bytes);
    expect(Object.keys(m.state).sort()).toEqual(Object.keys(spec.weights).sort());
    const x: HostTensor = { shape: [2, 3, 7, 7], data: floats(2 * 3 * 49, 8) };
    const trained = ["w", "b", "scale", "bias", "fc", "fcb"];
    expectGradOk(
      {
        inputs: Object.fromEntries(trained.map((k) => [k, weights[k]])),
        fixed: { x: { ...x, dtype: "f32" }, mean: { ...weights.mean, dtype: "f32" }, var: { ...weights.var, dtype: "f32" } },
        f: (xs, g) => replay(m.graph, g, xs),
      },
      1e-5,
    );
  });
});

describe("an imported grouped CNN's gradient graph on Dawn", () => {
  test("depthwise Conv + grouped Conv + AveragePool (ceil_mode) + ConvTranspose (group 2) + Erf: float64 gradcheck, and the gradients on Dawn", async () => {
    const spec: Spec = {
      input: [2, 4, 8, 7],
      weights: { dw: [4, 1, 3, 3], g: [6, 2, 2, 2], gb: [6], t: [6, 2, 3, 3] },
      nodes: (w) => {
        const a = node(w, "Conv", ["x", "dw"], { group: 4, pads: [1, 1, 1, 1], strides: [2, 1] });
        const b = node(w, "Conv", [a, "g", "gb"], { group: 2, dilations: [1, 2] });
        const p = node(w, "AveragePool", [node(w, "Erf", [b])], { kernel_shape: [2, 2], strides: [2, 2], ceil_mode: 1 });
        node(w, "ConvTranspose", [p, "t"], { group: 2, strides: [2, 2], output_padding: [1, 0] }, "y");
      },
    };
    const { bytes, weights } = model(spec, 11);
    const m = importOnnx(bytes);
    const x = { shape: [2, 4, 8, 7], data: floats(448, 12), dtype: "f32" as const };
    const grad = { inputs: weights, fixed: { x }, f: (xs: Readonly<Record<string, Tensor>>, g: GraphBuilder) => replay(m.graph, g, xs) };
    expectGradOk(grad, 1e-5);
    const { graph, grads } = buildGradGraph(grad);
    const feeds = { ...weights, x };
    const [ref, gpu] = [interpret(graph, feeds), await runGpu(graph, feeds)];
    for (const name of Object.values(grads)) {
      const scale = Math.max(...Array.from(ref[name].data, Math.abs));
      for (let i = 0; i < ref[name].data.length; i++) {
        if (!(Math.abs(gpu[name].data[i] - ref[name].data[i]) <= 1e-5 * scale)) {
          throw new Error(`${name}[${i}]: Dawn ${gpu[name].data[i]}, float64 ${ref[name].data[i]} (largest |g| ${scale})`);
        }
      }
    }
  });
});

describe("grouped conv2d and erf leave Kiln as ONNX and come back", () => {
  test("export: grouped conv2d (Conv group) and its input gradient (ConvTranspose group) and erf agree in ONNX Runtime; import(export) equals the graph", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 7, 6, 6]);
    const f = g.input("f", "f32", [3, 2, 2, 9]);
    const h = g.input("h", "f32", ["B", 4, 3, 9]);
    const a = { strides: [2, 2] as const, padding: [1, 1, 0, 1] as const, dilations: [1, 2] as const };
    const y = x.conv2d(f, { ...a, groups: 3 }).erf();
    const dx = g.add("conv2d_grad_input", [h, f], { ...a, groups: 3, shape: x.shape });
    const graph = g.build({ y, dx });
    const inputs = {
      x: { shape: [2, 7, 6, 6], data: floats(504, 1) },
      f: { shape: [3, 2, 2, 9], data: floats(108, 2) },
      h: { shape: [2, 4, 3, 9], data: floats(216, 3) },
    };
    const bytes = exportOnnx(graph);
    const want = interpret(graph, inputs);
    const a1 = agreement(await runOrt(bytes, graph, inputs), want, ORT_TOL);
    expect(a1.mismatch).toBeUndefined();
    const back = importOnnx(bytes);
    const again = interpret(back.graph, inputs);
    for (const o of back.outputInfo) {
      const w = want[o.onnx];
      expect(again[o.name].shape).toEqual(w.shape);
      for (let i = 0; i < w.data.length; i++) expect(Math.abs(again[o.name].data[i] - w.data[i])).toBeLessThanOrEqual(1e-12);
    }
    // The filter gradient of a grouped conv has no ONNX lowering: refused, naming the node.
    const gf = g.add("conv2d_grad_filter", [x, h], { ...a, groups: 3, shape: f.shape });
    expect(() => exportOnnx(g.build({ gf }))).toThrow(
      /^conv2d_grad_filter %\d+ @ .*: a grouped conv2d_grad_filter \(groups 3\) has no ONNX lowering/,
    );
  });
});
