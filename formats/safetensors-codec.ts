/** safetensors, encoded and decoded by hand (the npm `safetensors` package is a 0.0.1 placeholder).
 *
 *    [ u64 LE: N ][ N bytes: JSON header, space-padded to N % 8 == 0 ][ tensor bytes, LE, C order ]
 *    header: { "__metadata__"?: { str: str }, name: { dtype, shape, data_offsets: [begin, end] } }
 *
 *  Offsets are relative to the first byte after the header. Like HF's `serialize`, tensors are laid
 *  out by descending dtype alignment, then by name, so equal inputs give byte-identical files.
 *  Kiln's `bool` is stored as the spec's `BOOL` (one byte, 0 or 1), so every Kiln dtype round-trips.
 *
 *  The one decoder of the project: Kiln's readers (./safetensors.ts, which adds the file I/O) and
 *  every bundle's generated loader, which ships this file as text (compiler/bundle/loader.ts). So it
 *  imports nothing but the dependency-free error class, and its top-level names are prefixed to
 *  stay apart from the other shipped files'. */
import { KilnError } from "../src/ir/kiln-error.ts";

export type SafeDtype = "F32" | "I32" | "U32" | "BOOL";
/** Kiln's dtypes (src/ir/types.ts DType, restated: this file imports no types a bundle lacks). */
type KilnDtype = "f32" | "i32" | "u32" | "bool";
export type SafeData = Float32Array | Int32Array | Uint32Array | Uint8Array;

export interface SafeTensor {
  readonly dtype: SafeDtype;
  readonly shape: readonly number[];
  readonly data: SafeData;
}
export interface SafeSpec {
  readonly dtype: SafeDtype;
  readonly shape: readonly number[];
}
export interface SafetensorsFile {
  readonly tensors: Record<string, SafeTensor>;
  readonly metadata: Record<string, string>;
}

/** Rank in HF's `Dtype` enum (declared in increasing alignment): layout sorts descending on it. */
const DTYPE_INFO: Record<SafeDtype, { size: number; rank: number; array: new (n: number) => SafeData }> = {
  BOOL: { size: 1, rank: 0, array: Uint8Array },
  I32: { size: 4, rank: 9, array: Int32Array },
  U32: { size: 4, rank: 10, array: Uint32Array },
  F32: { size: 4, rank: 11, array: Float32Array },
};
const TO_SAFE: Record<KilnDtype, SafeDtype> = { f32: "F32", i32: "I32", u32: "U32", bool: "BOOL" };
const FROM_SAFE: Record<SafeDtype, KilnDtype> = { F32: "f32", I32: "i32", U32: "u32", BOOL: "bool" };
export const toSafeDtype = (d: KilnDtype): SafeDtype => TO_SAFE[d];
export const fromSafeDtype = (d: SafeDtype): KilnDtype => FROM_SAFE[d];

/** HF refuses headers over 100 MB; so do we, before allocating or parsing them. */
const MAX_HEADER = 100_000_000;
const METADATA = "__metadata__";

const isSafeDtype = (d: unknown): d is SafeDtype => typeof d === "string" && Object.hasOwn(DTYPE_INFO, d);
const safeNumel = (shape: readonly number[]): number => shape.reduce((a, d) => a * d, 1);
const safeFmt = (t: SafeSpec): string => `${t.dtype}[${t.shape.join(",")}]`;

function assertLittleEndian(): void {
  // Typed arrays use the host's byte order; the format is little-endian. Every Node and browser target is LE.
  if (new Uint8Array(Uint16Array.of(1).buffer)[0] !== 1) throw new KilnError("safetensors: big-endian hosts are not supported");
}

/** The file's bytes. Throws on a tensor whose data does not match its dtype and shape. */
export function encodeSafetensors(tensors: Record<string, SafeTensor>, metadata: Record<string, string> = {}): Uint8Array {
  assertLittleEndian();
  const names = Object.keys(tensors);
  for (const name of names) checkTensor(name, tensors[name]);
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== "string") throw new KilnError(`safetensors: metadata "${k}" must be a string, got ${typeof v}`);
  }
  names.sort((a, b) => DTYPE_INFO[tensors[b].dtype].rank - DTYPE_INFO[tensors[a].dtype].rank || (a < b ? -1 : a > b ? 1 : 0));

  // Entries and Object.fromEntries, not `obj[name] = …`: a tensor may be called "__proto__".
  const entries: [string, unknown][] = Object.keys(metadata).length > 0 ? [[METADATA, metadata]] : [];
  let offset = 0;
  for (const name of names) {
    const t = tensors[name];
    const end = offset + t.data.byteLength;
    entries.push([name, { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, end] }]);
    offset = end;
  }
  const json = new TextEncoder().encode(JSON.stringify(Object.fromEntries(entries)));
  const n = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + n + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + n);
  let at = 8 + n;
  for (const name of names) {
    const d = tensors[name].data;
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), at);
    at += d.byteLength;
  }
  return out;
}

function checkTensor(name: string, t: SafeTensor): void {
  const where = `safetensors: tensor "${name}"`;
  if (name === "" || name === METADATA) throw new KilnError(`${where}: reserved or empty name`);
  if (!isSafeDtype(t.dtype)) throw new KilnError(`${where}: unknown dtype ${String(t.dtype)} (F32, I32, U32, BOOL)`);
  if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new KilnError(`${where}: bad shape [${t.shape.join(",")}]`);
  const Want = DTYPE_INFO[t.dtype].array;
  if (!(t.data instanceof Want)) throw new KilnError(`${where}: ${t.dtype} needs a ${Want.name}, got ${t.data.constructor.name}`);
  if (t.data.length !== safeNumel(t.shape)) {
    throw new KilnError(`${where}: ${safeFmt(t)} has ${safeNumel(t.shape)} elements but the data has ${t.data.length}`);
  }
  if (t.dtype === "BOOL" && t.data.some((v) => v > 1)) throw new KilnError(`${where}: BOOL values must be 0 or 1`);
}

