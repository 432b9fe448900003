/** `kiln export <model> --out model.onnx`: a model as an ONNX file (formats/onnx/export.ts),
 *  written whole or not at all. The model is
 *    - a saved-model folder (TrainedModel.save): its inference graph model.kir with the weights
 *      it reads from weights.safetensors as initializers (optimizer slots are left out);
 *    - a module whose default export is { model, seed? } (a model of the model API at its
 *      initial weights, as compileModel starts it) or { graph, weights? } (any graph; inputs
 *      without weights stay inputs);
 *    - a .kir file: the graph alone, every input an ONNX input. */
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, extname, join, resolve } from "node:path";
import { Model } from "../src/api/model.ts";
import { inputNodes } from "../src/ir/bind.ts";
import { KilnError } from "../src/ir/errors.ts";
import { parseGraph } from "../src/ir/parse.ts";
import { formatType } from "../src/ir/shape.ts";
import type { Graph } from "../src/ir/types.ts";
import { OPSET, onnxModel } from "../formats/onnx/export.ts";
import { readSafetensors, writeFileAtomic } from "../formats/safetensors.ts";
import { toBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema } from "onnx-buf";
import { fromKerasSpec, type KerasSpec } from "./build.ts";
import { loadModule } from "./model-file.ts";

type Weights = Record<string, ArrayLike<number>>;

/** The weights among `all` that `graph` reads. */
function readBy(graph: Graph, all: Weights): Weights {
  return Object.fromEntries(
    inputNodes(graph)
      .filter((n) => n.attrs.name in all)
      .map((n) => [n.attrs.name, all[n.attrs.name]]),
  );
}

export async function exportable(model: string): Promise<{ graph: Graph; weights: Weights }> {
  if (!existsSync(model)) throw new KilnError(`${model}: no such file or folder (a saved-model folder, a module or a .kir graph)`);
  if (existsSync(model) && statSync(model).isDirectory()) {
    const kir = join(model, "model.kir");
    if (!existsSync(kir)) throw new KilnError(`${model}: not a saved-model folder (no model.kir; TrainedModel.save writes one)`);
    const graph = parseGraph(readFileSync(kir, "utf8"));
    const file = readSafetensors(join(model, "weights.safetensors"));
    return { graph, weights: readBy(graph, Object.fromEntries(Object.entries(file.tensors).map(([k, v]) => [k, v.data]))) };
  }
  if (extname(model) === ".kir") return { graph: parseGraph(readFileSync(model, "utf8")), weights: {} };
  const spec = await loadModule(model);
  if (typeof spec === "object" && spec !== null && (spec as KerasSpec).model instanceof Model) {
    const { input } = fromKerasSpec(model, spec as KerasSpec, false);
    return { graph: input.graph, weights: input.weights };
  }
  const m = spec as { graph?: Graph; weights?: Weights };
  if (typeof m !== "object" || m === null || !m.graph)
    throw new KilnError(`${model}: the default export must be { model, seed? } or { graph, weights? } (got ${typeof spec})`);
  return { graph: m.graph, weights: readBy(m.graph, m.weights ?? {}) };
}

/** kiln export: write the model as ONNX and say what the file holds. */
export async function exportCommand(model: string, opts: { out: string }): Promise<void> {
  const { graph, weights } = await exportable(model);
  const proto = onnxModel(graph, { weights, name: basename(resolve(model)).replace(/\.[^.]*$/, "") });
  const bytes = toBinary(ModelProtoSchema, proto);
  writeFileAtomic(opts.out, bytes);
  const g = proto.graph!;
  const inputs = inputNodes(graph).filter((n) => !(n.attrs.name in weights));
  const list = (vs: readonly { name: string; id: number }[]) => vs.map((v) => `${v.name} ${formatType(graph.nodes[v.id].type)}`).join(", ");
  console.log(
    `${opts.out}: ONNX opset ${OPSET}, ${g.node.length} nodes, ${g.initializer.length} initializers, ${(bytes.length / 1024).toFixed(1)} KiB; inputs ${list(inputs.map((n) => ({ name: n.attrs.name, id: n.id })))}; outputs ${list(graph.outputs)}`,
  );
}
