/** `kiln import model.onnx --out dir`: an ONNX file as a saved-model folder — model.kir (the
 *  imported graph in text IR) and weights.safetensors (its initializers) — which loadPredictor,
 *  `kiln explain`, `kiln run` and `kiln build` take like one TrainedModel.save wrote. A model
 *  with one data input and one output gets Kiln's names for them, x and y, and a symbolic first
 *  dim of x becomes the batch B (loadPredictor's and the bundles' conventions); the ONNX names
 *  are kept in the weights' metadata. `.onnx` files are also taken directly by explain and
 *  build (cli/model-file.ts, cli/build.ts), imported the same way. */
import { fromBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema } from "onnx-buf";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { KilnError } from "../src/ir/errors.ts";
import { printGraph } from "../src/ir/print.ts";
import { formatType } from "../src/ir/shape.ts";
import type { DType } from "../src/ir/types.ts";
import { importOnnx, type ImportedOnnx } from "../formats/onnx/import.ts";
import { writeFileAtomic, writeSafetensors, type SafeDtype, type SafeTensor } from "../formats/safetensors.ts";

const SAFE: Readonly<Record<DType, SafeDtype>> = { f32: "F32", i32: "I32", u32: "U32", bool: "BOOL" };

/** The ONNX file imported, with the x / y / B names where the model has one input and one output. */
export function importOnnxFile(file: string): ImportedOnnx {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new KilnError(`${file}: cannot read (${(e as Error).message})`);
  }
  const first = importOnnx(bytes);
  if (first.inputs.length !== 1 || first.outputInfo.length !== 1) return first;
  const names = { [first.inputs[0].onnx]: "x", [first.outputInfo[0].onnx]: "y" };
  const proto = fromBinary(ModelProtoSchema, bytes);
  const input = proto.graph?.input.find((i) => i.name === first.inputs[0].onnx);
  const dim = input?.type?.value.case === "tensorType" ? input.type.value.value.shape?.dim[0]?.value : undefined;
  const dims = dim?.case === "dimParam" ? { [dim.value]: "B" } : {};
  return importOnnx(bytes, { names, dims });
}

/** kiln import: write the saved-model folder and say what it holds. */
export function importCommand(file: string, opts: { out: string }): void {
  const m = importOnnxFile(file);
  const tensors: Record<string, SafeTensor> = {};
  for (const n of m.graph.nodes) {
    const name = n.op === "input" ? (n.attrs as { name: string }).name : "";
    if (name in m.weights) tensors[name] = { dtype: SAFE[n.type.dtype], shape: n.type.shape as number[], data: m.weights[name] };
  }
  mkdirSync(opts.out, { recursive: true });
  writeSafetensors(join(opts.out, "weights.safetensors"), tensors, {
    source: "onnx",
    opset: String(m.opset),
    inputs: JSON.stringify(m.inputs),
    outputs: JSON.stringify(m.outputInfo),
  });
  writeFileAtomic(join(opts.out, "model.kir"), `${printGraph(m.graph)}\n`);
  const type = (name: string) => {
    const n = m.graph.nodes.find((v) => v.op === "input" && (v.attrs as { name: string }).name === name)!;
    return formatType(n.type);
  };
  const list = (vs: readonly { name: string; onnx: string }[], t: (name: string) => string) =>
    vs.map((v) => `${v.name} ${t(v.name)}${v.name === v.onnx ? "" : ` (${v.onnx})`}`).join(", ");
  const outType = (name: string) => formatType(m.graph.nodes[m.graph.outputs.find((o) => o.name === name)!.id].type);
  const count = m.graph.nodes.filter((n) => n.op !== "input").length;
  console.log(
    `${opts.out}: ${count} Kiln nodes from ONNX opset ${m.opset}, ${Object.keys(tensors).length} weights; inputs ${list(m.inputs, type)}; outputs ${list(m.outputInfo, outType)}`,
  );
}
