/** ONNX Runtime (onnxruntime-node, CPU) as an independent runtime for exported models, and the
 *  agreement figures the ONNX tests report: |a − b| ≤ atol + rtol·|b| per element. */
import * as ort from "onnxruntime-node";
import { inputNodes } from "../../src/ir/bind.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import type { DType, Graph } from "../../src/ir/types.ts";

function ortTensor(dtype: DType, t: HostTensor): ort.Tensor {
  const dims = [...t.shape];
  switch (dtype) {
    case "f32":
      return new ort.Tensor("float32", Float32Array.from(t.data), dims);
    case "i32":
      return new ort.Tensor("int32", Int32Array.from(t.data), dims);
    case "u32":
      return new ort.Tensor("uint32", Uint32Array.from(t.data), dims);
    case "bool":
      return new ort.Tensor(
        "bool",
        Uint8Array.from(t.data, (v) => (v ? 1 : 0)),
        dims,
      );
  }
}

export interface OrtOutput {
  readonly type: string;
  readonly shape: readonly number[];
  readonly data: ArrayLike<number>;
}

/** Run `bytes` (an exported model of `graph`) in ONNX Runtime on the graph's fed inputs. */
export async function runOrt(
  bytes: Uint8Array,
  graph: Graph,
  inputs: Readonly<Record<string, HostTensor>>,
): Promise<Record<string, OrtOutput>> {
  const feeds: Record<string, HostTensor & { dtype: DType }> = {};
  for (const n of inputNodes(graph)) if (inputs[n.attrs.name]) feeds[n.attrs.name] = { dtype: n.type.dtype, ...inputs[n.attrs.name] };
  return runOrtFeeds(bytes, feeds);
}

/** Run `bytes` in ONNX Runtime; `feeds` by ONNX input name (names it does not take are left out). */
export async function runOrtFeeds(
  bytes: Uint8Array,
  feeds: Readonly<Record<string, HostTensor & { dtype: DType }>>,
): Promise<Record<string, OrtOutput>> {
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ["cpu"], graphOptimizationLevel: "all" });
  try {
    const given: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) if (session.inputNames.includes(name)) given[name] = ortTensor(t.dtype, t);
    const out = await session.run(given);
    return Object.fromEntries(
      Object.entries(out).map(([k, v]) => [k, { type: v.type, shape: [...v.dims], data: Array.from(v.data as ArrayLike<number>, Number) }]),
    );
  } finally {
    await session.release();
  }
}

export interface Tolerance {
  readonly atol: number;
  readonly rtol: number;
}
/** The bound: 1e-5 absolute plus 1e-5 relative. */
export const ORT_TOL: Tolerance = { atol: 1e-5, rtol: 1e-5 };

export interface Agreement {
  /** Largest |a − b| and largest |a − b| / |b| (over |b| > 0) across all outputs. */
  maxAbs: number;
  maxRel: number;
  /** The first element outside the tolerance, described; undefined when all agree. */
  mismatch?: string;
}

/** Compare `got` with `want` output by output (shapes, then values; NaN must meet NaN, an
 *  infinity itself). */
export function agreement(
  got: Readonly<Record<string, { shape: readonly number[]; data: ArrayLike<number> }>>,
  want: Readonly<Record<string, { shape: readonly number[]; data: ArrayLike<number> }>>,
  tol: Tolerance = ORT_TOL,
): Agreement {
  const r: Agreement = { maxAbs: 0, maxRel: 0 };
  for (const [name, b] of Object.entries(want)) {
    const a = got[name];
    if (!a) return { ...r, mismatch: `output ${name} missing (got ${Object.keys(got).join(", ")})` };
    if (a.shape.join() !== b.shape.join()) return { ...r, mismatch: `output ${name}: shape [${a.shape}] vs [${b.shape}]` };
    for (let i = 0; i < b.data.length; i++) {
      const [x, y] = [Number(a.data[i]), Number(b.data[i])];
      if (Number.isNaN(y) || !Number.isFinite(y)) {
        if (!Object.is(x, y) && !(Number.isNaN(x) && Number.isNaN(y))) r.mismatch ??= `output ${name}[${i}]: ${x} vs ${y}`;
        continue;
      }
      const d = Math.abs(x - y);
      if (!(d <= r.maxAbs)) r.maxAbs = Number.isNaN(d) ? Infinity : d;
      if (y !== 0) r.maxRel = Math.max(r.maxRel, d / Math.abs(y));
      if (!(d <= tol.atol + tol.rtol * Math.abs(y))) r.mismatch ??= `output ${name}[${i}]: ${x} vs ${y} (|Δ| ${d.toExponential(2)})`;
    }
  }
  return r;
}
