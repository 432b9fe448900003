/** The ONNX files the bench runs: W7's SqueezeNet-style CNN (workloads.ts SQUEEZENET), written
 *  with onnx-buf as any ONNX exporter would write it — NCHW, Conv with bias, Relu, MaxPool,
 *  Concat, GlobalAveragePool, Flatten, opset 17, the batch a dim_param "N" — and
 *  W2's MLP exported from Kiln's own graph. Weights come from workloads.ts, so every runner
 *  loads the same numbers. */
import { exportOnnx } from "../../formats/onnx/export.ts";
import { Elem, OnnxWriter } from "../../formats/onnx/export-writer.ts";
import { buildStep, mlp } from "./kiln-graphs.ts";
import { SQUEEZENET, squeezeLayers, squeezeParams, type ConvLayer, type WorkloadSpec, paramsFor } from "./workloads.ts";
import { toBinary } from "@bufbuild/protobuf";
import { concat, GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import type { Graph } from "../../src/ir/types.ts";
import { ModelProtoSchema } from "onnx-buf";

/** W7's network as an ONNX model: input "x" f32[N,3,64,64], output "logits" f32[N,10]. */
export function squeezeNetOnnx(seed: number): Uint8Array {
  const w = new OnnxWriter([], new Map());
  for (const { name, value } of squeezeParams(seed)) w.weight(name, Elem.FLOAT, value.shape, value.data);
  const conv = (x: string, l: ConvLayer) =>
    w.node("Relu", [
      w.node("Conv", [x, `${l.name}/weight`, `${l.name}/bias`], {
        kernel_shape: [l.k, l.k],
        strides: [l.stride, l.stride],
        pads: [l.pad, l.pad, l.pad, l.pad],
      }),
    ]);
  const layers = squeezeLayers();
  let h = "x";
  for (let i = 0; i < layers.length; i++) {
    const l = layers[i];
    if ("pool" in l) {
      h = w.node("MaxPool", [h], { kernel_shape: [3, 3], strides: [2, 2] });
    } else if (l.name.endsWith("/squeeze")) {
      const s = conv(h, l);
      const [e1, e3] = [layers[i + 1], layers[i + 2]] as ConvLayer[];
      h = w.node("Concat", [conv(s, e1), conv(s, e3)], { axis: 1 });
      i += 2;
    } else h = conv(h, l);
  }
  // Logits, not probabilities: the checksum of a softmax would be 1/classes whatever it computed.
  w.node("Flatten", [w.node("GlobalAveragePool", [h])], { axis: 1 }, { out: "logits" });
  const { channels, size, classes } = SQUEEZENET;
  const model = w.model({
    name: "squeezenet-mini",
    inputs: [{ name: "x", type: { dtype: "f32", shape: ["N", channels, size, size] } }],
    outputs: [{ name: "logits", type: { dtype: "f32", shape: ["N", classes] } }],
    opset: 17,
    producer: { name: "kiln-bench", version: "1" },
  });
  return toBinary(ModelProtoSchema, model);
}

/** W7's network built directly in Kiln (NHWC, the OIHW weights permuted to HWIO in the graph),
 *  with the file's weight names as inputs: the check that the generated file means what it
 *  says, without Kiln's importer. Input "x" is NCHW, as the file's. */
export function squeezeNetKiln(): Graph {
  const g = new GraphBuilder();
  const { channels, size } = SQUEEZENET;
  const x = g.input("x", "f32", ["N", channels, size, size]).permute([0, 2, 3, 1]);
  const conv = (h: Tensor, l: ConvLayer) =>
    h
      .conv2d(g.input(`${l.name}/weight`, "f32", [l.cout, l.cin, l.k, l.k]).permute([2, 3, 1, 0]), {
        strides: [l.stride, l.stride],
        padding: [l.pad, l.pad, l.pad, l.pad],
      })
      .add(g.input(`${l.name}/bias`, "f32", [l.cout]))
      .relu();
  const layers = squeezeLayers();
  let h = x;
  for (let i = 0; i < layers.length; i++) {
    const l = layers[i];
    if ("pool" in l) h = h.maxPool2d([3, 3], [2, 2]);
    else if (l.name.endsWith("/squeeze")) {
      const s = conv(h, l);
      h = concat([conv(s, layers[i + 1] as ConvLayer), conv(s, layers[i + 2] as ConvLayer)], 3);
      i += 2;
    } else h = conv(h, l);
  }
  return g.build({ logits: h.mean([1, 2]) });
}

/** W2's MLP forward graph (networks.ts) exported from Kiln, its parameters as initializers. */
export function mlpOnnx(spec: WorkloadSpec): Uint8Array {
  const params = paramsFor(spec);
  const shapes = Object.fromEntries([["x", { shape: ["B", 784] }], ...params.map(({ name, value }) => [name, value])]);
  const { graph } = buildStep({ kind: "forward", lr: 0 }, mlp, shapes);
  return exportOnnx(graph, { weights: Object.fromEntries(params.map(({ name, value }) => [name, value.data])), name: "mlp" });
}
