/** ONNX's own node tests (../shared/onnx-tests/node, ONNX v1.22.0; see its README) as Kiln
 *  cases: each folder's model imported with importOnnx, its inputs fed, and its outputs
 *  compared with the expected ones. Used by test/formats/onnx-conformance.test.ts. */
import { fromBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema, TensorProtoSchema, type ModelProto } from "onnx-buf";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { importOnnx, MAX_OPSET, OnnxImportError, SUPPORTED_OPS, type ImportedOnnx, type OnnxTensor } from "../../formats/onnx/import.ts";
import { decodeTensor, Elem, isIntegerElem } from "../../formats/onnx/import-tensor.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import type { Graph, Node, OpAttrs, Output } from "../../src/ir/types.ts";
import type { OutputTensor } from "../../runtime/execute.ts";

/** Where the cases are: the folder KILN_ONNX_TESTS names, beside the checkout (../shared), or
 *  beside the main checkout when this is a worktree under /work/wt. */
export const NODE_TESTS = [
  ...(process.env.KILN_ONNX_TESTS ? [process.env.KILN_ONNX_TESTS] : []),
  new URL("../../../shared/onnx-tests/node/", import.meta.url).pathname,
  new URL("../../../../shared/onnx-tests/node/", import.meta.url).pathname,
].find((p) => existsSync(p));

export interface ConformanceCase {
  readonly name: string;
  readonly dir: string;
  readonly model: ModelProto;
  readonly bytes: Uint8Array;
  /** The ops of its graph's nodes (the row of the table it counts in). */
  readonly ops: readonly string[];
  /** Why Kiln does not try it (an op with no import record, another domain, a newer opset), or
   *  undefined for a case of supported ops. */
  readonly unsupported?: string;
  /** A graph input or output that is not a tensor (a sequence, an optional), if any. */
  readonly notTensor?: string;
}

const SUPPORTED = new Set(SUPPORTED_OPS);

export function loadCases(dir: string): ConformanceCase[] {
  return readdirSync(dir)
    .filter((n) => n.startsWith("test_"))
    .sort()
    .map((name) => {
      const bytes = readFileSync(join(dir, name, "model.onnx"));
      const model = fromBinary(ModelProtoSchema, bytes);
      const nodes = model.graph?.node ?? [];
      const ops = [...new Set(nodes.map((n) => (n.domain && n.domain !== "ai.onnx" ? `${n.domain}.${n.opType}` : n.opType)))];
      const missing = ops.filter((o) => !SUPPORTED.has(o));
      const opset = model.opsetImport.find((o) => o.domain === "" || o.domain === "ai.onnx");
      const unsupported = missing.length
        ? `no import for ${missing.join(", ")}`
        : !opset || Number(opset.version) > MAX_OPSET
          ? `opset ${opset?.version ?? "(none)"}`
          : undefined;
      const io = [...(model.graph?.input ?? []), ...(model.graph?.output ?? [])];
      const notTensor = io.find((v) => v.type?.value.case !== "tensorType")?.name;
      return { name, dir: join(dir, name), model, bytes, ops, unsupported, notTensor };
    });
}

/** The table row a case counts in: its op, or its ops when the model is a function's body. */
export const rowOf = (c: ConformanceCase): string =>
  c.ops.length === 1 ? c.ops[0] : `(${c.ops.length} ops) ${c.name.replace(/^test_/, "")}`;

export interface DataSet {
  readonly inputs: readonly OnnxTensor[];
  readonly outputs: readonly OnnxTensor[];
}

function readTensors(dir: string, prefix: string): OnnxTensor[] {
  const files = readdirSync(dir)
    .filter((f) => f.startsWith(prefix) && f.endsWith(".pb"))
    .sort((a, b) => Number(a.slice(prefix.length, -3)) - Number(b.slice(prefix.length, -3)));
  return files.map((f) => {
    const t = fromBinary(TensorProtoSchema, readFileSync(join(dir, f)));
    if (t.dataType === 0) throw new CaseError(`${f} is not a tensor (a sequence or an optional)`);
    return decodeTensor(t, f);
  });
}

export function dataSets(c: ConformanceCase): DataSet[] {
  return readdirSync(c.dir)
    .filter((d) => d.startsWith("test_data_set_"))
    .sort()
    .map((d) => ({ inputs: readTensors(join(c.dir, d), "input_"), outputs: readTensors(join(c.dir, d), "output_") }));
}

/** A case that cannot be run as written (its data is not tensors, say). */
export class CaseError extends Error {}

/** The case imported, with every graph input the importer asks for at import time given from
 *  the first data set (a Reshape's shape fed as an input): what a user does by freezing it. */
