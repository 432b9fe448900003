/** The ONNX side of the exporter: a writer that collects NodeProtos and initializers under
 *  unique value names, plus the shape plumbing a symbolic dim needs at run time.
 *
 *  A symbolic dim ("B") has no value in the file, so every shape that mentions one is computed
 *  in the graph: the dim is read from the first graph input that has it,
 *      Shape(x, start=0, end=1) → int64[1]
 *  and a shape tensor is a Concat of such reads and static runs. Each is made once and shared. */
import { create } from "@bufbuild/protobuf";
import {
  AttributeProto_AttributeType as AT,
  AttributeProtoSchema,
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  TensorProto_DataType as Elem,
  TensorProtoSchema,
  TensorShapeProto_DimensionSchema,
  TensorShapeProtoSchema,
  TypeProto_TensorSchema,
  TypeProtoSchema,
  ValueInfoProtoSchema,
  type AttributeProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from "onnx-buf";
import { KilnError } from "../../src/ir/errors.ts";
import type { DType, Dim, Shape, TensorType } from "../../src/ir/types.ts";

export { Elem };

export const ELEM_OF: Readonly<Record<DType, Elem>> = { f32: Elem.FLOAT, i32: Elem.INT32, u32: Elem.UINT32, bool: Elem.BOOL };

/** An attribute value: a number is an INT, an array of numbers INTS, a string a STRING;
 *  floats and tensors are tagged, since an ONNX attribute's type is part of the operator. */
export type AttrValue = number | readonly number[] | string | { readonly float: number } | { readonly tensor: TensorProto };
export type Attrs = Readonly<Record<string, AttrValue>>;

const isInts = (v: AttrValue): v is readonly number[] => Array.isArray(v);

function attribute(name: string, v: AttrValue): AttributeProto {
  if (typeof v === "number") return create(AttributeProtoSchema, { name, type: AT.INT, i: BigInt(v) });
  if (typeof v === "string") return create(AttributeProtoSchema, { name, type: AT.STRING, s: new TextEncoder().encode(v) });
  if (isInts(v)) return create(AttributeProtoSchema, { name, type: AT.INTS, ints: v.map((x) => BigInt(x)) });
  if ("float" in v) return create(AttributeProtoSchema, { name, type: AT.FLOAT, f: v.float });
  return create(AttributeProtoSchema, { name, type: AT.TENSOR, t: v.tensor });
}

/** Little-endian bytes of `values` as `elem` (float, int32, uint32, bool, int64). */
function rawBytes(elem: Elem, values: ArrayLike<number>): Uint8Array<ArrayBuffer> {
  const n = values.length;
  switch (elem) {
    case Elem.FLOAT:
      return new Uint8Array(Float32Array.from(values).buffer);
    case Elem.INT32:
      return new Uint8Array(Int32Array.from(values).buffer);
    case Elem.UINT32:
      return new Uint8Array(Uint32Array.from(values).buffer);
    case Elem.BOOL:
      return Uint8Array.from(values, (v) => (v ? 1 : 0));
    case Elem.INT64: {
      const a = new BigInt64Array(n);
      for (let i = 0; i < n; i++) a[i] = BigInt(values[i]);
      return new Uint8Array(a.buffer);
    }
    default:
      throw new KilnError(`onnx export: no writer for element type ${Elem[elem]}`);
  }
}

export function tensorProto(name: string, elem: Elem, dims: readonly number[], values: ArrayLike<number>, doc = ""): TensorProto {
  return create(TensorProtoSchema, {
    name,
    dataType: elem,
    dims: dims.map((d) => BigInt(d)),
    rawData: rawBytes(elem, values),
    docString: doc,
  });
}

export function valueInfo(name: string, t: TensorType): ValueInfoProto {
  const dim = t.shape.map((d) =>
    create(TensorShapeProto_DimensionSchema, {
      value: typeof d === "number" ? { case: "dimValue", value: BigInt(d) } : { case: "dimParam", value: d },
    }),
  );
  const tensor = create(TypeProto_TensorSchema, { elemType: ELEM_OF[t.dtype], shape: create(TensorShapeProtoSchema, { dim }) });
  return create(ValueInfoProtoSchema, { name, type: create(TypeProtoSchema, { value: { case: "tensorType", value: tensor } }) });
}

/** The IR version of each opset Kiln writes (ONNX's versioning table). */
const IR_VERSIONS: Readonly<Record<number, bigint>> = { 17: 8n, 18: 8n, 19: 9n, 20: 9n, 21: 10n };

export interface ModelSpec {
  readonly name: string;
  readonly docString?: string;
  readonly inputs: readonly { readonly name: string; readonly type: TensorType }[];
  readonly outputs: readonly { readonly name: string; readonly type: TensorType }[];
  readonly opset: number;
  readonly producer: { readonly name: string; readonly version: string };
}

/** Where a symbolic dim can be read: a graph input's name and axis. */
export type DimSources = ReadonlyMap<string, { readonly input: string; readonly axis: number }>;

export class OnnxWriter {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  private readonly taken = new Set<string>();
  private readonly cache = new Map<string, string>();
  private count = 0;

  /** `reserved`: names the file must keep for the user's values (inputs, outputs, weights). */
  constructor(
    reserved: Iterable<string>,
    private readonly dims: DimSources,
  ) {
    for (const n of reserved) this.taken.add(n);
  }

  /** The model: these nodes and initializers, with the graph's inputs and outputs. */
  model(spec: ModelSpec): ModelProto {
    const irVersion = IR_VERSIONS[spec.opset];
    if (!irVersion) throw new KilnError(`onnx export: opset ${spec.opset} is not one Kiln writes (${Object.keys(IR_VERSIONS).join(", ")})`);
    const graph = create(GraphProtoSchema, {
      name: spec.name,
      docString: spec.docString ?? "",
      node: this.nodes,
      initializer: this.initializers,
      input: spec.inputs.map((v) => valueInfo(v.name, v.type)),
      output: spec.outputs.map((v) => valueInfo(v.name, v.type)),
    });
    return create(ModelProtoSchema, {
      irVersion,
      opsetImport: [create(OperatorSetIdProtoSchema, { domain: "", version: BigInt(spec.opset) })],
      producerName: spec.producer.name,
      producerVersion: spec.producer.version,
      graph,
    });
  }

  /** A value name not used yet, from `stem`. */
  fresh(stem: string): string {
    let name = stem;
    for (let k = 1; this.taken.has(name); k++) name = `${stem}_${k}`;
    this.taken.add(name);
    return name;
  }

  /** One node; returns its (first) output's name, `out` or a fresh one. */
  node(op: string, inputs: readonly string[], attrs: Attrs = {}, opts: { out?: string; doc?: string; outputs?: number } = {}): string {
    return this.nodeOutputs(op, inputs, attrs, opts)[0];
  }

  nodeOutputs(op: string, inputs: readonly string[], attrs: Attrs, opts: { out?: string; doc?: string; outputs?: number }): string[] {
    const outputs = Array.from({ length: opts.outputs ?? 1 }, (_, k) => (k === 0 && opts.out ? opts.out : this.fresh(`_${op}`)));
    this.nodes.push(
      create(NodeProtoSchema, {
        name: `${op}_${this.count++}`,
        opType: op,
        input: [...inputs],
        output: outputs,
        attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
        docString: opts.doc ?? "",
      }),
    );
    return outputs;
  }

  /** An initializer under `name` exactly (a weight). */
  weight(name: string, elem: Elem, dims: readonly number[], values: ArrayLike<number>, doc = ""): string {
    this.initializers.push(tensorProto(name, elem, dims, values, doc));
    return name;
  }

  /** A constant initializer with a fresh name; equal small constants are shared. */
  constant(elem: Elem, dims: readonly number[], values: ArrayLike<number>, stem = "_const"): string {
    const key =
      values.length <= 16
        ? `const:${elem}:${dims.join(",")}:${Array.from(values, (v) => (Object.is(v, -0) ? "-0" : String(v))).join(",")}`
        : "";
    const had = key && this.cache.get(key);
    if (had) return had;
    const name = this.weight(this.fresh(stem), elem, dims, values);
    if (key) this.cache.set(key, name);
    return name;
  }

  scalar(value: number, elem: Elem): string {
    return this.constant(elem, [], [value]);
  }

  /** A 1-D int64 constant (axes, pads, static shapes). */
  ints(values: readonly number[]): string {
    return this.constant(Elem.INT64, [values.length], values);
  }

  /** Memoized: `make` runs once per key. */
  once(key: string, make: () => string): string {
    let v = this.cache.get(key);
    if (v === undefined) this.cache.set(key, (v = make()));
    return v;
  }

  /** int64[1]: the run-time size of a dim. */
  dim(d: Dim): string {
    if (typeof d === "number") return this.ints([d]);
    return this.once(`dim:${d}`, () => {
      const src = this.dims.get(d);
      if (!src)
        throw new KilnError(`onnx export: the symbolic dim ${d} is the dim of no graph input, so its size cannot be read at run time`);
      return this.node("Shape", [src.input], { start: src.axis, end: src.axis + 1 }, { out: this.fresh(`_dim_${d}`) });
    });
  }

  /** int64[rank]: a shape, constant when static, else assembled from the dims' run-time sizes. */
  shape(s: Shape): string {
    if (s.every((d) => typeof d === "number")) return this.ints(s as number[]);
    return this.once(`shape:${s.join(",")}`, () => {
      const parts: string[] = [];
      let run: number[] = [];
      for (const d of s) {
        if (typeof d === "number") run.push(d);
        else {
          if (run.length) parts.push(this.ints(run));
          run = [];
          parts.push(this.dim(d));
        }
      }
      if (run.length) parts.push(this.ints(run));
      return parts.length === 1 ? parts[0] : this.node("Concat", parts, { axis: 0 });
    });
  }
}