/** Parses and checks every header field before touching data; `source` names the file in errors. */
export function decodeSafetensors(bytes: Uint8Array, source = "<bytes>"): SafetensorsFile {
  assertLittleEndian();
  const fail = (msg: string): never => {
    throw new KilnError(`safetensors ${source}: ${msg}`);
  };
  if (bytes.length < 8) fail(`file is ${bytes.length} bytes, too short for the 8-byte header length`);
  const n = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true);
  if (n > BigInt(bytes.length - 8)) fail(`header length ${n} runs past the end of the file (${bytes.length} bytes)`);
  if (n > BigInt(MAX_HEADER)) fail(`header length ${n} exceeds ${MAX_HEADER}`);
  const headerEnd = 8 + Number(n);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, headerEnd)));
  } catch (e) {
    fail(`header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) fail("header is not a JSON object");
  const entries = Object.entries(header as Record<string, unknown>);

  const metadata: [string, string][] = [];
  const specs: { name: string; dtype: SafeDtype; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, raw] of entries) {
    if (name === METADATA) {
      if (typeof raw !== "object" || raw === null || Array.isArray(raw)) fail(`${METADATA} is not an object`);
      for (const [k, v] of Object.entries(raw as object)) {
        if (typeof v !== "string") fail(`${METADATA} "${k}" is not a string`);
        metadata.push([k, v as string]);
      }
      continue;
    }
    const where = `tensor "${name}"`;
    if (typeof raw !== "object" || raw === null) fail(`${where}: entry is not an object`);
    const { dtype, shape, data_offsets: offs } = raw as Record<string, unknown>;
    if (!isSafeDtype(dtype)) fail(`${where}: unknown dtype ${JSON.stringify(dtype)} (supported: F32, I32, U32, BOOL)`);
    const isIndex = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
    if (!Array.isArray(shape) || !shape.every(isIndex)) fail(`${where}: bad shape ${JSON.stringify(shape)}`);
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(isIndex) || offs[0] > offs[1]) {
      fail(`${where}: bad data_offsets ${JSON.stringify(offs)}`);
    }
    const spec = { name, dtype: dtype as SafeDtype, shape: shape as number[], begin: (offs as number[])[0], end: (offs as number[])[1] };
    const want = safeNumel(spec.shape) * DTYPE_INFO[spec.dtype].size;
    if (spec.end - spec.begin !== want) {
      fail(`${where}: ${safeFmt(spec)} needs ${want} bytes but data_offsets [${spec.begin}, ${spec.end}] hold ${spec.end - spec.begin}`);
    }
    specs.push(spec);
  }

  // The data section must be tiled exactly: sorted by offset, each begins where the previous ended.
  const dataLen = bytes.length - headerEnd;
  const byOffset = [...specs].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = 0;
  for (const s of byOffset) {
    if (s.begin !== expected) {
      fail(
        s.begin < expected
          ? `tensor "${s.name}": data_offsets [${s.begin}, ${s.end}] overlap the previous tensor (ends at ${expected})`
          : `tensor "${s.name}": data_offsets [${s.begin}, ${s.end}] leave a gap after byte ${expected}`,
      );
    }
    if (s.end > dataLen)
      fail(`tensor "${s.name}": data_offsets [${s.begin}, ${s.end}] out of bounds: data is truncated to ${dataLen} bytes`);
    expected = s.end;
  }
  if (expected !== dataLen) fail(`data section is ${dataLen} bytes but the tensors cover ${expected}`);

  const tensors: [string, SafeTensor][] = [];
  for (const s of specs) {
    const info = DTYPE_INFO[s.dtype];
    const data = new info.array(safeNumel(s.shape));
    // Copy into a fresh, aligned buffer: the tensor's offset in the file need not be 4-aligned.
    new Uint8Array(data.buffer).set(bytes.subarray(headerEnd + s.begin, headerEnd + s.end));
    if (s.dtype === "BOOL" && data.some((v) => v > 1)) fail(`tensor "${s.name}": BOOL values must be 0 or 1`);
    tensors.push([s.name, { dtype: s.dtype, shape: s.shape, data }]);
  }
  return { tensors: Object.fromEntries(tensors), metadata: Object.fromEntries(metadata) };
}

/** Compares what a file holds with what a model expects, and reports every difference at once. */
export function checkAgainst(expected: Record<string, SafeSpec>, got: Record<string, SafeSpec>, source = "<tensors>"): void {
  const problems: string[] = [];
  const missing = Object.keys(expected)
    .filter((k) => !Object.hasOwn(got, k))
    .sort();
  const extra = Object.keys(got)
    .filter((k) => !Object.hasOwn(expected, k))
    .sort();
  if (missing.length) problems.push(`missing: ${missing.join(", ")}`);
  if (extra.length) problems.push(`unexpected: ${extra.join(", ")}`);
  for (const name of Object.keys(expected).sort()) {
    const want = expected[name];
    const have = got[name];
    if (!have) continue;
    const sameShape = want.shape.length === have.shape.length && want.shape.every((d, i) => d === have.shape[i]);
    if (want.dtype !== have.dtype || !sameShape) problems.push(`"${name}": expected ${safeFmt(want)}, got ${safeFmt(have)}`);
  }
  if (problems.length) throw new KilnError(`safetensors ${source} does not match the model:\n  ${problems.join("\n  ")}`);
}