export function importCase(c: ConformanceCase, data: DataSet): { m: ImportedOnnx; constants: Set<string> } {
  const names = (c.model.graph?.input ?? [])
    .map((i) => i.name)
    .filter((n) => !(c.model.graph?.initializer ?? []).some((t) => t.name === n));
  const constants: Record<string, OnnxTensor> = {};
  for (;;) {
    try {
      return { m: importOnnx(c.bytes, { constants }), constants: new Set(Object.keys(constants)) };
    } catch (e) {
      const need = e instanceof OnnxImportError ? e.needsConstant : undefined;
      const k = need === undefined ? -1 : names.indexOf(need);
      if (need === undefined || k < 0 || need in constants || !data.inputs[k]) throw e;
      constants[need] = data.inputs[k];
    }
  }
}

/** The data set's inputs as the imported graph's feeds. */
export function feedsOf(c: ConformanceCase, m: ImportedOnnx, data: DataSet): Record<string, HostTensor> {
  const names = (c.model.graph?.input ?? [])
    .map((i) => i.name)
    .filter((n) => !(c.model.graph?.initializer ?? []).some((t) => t.name === n));
  const feeds: Record<string, HostTensor> = {};
  for (const i of m.inputs) {
    const t = data.inputs[names.indexOf(i.onnx)];
    if (!t) throw new CaseError(`no data for input ${i.onnx}`);
    if (t.elem === Elem.INT64 && Array.from(t.values).some((v) => v < -2147483648 || v > 2147483647)) {
      throw new CaseError(`input ${i.onnx} holds int64 values beyond i32`);
    }
    feeds[i.name] = { shape: t.dims, data: t.values };
  }
  for (const n of m.graph.nodes) {
    const name = n.op === "input" ? (n.attrs as { name: string }).name : "";
    if (name in m.weights) feeds[name] = { shape: n.type.shape as number[], data: m.weights[name] };
  }
  return feeds;
}

/** ONNX's runner compares with rtol 1e-3, atol 1e-7; Kiln runs f32 kernels (and float64 in
 *  the interpreter) against NumPy's float32, so the atol is a little wider. */
export const TOL = { rtol: 1e-3, atol: 1e-5 };

/** The first difference between Kiln's outputs (by graph output order) and the expected ones. */
export function compare(
  m: ImportedOnnx,
  got: Readonly<Record<string, { shape: readonly number[]; data: ArrayLike<number> }>>,
  want: readonly OnnxTensor[],
): string | undefined {
  if (want.length !== m.outputInfo.length) return `${m.outputInfo.length} outputs, ${want.length} expected`;
  for (let k = 0; k < want.length; k++) {
    const o = m.outputInfo[k];
    const g = got[o.name];
    const w = want[k];
    if (!g) return `output ${o.onnx} missing`;
    if (g.shape.join() !== w.dims.join()) return `output ${o.onnx}: shape [${g.shape}], expected [${w.dims}]`;
    const exact = isIntegerElem(w.elem);
    for (let i = 0; i < w.values.length; i++) {
      const [a, b] = [g.data[i], w.values[i]];
      const ok = exact
        ? a === b || (w.elem === Elem.BOOL && Boolean(a) === Boolean(b))
        : Number.isNaN(b)
          ? Number.isNaN(a)
          : a === b || (Number.isFinite(b) && Math.abs(a - b) <= TOL.atol + TOL.rtol * Math.abs(b));
      if (!ok) return `output ${o.onnx}[${i}]: ${a}, expected ${b}`;
    }
  }
  return undefined;
}

/** Several static graphs as one (disjoint: ids shifted, inputs and outputs prefixed "c<k>/"),
 *  so that Dawn compiles, loads and runs many small cases in one go. */
export function mergeGraphs(parts: readonly { graph: Graph; feeds: Readonly<Record<string, HostTensor>> }[]): {
  graph: Graph;
  feeds: Record<string, HostTensor>;
  outputs: (k: number, got: Readonly<Record<string, OutputTensor>>) => Record<string, OutputTensor>;
} {
  const nodes: Node[] = [];
  const outs: Output[] = [];
  const feeds: Record<string, HostTensor> = {};
  parts.forEach(({ graph, feeds: f }, k) => {
    const base = nodes.length;
    for (const n of graph.nodes) {
      const attrs = n.op === "input" ? { ...(n.attrs as OpAttrs["input"]), name: `c${k}/${(n.attrs as OpAttrs["input"]).name}` } : n.attrs;
      nodes.push({ ...n, id: n.id + base, inputs: n.inputs.map((i) => i + base), attrs });
    }
    for (const o of graph.outputs) outs.push({ name: `c${k}/${o.name}`, id: o.id + base });
    for (const [name, t] of Object.entries(f)) feeds[`c${k}/${name}`] = t;
  });
  return {
    graph: { nodes, outputs: outs },
    feeds,
    outputs: (k, got) =>
      Object.fromEntries(
        Object.entries(got)
          .filter(([name]) => name.startsWith(`c${k}/`))
          .map(([name, t]) => [name.slice(`c${k}/`.length), t]),
      ),
  };
}

export const isStaticGraph = (g: Graph): boolean => g.nodes.every((n) => n.type.shape.every((d) => typeof d === "number"));
