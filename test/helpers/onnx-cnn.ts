/** A small ONNX CNN as an exporter would write it (NCHW, opset 17, the batch a dim_param "N"):
 *  Conv 3×3 (1→4, pads 1, bias) → Relu → MaxPool 2×2 → Flatten → Gemm (transB, 64→3), input "x"
 *  f32[N,1,8,8], output "logits" f32[N,3]; weights from a seed. Imported with Kiln's names x, y
 *  and the batch B, as cli/import.ts importOnnxFile names a one-input, one-output model. */
import { toBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema } from "onnx-buf";
import { Elem, OnnxWriter } from "../../formats/onnx/export-writer.ts";
import { importOnnx, type ImportedOnnx } from "../../formats/onnx/import.ts";
import { floats } from "./data.ts";

export const CNN = { channels: 1, size: 8, filters: 4, classes: 3 } as const;
export const CONV_WEIGHTS = ["conv/weight", "conv/bias"] as const;
export const FC_WEIGHTS = ["fc/weight", "fc/bias"] as const;

export function cnnOnnx(seed: number): Uint8Array {
  const { channels, size, filters, classes } = CNN;
  const flat = filters * (size / 2) * (size / 2);
  const w = new OnnxWriter([], new Map());
  const scaled = (n: number, s: number, k: number) => floats(n, seed * 10 + k).map((v) => v * s);
  w.weight("conv/weight", Elem.FLOAT, [filters, channels, 3, 3], scaled(filters * channels * 9, 0.5, 1));
  w.weight("conv/bias", Elem.FLOAT, [filters], scaled(filters, 0.1, 2));
  w.weight("fc/weight", Elem.FLOAT, [classes, flat], scaled(classes * flat, 0.2, 3));
  w.weight("fc/bias", Elem.FLOAT, [classes], scaled(classes, 0.1, 4));
  const conv = w.node("Conv", ["x", "conv/weight", "conv/bias"], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] });
  const pool = w.node("MaxPool", [w.node("Relu", [conv])], { kernel_shape: [2, 2], strides: [2, 2] });
  w.node("Gemm", [w.node("Flatten", [pool], { axis: 1 }), "fc/weight", "fc/bias"], { transB: 1 }, { out: "logits" });
  const model = w.model({
    name: "tiny-cnn",
    inputs: [{ name: "x", type: { dtype: "f32", shape: ["N", channels, size, size] } }],
    outputs: [{ name: "logits", type: { dtype: "f32", shape: ["N", classes] } }],
    opset: 17,
    producer: { name: "kiln-test", version: "1" },
  });
  return toBinary(ModelProtoSchema, model);
}

export const importCnn = (seed: number): ImportedOnnx => importOnnx(cnnOnnx(seed), { names: { logits: "y" }, dims: { N: "B" } });

/** `n` images and their classes: the class is which third of the image is brightest, so the
 *  task is learnable by the CNN. */
export function cnnBatch(n: number, seed: number): { x: Float32Array; classes: Int32Array; oneHot: Float32Array } {
  const { size, classes } = CNN;
  const x = Float32Array.from(floats(n * size * size, seed), (v) => 0.5 * v);
  const labels = new Int32Array(n);
  const oneHot = new Float32Array(n * classes);
  for (let i = 0; i < n; i++) {
    const c = i % classes;
    labels[i] = c;
    oneHot[i * classes + c] = 1;
    for (let r = 0; r < size; r++)
      for (let col = Math.floor((c * size) / classes); col < Math.floor(((c + 1) * size) / classes); col++)
        x[i * size * size + r * size + col] += 1;
  }
  return { x, classes: labels, oneHot };
}
