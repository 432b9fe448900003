/** ONNX import of LSTM, GRU and RNN (formats/onnx/import-rnn.ts) against ONNX Runtime, through
 *  the float64 interpreter and on Dawn: bidirectional with biases, initial states and peepholes,
 *  reverse GRU with linear_before_reset, layout 1, named activations with their parameters,
 *  clip, and sequence_lens shorter than the sequence; refusals name the node; and the gradient
 *  of an imported LSTM's output with respect to its weights against float64 central differences. */
import { create, toBinary } from "@bufbuild/protobuf";
import { AttributeProto_AttributeType as AT, AttributeProtoSchema, ModelProtoSchema } from "onnx-buf";
import { describe, expect, test } from "vitest";
import { Elem, OnnxWriter, type Attrs } from "../../formats/onnx/export-writer.ts";
import { importOnnx } from "../../formats/onnx/import.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import type { Graph } from "../../src/ir/types.ts";
import { floats } from "../helpers/data.ts";
import { expectGradOk } from "../helpers/gradcheck.ts";
import { runGpu, useGpu } from "../helpers/gpu.ts";
import { replay } from "../helpers/onnx-importer.ts";
import { runOrtFeeds } from "../helpers/ort.ts";

useGpu();

const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

interface Layer {
  readonly op: "LSTM" | "GRU" | "RNN";
  /** X's shape ([seq, batch, in], or [batch, seq, in] with layout 1). */
  readonly x: readonly number[];
  /** Weights by input position (1 = W, 2 = R, 3 = B, 5 = initial_h, 6 = initial_c, 7 = P). */
  readonly weights: Readonly<Record<number, readonly number[]>>;
  readonly attrs: Attrs;
  readonly activations?: readonly string[];
  /** FLOATS attributes (activation_alpha, activation_beta), which the writer has no form for. */
  readonly floatAttrs?: Readonly<Record<string, readonly number[]>>;
  /** sequence_lens (input 4) as an int32 graph input, with its value. */
  readonly lens?: readonly number[];
  /** The outputs' ranks: Y, Y_h (and Y_c). */
  readonly outputs: number;
}

function layerModel(l: Layer, seed: number): { bytes: Uint8Array; names: string[] } {
  const w = new OnnxWriter([], new Map());
  const ins = ["x", "", "", "", "", "", "", ""];
  for (const [i, shape] of Object.entries(l.weights)) {
    ins[Number(i)] = `in${i}`;
    w.weight(
      `in${i}`,
      Elem.FLOAT,
      shape,
      floats(prod(shape), seed + Number(i)).map((v) => v * 0.8),
    );
  }
  if (l.lens) ins[4] = "lens";
  const last = Math.max(...ins.map((n, i) => (n ? i : 0)));
  const names = ["Y", "Y_h", "Y_c"].slice(0, l.outputs);
  w.nodeOutputs(l.op, ins.slice(0, last + 1), l.attrs, { out: "Y", outputs: l.outputs });
  const n = w.nodes[w.nodes.length - 1];
  n.output.splice(0, names.length, ...names);
  if (l.activations) {
    const strings = l.activations.map((s) => new TextEncoder().encode(s));
    n.attribute.push(create(AttributeProtoSchema, { name: "activations", type: AT.STRINGS, strings }));
  }
  for (const [name, floats] of Object.entries(l.floatAttrs ?? {}))
    n.attribute.push(create(AttributeProtoSchema, { name, type: AT.FLOATS, floats: [...floats] }));
  const m = w.model({
    name: "rnn",
    inputs: [
      { name: "x", type: { dtype: "f32", shape: l.x } },
      ...(l.lens ? [{ name: "lens", type: { dtype: "i32" as const, shape: [l.lens.length] } }] : []),
    ],
    outputs: names.map((name, i) => ({ name, type: { dtype: "f32" as const, shape: ["a", "b", "c", "d"].slice(0, i === 0 ? 4 : 3) } })),
    opset: 21,
    producer: { name: "kiln-test", version: "1" },
  });
  return { bytes: toBinary(ModelProtoSchema, m), names };
}

function weightFeeds(graph: Graph, weights: Readonly<Record<string, ArrayLike<number>>>): Record<string, HostTensor> {
  const feeds: Record<string, HostTensor> = {};
  for (const [name, data] of Object.entries(weights)) {
    const node = graph.nodes.find((n) => n.op === "input" && (n.attrs as { name: string }).name === name)!;
    feeds[name] = { shape: node.type.shape as number[], data };
  }
  return feeds;
}

