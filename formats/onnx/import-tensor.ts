/** ONNX TensorProtos as numbers, and ONNX element types as Kiln dtypes.
 *  Kiln computes in f32, i32, u32 and bool. int64 becomes i32 where the values fit (a weight or a
 *  constant whose values do not is refused); the narrow integers (int8, uint16, …) wrap at their
 *  own width, float64 and float16 round differently, so tensors of those types are refused rather
 *  than computed in a wider or narrower type. Integer data read statically (shapes, axes, pads)
 *  may have any integer type: it is only read. */
import { TensorProto_DataLocation, TensorProto_DataType as Elem, type TensorProto } from "onnx-buf";
import type { DType } from "../../src/ir/types.ts";
import { OnnxImportError } from "./import-error.ts";

export { Elem };

export const elemName = (e: number): string => (Elem[e] ?? `element type ${e}`).toLowerCase();

const INTEGER = new Set<number>([Elem.INT8, Elem.INT16, Elem.INT32, Elem.INT64, Elem.UINT8, Elem.UINT16, Elem.UINT32, Elem.UINT64]);
export const isIntegerElem = (e: number): boolean => INTEGER.has(e) || e === Elem.BOOL;

/** The Kiln dtype a tensor of element type `e` computes in, or why there is none. */
export function dtypeOf(e: number): DType | { readonly refuse: string } {
  switch (e) {
    case Elem.FLOAT:
      return "f32";
    case Elem.INT32:
    case Elem.INT64:
      return "i32";
    case Elem.UINT32:
      return "u32";
    case Elem.BOOL:
      return "bool";
    case Elem.DOUBLE:
      return { refuse: "float64 tensors (Kiln computes in f32 and would round them)" };
    case Elem.FLOAT16:
    case Elem.BFLOAT16:
      return { refuse: `${elemName(e)} tensors (Kiln computes floats in f32 only)` };
    case Elem.STRING:
      return { refuse: "string tensors" };
    default:
      return { refuse: `${elemName(e)} tensors (Kiln's integers are i32 and u32, which wrap at another width)` };
  }
}

/** A decoded tensor: row-major values as numbers (int64 converted exactly where it can be). */
export interface OnnxTensor {
  readonly elem: number;
  readonly dims: readonly number[];
  readonly values: ArrayLike<number>;
}

const view = (raw: Uint8Array) => new DataView(raw.buffer, raw.byteOffset, raw.byteLength);

function fromRaw(elem: number, raw: Uint8Array, n: number, what: string): ArrayLike<number> {
  const size: Record<number, number> = {
    [Elem.FLOAT]: 4,
    [Elem.DOUBLE]: 8,
    [Elem.INT32]: 4,
    [Elem.UINT32]: 4,
    [Elem.INT64]: 8,
    [Elem.UINT64]: 8,
    [Elem.INT16]: 2,
    [Elem.UINT16]: 2,
    [Elem.INT8]: 1,
    [Elem.UINT8]: 1,
    [Elem.BOOL]: 1,
    [Elem.FLOAT16]: 2,
  };
  const s = size[elem];
  if (s === undefined) throw new OnnxImportError(`${what}: raw data of ${elemName(elem)} cannot be read`);
  if (raw.byteLength !== n * s)
    throw new OnnxImportError(`${what}: raw data has ${raw.byteLength} bytes, ${n} ${elemName(elem)} need ${n * s}`);
  const d = view(raw);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const o = i * s;
    switch (elem) {
      case Elem.FLOAT:
        out[i] = d.getFloat32(o, true);
        break;
      case Elem.DOUBLE:
        out[i] = d.getFloat64(o, true);
        break;
      case Elem.INT32:
        out[i] = d.getInt32(o, true);
        break;
      case Elem.UINT32:
        out[i] = d.getUint32(o, true);
        break;
      case Elem.INT64:
        out[i] = Number(d.getBigInt64(o, true));
        break;
      case Elem.UINT64:
        out[i] = Number(d.getBigUint64(o, true));
        break;
      case Elem.INT16:
        out[i] = d.getInt16(o, true);
        break;
      case Elem.UINT16:
      case Elem.FLOAT16:
        out[i] = elem === Elem.FLOAT16 ? half(d.getUint16(o, true)) : d.getUint16(o, true);
        break;
      case Elem.INT8:
        out[i] = d.getInt8(o);
        break;
      default:
        out[i] = d.getUint8(o);
    }
  }
  return out;
}

function half(h: number): number {
  const e = (h >> 10) & 31;
  const m = h & 1023;
  const s = h & 0x8000 ? -1 : 1;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** The values of `t`, from raw_data or the typed field its element type uses. */
export function decodeTensor(t: TensorProto, what: string): OnnxTensor {
  if (t.dataLocation === TensorProto_DataLocation.EXTERNAL || t.externalData.length > 0) {
    throw new OnnxImportError(`${what}: its data is stored outside the file (external data), which importOnnx(bytes) cannot read`);
  }
  if (t.segment) throw new OnnxImportError(`${what}: a segmented tensor is not supported`);
  const dims = t.dims.map((d) => Number(d));
  if (dims.some((d) => !Number.isSafeInteger(d) || d < 0)) throw new OnnxImportError(`${what}: bad dims [${dims}]`);
  const n = dims.reduce((a, d) => a * d, 1);
  const elem = t.dataType;
  if (elem === Elem.STRING) return { elem, dims, values: new Float64Array(0) };
  let values: ArrayLike<number>;
  if (t.rawData.byteLength > 0 || n === 0) values = fromRaw(elem, t.rawData, n, what);
  else if (elem === Elem.FLOAT || elem === Elem.COMPLEX64) values = t.floatData;
  else if (elem === Elem.DOUBLE) values = t.doubleData;
  else if (elem === Elem.INT64) values = t.int64Data.map((v) => Number(v));
  else if (elem === Elem.UINT32 || elem === Elem.UINT64) values = t.uint64Data.map((v) => Number(v));
  else if (elem === Elem.FLOAT16 || elem === Elem.BFLOAT16)
    values = t.int32Data.map((v) => (elem === Elem.FLOAT16 ? half(v) : new Float32Array(new Uint32Array([v << 16]).buffer)[0]));
  else values = t.int32Data;
  if (values.length !== n) throw new OnnxImportError(`${what}: ${values.length} values for dims [${dims}] (${n} expected)`);
  return { elem, dims, values };
}

/** The values as Kiln stores a tensor of `dtype`; int64 outside i32 is refused. */
export function kilnData(t: OnnxTensor, dtype: DType, what: string): Float32Array | Int32Array | Uint32Array | Uint8Array {
  if (dtype === "f32") return Float32Array.from(t.values);
  if (dtype === "u32") return Uint32Array.from(t.values);
  if (dtype === "bool") return Uint8Array.from(t.values, (v) => (v ? 1 : 0));
  for (let i = 0; i < t.values.length; i++) {
    const v = t.values[i];
    if (v < -2147483648 || v > 2147483647) {
      throw new OnnxImportError(`${what}: ${elemName(t.elem)} value ${v} (element ${i}) does not fit Kiln's i32`);
    }
  }
  return Int32Array.from(t.values);
}
