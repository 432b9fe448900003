/** ONNX export: a Kiln graph (any graph whose ops have an ONNX form, e.g. a model's inference
 *  graph from predictGraph) as an ONNX model, opset 17.
 *      const bytes = exportOnnx(predictGraph(model).graph, { weights: await m.getWeights() });
 *  - Graph inputs keep their names, dtypes and shapes; a symbolic dim ("B") is a dim_param.
 *  - Inputs given in `weights` become initializers under their Kiln names ("dense_1/kernel"),
 *    so the file runs with only the data inputs fed. A conv filter read only by convolutions
 *    is stored in ONNX's OIHW layout (Kiln's is HWIO); its doc_string says so.
 *  - Outputs keep their names; each node's doc_string is the Kiln node and its site
 *    ("%12 matmul @ mnist-mlp.ts:33 (dense_1)").
 *  - Kiln's softmax composite becomes ONNX's Softmax (export-patterns.ts); all else is exported
 *    primitive by primitive.
 *  - An op with no ONNX form (random) is refused with an error naming the node and why.
 *  Each primitive's lowering is in export-ops.ts (export-conv.ts for convolutions). */
import { toBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema, type ModelProto } from "onnx-buf";
import { inputNodes } from "../../src/ir/bind.ts";
import { describeNode, KilnError } from "../../src/ir/errors.ts";
import { liveNodes } from "../../src/ir/live.ts";
import { formatType, isStatic } from "../../src/ir/shape.ts";
import type { Graph, Node, OpKind, ValueId } from "../../src/ir/types.ts";
import { VERSION } from "../../src/version.ts";
import { writeFileAtomic } from "../safetensors.ts";
import { LOWER, type Lower, type LowerCtx } from "./export-ops.ts";
import { findFolds } from "./export-patterns.ts";
import { ELEM_OF, OnnxWriter, type Attrs, type DimSources } from "./export-writer.ts";

export const OPSET = 17;
const HWIO_TO_OIHW = [3, 2, 0, 1];

export interface OnnxExportOptions {
  /** Values of graph inputs to store as initializers (the resident weights), by input name. */
  readonly weights?: Readonly<Record<string, ArrayLike<number>>>;
  /** The ONNX graph's name (default "kiln"). */
  readonly name?: string;
  readonly docString?: string;
}

/** The data of HWIO `values` laid out OIHW. */
function toOihw(values: ArrayLike<number>, [kh, kw, ci, co]: readonly number[]): Float32Array {
  const out = new Float32Array(values.length);
  for (let h = 0; h < kh; h++)
    for (let w = 0; w < kw; w++)
      for (let i = 0; i < ci; i++)
        for (let o = 0; o < co; o++) out[((o * ci + i) * kh + h) * kw + w] = values[((h * kw + w) * ci + i) * co + o];
  return out;
}

/** Weight inputs whose every use is a conv filter slot: they can be stored OIHW. */
function filterOnly(g: Graph, live: readonly boolean[], weights: ReadonlySet<ValueId>): Set<ValueId> {
  const ok = new Set(weights);
  for (const o of g.outputs) ok.delete(o.id);
  for (const n of g.nodes) {
    if (!live[n.id]) continue;
    n.inputs.forEach((v, slot) => {
      if (!((n.op === "conv2d" || n.op === "conv2d_grad_input") && slot === 1)) ok.delete(v);
    });
  }
  return ok;
}

function checkWeights(inputs: readonly Node<"input">[], weights: Readonly<Record<string, ArrayLike<number>>>): void {
  for (const [name, values] of Object.entries(weights)) {
    const n = inputs.find((i) => i.attrs.name === name);
    if (!n) throw new KilnError(`onnx export: a weight "${name}" is given, but the graph has no input of that name`);
    if (!isStatic(n.type.shape)) throw new KilnError(`onnx export: weight "${name}" ${formatType(n.type)} needs a static shape`);
    const size = n.type.shape.reduce((a, d) => a * d, 1);
    if (values.length !== size)
      throw new KilnError(`onnx export: weight "${name}" ${formatType(n.type)} has ${values.length} values, not ${size}`);
  }
}