async function agree(l: Layer, seed = 3): Promise<void> {
  const { bytes, names } = layerModel(l, seed);
  const m = importOnnx(bytes);
  const x: HostTensor = { shape: l.x, data: floats(prod(l.x), seed + 50) };
  const feeds = { x, ...weightFeeds(m.graph, m.weights), ...(l.lens ? { lens: { shape: [l.lens.length], data: l.lens } } : {}) };
  const ort = await runOrtFeeds(bytes, {
    x: { ...x, dtype: "f32" },
    ...(l.lens ? { lens: { shape: [l.lens.length], data: l.lens, dtype: "i32" } } : {}),
  });
  const ref = interpret(m.graph, feeds);
  const gpu = await runGpu(m.graph, feeds);
  names.forEach((onnx, k) => {
    const kiln = m.outputInfo[k].name;
    expect(m.outputInfo[k].onnx).toBe(onnx);
    for (const [who, got] of [
      ["float64", ref[kiln]],
      ["Dawn", gpu[kiln]],
    ] as const) {
      expect(got.shape, `${onnx} (${who})`).toEqual(ort[onnx].shape);
      for (let i = 0; i < got.data.length; i++) {
        const want = ort[onnx].data[i];
        if (!(Math.abs(got.data[i] - want) <= 1e-5 * (1 + Math.abs(want))))
          throw new Error(`${onnx}[${i}]: ${who} ${got.data[i]}, ONNX Runtime ${want}`);
      }
    }
  });
}

describe("LSTM, GRU and RNN agree with ONNX Runtime", () => {
  test("LSTM: bidirectional, biases, initial states, peepholes", async () => {
    await agree({
      op: "LSTM",
      x: [5, 2, 3],
      weights: { 1: [2, 16, 3], 2: [2, 16, 4], 3: [2, 32], 5: [2, 2, 4], 6: [2, 2, 4], 7: [2, 12] },
      attrs: { hidden_size: 4, direction: "bidirectional" },
      outputs: 3,
    });
  });

  test("LSTM: reverse, sequence_lens shorter than the sequence, clip", async () => {
    // (ONNX Runtime's CPU LSTM refuses layout 1; the conformance cases test_*_batchwise cover it.)
    await agree({
      op: "LSTM",
      x: [4, 3, 2],
      weights: { 1: [1, 12, 2], 2: [1, 12, 3], 3: [1, 24] },
      attrs: { hidden_size: 3, direction: "reverse", clip: { float: 0.7 } },
      lens: [4, 2, 3],
      outputs: 3,
    });
  });

  test("GRU: reverse with linear_before_reset, and bidirectional without", async () => {
    const gru = (attrs: Attrs, dirs: number): Layer => ({
      op: "GRU",
      x: [4, 3, 2],
      weights: { 1: [dirs, 15, 2], 2: [dirs, 15, 5], 3: [dirs, 30], 5: [dirs, 3, 5] },
      attrs: { hidden_size: 5, ...attrs },
      outputs: 2,
    });
    await agree(gru({ direction: "reverse", linear_before_reset: 1 }, 1));
    await agree(gru({ direction: "bidirectional" }, 2));
  });

  test("RNN and GRU with named activations and their alpha / beta", async () => {
    await agree({
      op: "RNN",
      x: [4, 2, 3],
      weights: { 1: [2, 4, 3], 2: [2, 4, 4], 3: [2, 8] },
      attrs: { hidden_size: 4, direction: "bidirectional" },
      activations: ["Relu", "Softsign"],
      outputs: 2,
    });
    await agree({
      op: "GRU",
      x: [3, 2, 3],
      weights: { 1: [1, 9, 3], 2: [1, 9, 3] },
      attrs: { hidden_size: 3 },
      activations: ["HardSigmoid", "LeakyRelu"],
      floatAttrs: { activation_alpha: [0.3, 0.05], activation_beta: [0.4] },
      outputs: 2,
    });
  });
});

describe("refusals", () => {
  test("input_forget and an unknown activation", () => {
    const refusal = (l: Layer) => {
      try {
        importOnnx(layerModel(l, 1).bytes);
      } catch (e) {
        return (e as Error).message;
      }
      throw new Error("imported");
    };
    const lstm = { op: "LSTM", x: [2, 1, 2], weights: { 1: [1, 8, 2], 2: [1, 8, 2] }, outputs: 3 } as const;
    expect(refusal({ ...lstm, attrs: { hidden_size: 2, input_forget: 1 } })).toMatch(
      /^onnx import: LSTM "LSTM_0" \(opset 21\): input_forget=1 \(coupled input and forget gates\) is not supported/,
    );
    expect(refusal({ ...lstm, attrs: { hidden_size: 2 }, activations: ["Sigmoid", "Gelu", "Tanh"] })).toMatch(
      /LSTM "LSTM_0" \(opset 21\): activation Gelu is not supported/,
    );
  });
});

describe("an imported LSTM is differentiable", () => {
  test("d Σu⊙Y / d (W, R, B) against float64 central differences", () => {
    const l: Layer = {
      op: "LSTM",
      x: [3, 2, 2],
      weights: { 1: [1, 12, 2], 2: [1, 12, 3], 3: [1, 24] },
      attrs: { hidden_size: 3 },
      outputs: 3,
    };
    const m = importOnnx(layerModel(l, 9).bytes);
    const w = weightFeeds(m.graph, m.weights);
    const x = { shape: l.x, data: floats(prod(l.x), 10), dtype: "f32" as const };
    expectGradOk({ inputs: w, fixed: { x }, f: (xs, g) => replay(m.graph, g, xs) }, 1e-5);
  });
});
