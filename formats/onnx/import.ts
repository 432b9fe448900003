/** ONNX import: an ONNX model (its bytes) as a Kiln graph plus its weights.
 *      const m = importOnnx(readFileSync("model.onnx"));
 *      // m.graph: Kiln IR; m.weights: the initializers' values by input name; m.state: those
 *      // inputs as resident state (CompileOptions.state); m.inputs / m.outputInfo: Kiln ↔ ONNX names
 *  - Initializers become graph inputs with weights (parameters: differentiable and trainable),
 *    never constants folded into the graph. Small integer ones read as shapes, axes or pads are
 *    read at import time, as are Constant nodes and the shape arithmetic over them (Shape,
 *    Gather, Concat, … of static values); such a value never becomes a tensor unless a tensor op
 *    reads it.
 *  - A graph input's dim_param becomes a symbolic dim of that name; an unknown dim a fresh one.
 *  - Every node goes through one op record (import-ops-*.ts, tables in OP_TABLES): the op's
 *    versions it knows, and the Kiln builder calls it emits. An op, opset, attribute or dtype
 *    Kiln does not support is refused with an OnnxImportError naming the node; so is a file
 *    that does not parse or does not hold together (a missing initializer, a shape that does
 *    not fit). Nothing is approximated. */
import { fromBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema, type GraphProto, type ModelProto, type NodeProto, type ValueInfoProto } from "onnx-buf";
import { GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import { withSite } from "../../src/api/site.ts";
import { KilnError } from "../../src/ir/errors.ts";
import { SYMBOL_RE } from "../../src/ir/shape.ts";
import type { Dim, Graph } from "../../src/ir/types.ts";
import { OpCtx, Val, knownVal, type OpRecord, type OpTable } from "./import-context.ts";
import { OnnxImportError } from "./import-error.ts";
import { CONV_OPS } from "./import-conv.ts";
import { ELEMENTWISE_OPS } from "./import-ops-elementwise.ts";
import { INDEX_OPS } from "./import-ops-index.ts";
import { LOSS_OPS } from "./import-ops-loss.ts";
import { RESIZE_OPS } from "./import-ops-resize.ts";
import { NN_OPS } from "./import-ops-nn.ts";
import { REDUCE_OPS } from "./import-ops-reduce.ts";
import { RNN_OPS } from "./import-rnn.ts";
import { SHAPE_OPS } from "./import-ops-shape.ts";
import { decodeTensor, dtypeOf, kilnData, type OnnxTensor } from "./import-tensor.ts";

export { OnnxImportError };
export type { OnnxTensor };

/** The op tables, merged; an op in two tables is a bug (checked at load). Convolutions, pooling
 *  and recurrent layers come in their own files (import-conv.ts, …) added to this list. */
export const OP_TABLES: readonly OpTable[] = [
  ELEMENTWISE_OPS,
  NN_OPS,
  SHAPE_OPS,
  REDUCE_OPS,
  INDEX_OPS,
  LOSS_OPS,
  RESIZE_OPS,
  CONV_OPS,
  RNN_OPS,
];

const OPS = new Map<string, OpRecord>();
for (const table of OP_TABLES) {
  for (const [name, rec] of Object.entries(table)) {
    if (OPS.has(name)) throw new KilnError(`onnx import: op ${name} is in two op tables`);
    OPS.set(name, rec);
  }
}

/** The ONNX ops the importer has a record for. */
export const SUPPORTED_OPS: readonly string[] = [...OPS.keys()].sort();

/** The default domain's opsets Kiln reads. Each op's own versions are its record's `since`. */
export const MIN_OPSET = 1;
export const MAX_OPSET = 25;

export interface OnnxImportOptions {
  /** Values for graph inputs that the model needs at import time (a Reshape's shape fed as an
   *  input, say): such an input becomes a constant instead of a graph input. */
  readonly constants?: Readonly<Record<string, OnnxTensor>>;
  /** Kiln names for graph inputs and outputs, by ONNX name (default: the ONNX names). */
  readonly names?: Readonly<Record<string, string>>;
  /** Kiln symbols for dim_params, by dim_param (default: the dim_param, made a valid symbol). */
  readonly dims?: Readonly<Record<string, string>>;
}

export interface ImportedOnnx {
  readonly graph: Graph;
  /** The weight inputs, as resident state for CompileOptions.state. */
  readonly state: Readonly<Record<string, null>>;
  /** The initializers' values by Kiln input name (f32 as Float32Array, i32 as Int32Array, …). */
  readonly weights: Readonly<Record<string, Float32Array | Int32Array | Uint32Array | Uint8Array>>;
  /** The data inputs (the graph inputs that are not initializers), Kiln name and ONNX name. */
  readonly inputs: readonly { readonly name: string; readonly onnx: string }[];
  readonly outputInfo: readonly { readonly name: string; readonly onnx: string }[];
  /** The default domain's opset the model imports. */
  readonly opset: number;
}

function decode(bytes: Uint8Array): ModelProto {
  if (!(bytes instanceof Uint8Array)) throw new OnnxImportError("importOnnx takes the model file's bytes (a Uint8Array)");
  try {
    return fromBinary(ModelProtoSchema, bytes);
  } catch (e) {
    throw new OnnxImportError(`the bytes are not an ONNX model (${bytes.byteLength} bytes; protobuf: ${(e as Error).message})`);
  }
}

function opsetOf(m: ModelProto): number {
  let opset: number | undefined;
  for (const o of m.opsetImport) {
    const v = Number(o.version);
    if (o.domain === "" || o.domain === "ai.onnx") opset = v;
  }
  // IR version 3 and later must declare it; the oldest files meant opset 1.
  opset ??= m.opsetImport.length === 0 ? 1 : undefined;
  if (opset === undefined) throw new OnnxImportError("the model imports no opset of the default ONNX domain", undefined, true);
  if (!Number.isInteger(opset) || opset < MIN_OPSET || opset > MAX_OPSET) {
    throw new OnnxImportError(
      `opset ${opset} of the default domain is outside what Kiln reads (${MIN_OPSET}–${MAX_OPSET})`,
      undefined,
      true,
    );
  }
  return opset;
}

const symbol = (s: string): string => {
  const t = s.replace(/[^A-Za-z0-9_]/g, "_");
  return SYMBOL_RE.test(t) ? t : `_${t}`;
};

function inputShape(v: ValueInfoProto, dims: Readonly<Record<string, string>>): { dtype: ReturnType<typeof dtypeOf>; shape: Dim[] } {
  const tt = v.type?.value;
  if (!tt || v.type?.value.case !== "tensorType") {
    throw new OnnxImportError(`graph input "${v.name}" is not a tensor (${v.type?.value.case ?? "no type"})`, undefined, true);
  }
  const t = tt.value as { elemType: number; shape?: { dim: { value: { case?: string; value?: unknown } }[] } };
  if (!t.shape) throw new OnnxImportError(`graph input "${v.name}" has no shape; Kiln needs at least its rank`, undefined, true);
  const shape = t.shape.dim.map((d, axis): Dim => {
    if (d.value.case === "dimValue") {
      const n = Number(d.value.value);
      if (!Number.isSafeInteger(n) || n < 0) throw new OnnxImportError(`graph input "${v.name}": dim ${axis} is ${n}`);
      return n;
    }
    const param = d.value.case === "dimParam" ? String(d.value.value) : "";
    return param ? symbol(dims[param] ?? param) : symbol(`${v.name}_d${axis}`);
  });
  return { dtype: dtypeOf(t.elemType), shape };
}

/** Imports a model; throws OnnxImportError (and nothing else) for any file it cannot import. */
export function importOnnx(bytes: Uint8Array, options: OnnxImportOptions = {}): ImportedOnnx {
  try {
    return importModel(decode(bytes), options);
  } catch (e) {
    if (e instanceof OnnxImportError) throw e;
    // A malformed file can break an assumption in a way no check above names: still the typed error.
    throw new OnnxImportError(
      `the model does not hold together: ${(e as Error)?.message ?? String(e)}`,
      undefined,
      false,
      undefined,
      !(e instanceof KilnError),
    );
  }
}

function importModel(m: ModelProto, options: OnnxImportOptions): ImportedOnnx {
  const opset = opsetOf(m);
  const graph = m.graph;
  if (!graph) throw new OnnxImportError("the model has no graph");
  const g = new GraphBuilder();
  const vals = new Map<string, Val>();
  const weights: Record<string, Float32Array | Int32Array | Uint32Array | Uint8Array> = {};
  addInitializers(g, graph, vals, weights);
  const inputs: { name: string; onnx: string }[] = [];
  for (const v of graph.input) {
    if (vals.has(v.name)) continue; // IR < 4 lists initializers among the inputs too
    const given = options.constants?.[v.name];
    const { dtype, shape } = inputShape(v, options.dims ?? {});
    if (typeof dtype !== "string")
      throw new OnnxImportError(`graph input "${v.name}": Kiln does not support ${dtype.refuse}`, undefined, true);
    if (given) {
      vals.set(v.name, knownVal(g, dtype, given.dims, Array.from(given.values), `graph input "${v.name}"`));
      continue;
    }
    const name = options.names?.[v.name] ?? v.name;
    const t = withSite(`onnx input "${v.name}"`, () => g.input(name, dtype, shape));
    vals.set(v.name, new Val(dtype, shape, () => t, undefined, v.name));
    inputs.push({ name, onnx: v.name });
  }
  for (const node of graph.node) importNode(g, node, opset, vals);
  const outs: Record<string, Tensor> = {};
  const outputInfo: { name: string; onnx: string }[] = [];
  for (const o of graph.output) {
    const v = vals.get(o.name);
    if (!v) throw new OnnxImportError(`graph output "${o.name}" is computed by no node`);
    const name = options.names?.[o.name] ?? o.name;
    if (name in outs) throw new OnnxImportError(`graph output "${o.name}" is listed twice`);
    outs[name] = withSite(`onnx output "${o.name}"`, () => v.tensor());
    outputInfo.push({ name, onnx: o.name });
  }
  if (outputInfo.length === 0) throw new OnnxImportError("the graph has no outputs");
  const built = g.build(outs);
  const used = new Set(built.nodes.filter((n) => n.op === "input").map((n) => (n.attrs as { name: string }).name));
  const kept = Object.fromEntries(Object.entries(weights).filter(([k]) => used.has(k)));
  return {
    graph: built,
    state: Object.fromEntries(Object.keys(kept).map((k) => [k, null])),
    weights: kept,
    inputs,
    outputInfo,
    opset,
  };
}

function addInitializers(
  g: GraphBuilder,
  graph: GraphProto,
  vals: Map<string, Val>,
  weights: Record<string, Float32Array | Int32Array | Uint32Array | Uint8Array>,
) {
  if (graph.sparseInitializer.length) throw new OnnxImportError("sparse initializers are not supported", undefined, true);
  for (const t of graph.initializer) {
    const what = `initializer "${t.name}"`;
    if (!t.name) throw new OnnxImportError("an initializer has no name");
    if (vals.has(t.name)) throw new OnnxImportError(`${what} is defined twice`);
    const data = decodeTensor(t, what);
    const dtype = dtypeOf(data.elem);
    const shape = [...data.dims];
    if (typeof dtype !== "string") {
      // Still readable as a static shape or axes list when integer; a tensor only if asked.
      vals.set(
        t.name,
        new Val(
          "i32",
          shape,
          () => {
            throw new OnnxImportError(`${what}: Kiln does not support ${dtype.refuse}`, undefined, true);
          },
          Array.from(data.values),
        ),
      );
      continue;
    }
    vals.set(
      t.name,
      new Val(
        dtype,
        shape,
        () => {
          weights[t.name] = kilnData(data, dtype, what);
          return withSite(`onnx initializer "${t.name}"`, () => g.input(t.name, dtype, shape));
        },
        data.values,
      ),
    );
  }
}

function importNode(g: GraphBuilder, node: NodeProto, opset: number, vals: Map<string, Val>) {
  const ref = { op: node.opType, name: node.name || node.output[0] || "", opset };
  if (node.domain !== "" && node.domain !== "ai.onnx") {
    throw new OnnxImportError(`the domain "${node.domain}" is not supported (only ONNX's default domain)`, ref, true);
  }
  const rec = OPS.get(node.opType);
  if (!rec) throw new OnnxImportError(`Kiln has no import for the op ${node.opType}`, ref, true);
  const version = rec.since.filter((s) => s <= opset).pop();
  if (version === undefined) {
    throw new OnnxImportError(`Kiln reads ${node.opType} from version ${rec.since[0]}; opset ${opset} predates it`, ref, true);
  }
  const ins = node.input.map((name) => {
    if (name === "") return undefined;
    const v = vals.get(name);
    if (!v) throw new OnnxImportError(`input "${name}" is not a graph input, an initializer or an earlier node's output`, ref);
    return v;
  });
  const c = new OpCtx(g, ref, version, ins, node.output, node.attribute);
  let outs: readonly (Tensor | Val | undefined)[];
  try {
    // Each Kiln node made for this ONNX node is attributed to it: `%12 = matmul … @ onnx Gemm "fc1"`.
    outs = withSite(`onnx ${node.opType} "${ref.name}"`, () => rec.emit(c));
  } catch (e) {
    if (e instanceof OnnxImportError)
      throw e.node ? e : new OnnxImportError(e.message.replace(/^onnx import: /, ""), ref, e.unsupported, e.needsConstant);
    if (e instanceof KilnError) throw new OnnxImportError(e.message, ref);
    throw new OnnxImportError(`could not be imported: ${(e as Error)?.message ?? String(e)}`, ref, false, undefined, true);
  }
  for (const a of node.attribute) if (!c.read.has(a.name)) c.refuse(`attribute ${a.name} is not supported`);
  const from = ins.map((v) => (v && !v.known ? (v.graphInput ?? v.dependsOn) : undefined)).find((n) => n !== undefined);
  node.output.forEach((name, k) => {
    if (name === "") return;
    const o = outs[k];
    if (!o) return c.refuse(`output ${k} ("${name}") is not supported`);
    if (vals.has(name)) throw new OnnxImportError(`value "${name}" is defined twice`, ref);
    const v = o instanceof Val ? o : Val.of(o);
    if (!v.known && !v.graphInput) v.dependsOn ??= from;
    vals.set(name, v);
  });
}