/** The graph as an ONNX ModelProto. */
export function onnxModel(graph: Graph, opts: OnnxExportOptions = {}): ModelProto {
  const weights = opts.weights ?? {};
  const inputs = inputNodes(graph);
  checkWeights(inputs, weights);
  const inputName = new Map(inputs.map((n) => [n.id, n.attrs.name]));
  for (const o of graph.outputs) {
    const clash = inputs.find((n) => n.attrs.name === o.name && n.id !== o.id);
    if (clash) throw new KilnError(`onnx export: output "${o.name}" has the name of an input; ONNX names each value once`);
  }
  const fed = inputs.filter((n) => !(n.attrs.name in weights));
  const dims = new Map<string, { input: string; axis: number }>();
  for (const n of fed)
    n.type.shape.forEach((d, axis) => typeof d === "string" && !dims.has(d) && dims.set(d, { input: n.attrs.name, axis }));
  const w = new OnnxWriter([...inputs.map((n) => n.attrs.name), ...graph.outputs.map((o) => o.name)], dims as DimSources);

  const { folds, needed: live } = findFolds(graph, liveNodes(graph));
  const weightIds = new Set(inputs.filter((n) => n.attrs.name in weights).map((n) => n.id));
  const oihwWeights = filterOnly(graph, live, weightIds);
  for (const n of inputs) {
    const values = weights[n.attrs.name];
    if (!values) continue;
    const shape = n.type.shape as number[];
    if (oihwWeights.has(n.id)) {
      const [kh, kw, ci, co] = shape;
      w.weight(
        n.attrs.name,
        ELEM_OF.f32,
        [co, ci, kh, kw],
        toOihw(values, shape),
        `Kiln's HWIO filter f32[${shape}], stored OIHW for Conv`,
      );
    } else w.weight(n.attrs.name, ELEM_OF[n.type.dtype], shape, values);
  }

  const names = new Map<ValueId, string>(inputName);
  const outName = new Map<ValueId, string>();
  for (const o of graph.outputs) if (!outName.has(o.id) && !inputName.has(o.id)) outName.set(o.id, o.name);
  for (const n of graph.nodes) {
    if (!live[n.id] || n.op === "input") continue;
    const out = outName.get(n.id) ?? w.fresh(`t${n.id}`);
    const fold = folds.get(n.id);
    names.set(
      n.id,
      fold
        ? w.node(fold.op, [names.get(fold.input)!], { axis: fold.axis }, { out, doc: `%${n.id} softmax (folded) @ ${n.site}` })
        : lowerNode(graph, n, names, w, out, oihwWeights),
    );
  }
  // An output that is an input, an alias of another value, or a second name for one.
  for (const o of graph.outputs) if (names.get(o.id) !== o.name) w.node("Identity", [names.get(o.id)!], {}, { out: o.name });

  return w.model({
    name: opts.name ?? "kiln",
    docString: opts.docString,
    inputs: fed.map((n) => ({ name: n.attrs.name, type: n.type })),
    outputs: graph.outputs.map((o) => ({ name: o.name, type: graph.nodes[o.id].type })),
    opset: OPSET,
    producer: { name: "kiln", version: VERSION },
  });
}

function lowerNode(g: Graph, n: Node, names: ReadonlyMap<ValueId, string>, w: OnnxWriter, out: string, oihw: ReadonlySet<ValueId>): string {
  const where = describeNode(n.op, n.id, n.site);
  const rule = LOWER[n.op];
  if ("refuse" in rule) throw new KilnError(`${where}: ${n.op} has no ONNX form: ${rule.refuse}`);
  const doc = `%${n.id} ${n.op}${n.site ? ` @ ${n.site}` : ""}`;
  let named = false;
  const ctx: LowerCtx<OpKind> = {
    node: n,
    attrs: n.attrs,
    type: n.type,
    ins: n.inputs.map((i) => g.nodes[i].type),
    x: n.inputs.map((i) => names.get(i)!),
    w,
    out,
    op(op: string, inputs: readonly string[], attrs: Attrs = {}, last = false) {
      if (last && named) throw new KilnError(`${where}: onnx export names two nodes ${out} (a bug in its lowering)`);
      named ||= last;
      return w.node(op, inputs, attrs, { out: last ? out : undefined, doc });
    },
    oihw(i: number) {
      const v = n.inputs[i];
      return oihw.has(v) ? names.get(v)! : w.once(`oihw:${v}`, () => w.node("Transpose", [names.get(v)!], { perm: HWIO_TO_OIHW }, { doc }));
    },
  };
  try {
    return (rule as Lower<OpKind>)(ctx);
  } catch (e) {
    if (e instanceof KilnError && e.message.startsWith(where)) throw e;
    throw new KilnError(`${where}: ${(e as Error).message}`);
  }
}

/** The ONNX model's bytes. */
export function exportOnnx(graph: Graph, opts: OnnxExportOptions = {}): Uint8Array {
  return toBinary(ModelProtoSchema, onnxModel(graph, opts));
}

/** Writes the model to `path` whole or not at all. */
export function writeOnnx(path: string, graph: Graph, opts: OnnxExportOptions = {}): void {
  writeFileAtomic(path, exportOnnx(graph, opts));
}
