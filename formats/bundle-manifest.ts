/** A bundle's manifest.json: everything the generated loader needs to run the kernels, as data.
 *  Its Plan part is what runtime/executor.ts runs, for a bundle and for Kiln's Executable alike.
 *  This file imports only the dependency-free error class: compiler/bundle/loader.ts copies its
 *  text into every generated loader, so the emitter and the loader share one definition and one
 *  validation (validateManifest), which checks structure and consistency before any device work. */
import { KilnError } from "../src/ir/kiln-error.ts";

/** The format this code writes and the loaders it generates read. */
export const FORMAT = "kiln-bundle/1";

export type BundleDtype = "f32" | "i32" | "u32" | "bool";
/** A dim: a size, or a symbolic dim such as "B" bound per call (≤ its declared bound). */
export type BundleDim = number | string;

/** A product of a static factor and symbolic dims (src/ir/shape.ts Size, as data). */
export interface SizeData {
  readonly k: number;
  readonly syms: readonly string[];
}

/** linear: ceil(total / perGroup) workgroups, folded over x and y past the per-dimension limit;
 *  grid: ceil(size / per) per axis. */
export type DispatchData =
  | { readonly kind: "linear"; readonly total: SizeData; readonly perGroup: number }
  | {
      readonly kind: "grid";
      readonly x: { readonly size: SizeData; readonly per: number };
      readonly y: { readonly size: SizeData; readonly per: number };
      readonly z: { readonly size: SizeData; readonly per: number };
    };

export const sizeAt = (s: SizeData, env: Readonly<Record<string, number>>): number => s.syms.reduce((a, d) => a * env[d], s.k);

/** Workgroups of a dispatch at `env`, before any limit check — the one rule, used by the
 *  compiler's limit checks (compiler/limits.ts), the validator and the executor: a linear
 *  dispatch is folded over x and y past `maxDim` (the kernel rebuilds its index from
 *  workgroup_id and num_workgroups), a grid is ceil(size / per) per axis. */
export function dispatchCounts(d: DispatchData, env: Readonly<Record<string, number>>, maxDim: number): [number, number, number] {
  if (d.kind === "linear") {
    const groups = Math.ceil(sizeAt(d.total, env) / d.perGroup);
    const x = Math.min(groups, maxDim);
    return [x, x ? Math.ceil(groups / x) : 0, 1];
  }
  return [d.x, d.y, d.z].map((a) => Math.ceil(sizeAt(a.size, env) / a.per)) as [number, number, number];
}

export interface TensorData {
  readonly name: string;
  readonly dtype: BundleDtype;
  readonly shape: readonly BundleDim[];
}

/** One GPU buffer the loader creates. arena: planned temporaries and per-call inputs; state: a
 *  resident input, filled from the weights file; const: constant data (`data`); own: a value
 *  kept out of the arena. Every dtype is stored in 32 bits. */
export interface BufferData {
  readonly label: string;
  readonly bytes: number;
  readonly kind: "arena" | "state" | "const" | "own";
  readonly state?: string;
  /** Constant data's values and dtype. */
  readonly data?: readonly number[];
  readonly dtype?: BundleDtype;
}

/** A value some kernel binds, and where it lives: `buffer` (index in `buffers`) at `offset`. */
export interface ValueData {
  readonly id: number;
  readonly buffer: number;
  readonly offset: number;
  readonly dtype: BundleDtype;
  readonly shape: readonly BundleDim[];
  /** "f16": an f32 value stored in 16 bits (mixed precision, compiler/precision.ts), 2 bytes an
   *  element; absent: 32 bits. */
  readonly storage?: "f16";
}

/** A value's bytes at `dims` as bound: 2 or 4 an element, rounded up to 4, at least 4 (a binding
 *  may not be empty, and a storage binding's size is a multiple of 4). */
export const valueBytes = (v: Pick<ValueData, "shape" | "storage">, dims: Readonly<Record<string, number>>): number =>
  Math.max(
    4,
    Math.ceil((v.shape.reduce<number>((a, d) => a * (typeof d === "number" ? d : dims[d]), 1) * (v.storage === "f16" ? 2 : 4)) / 4) * 4,
  );

export interface KernelData {
  readonly name: string;
  /** Path of its WGSL in the bundle, e.g. "kernels/k0-matmul.wgsl". */
  readonly file: string;
  /** Storage bindings 0..n-1 (value ids); binding n is the dims uniform when `uniforms` is set. */
  readonly bindings: readonly { readonly value: number; readonly access: "read" | "read_write" }[];
  /** Symbolic dims in the uniform struct, u32 each, in this order. */
  readonly uniforms: readonly string[];
  readonly dispatch: DispatchData;
}

/** What the executor runs: memory planned at `dims`, values placed in buffers, kernels. */
export interface Plan {
  /** Declared bounds of the symbolic dims: memory is planned for them; a call past one is refused. */
  readonly dims: Readonly<Record<string, number>>;
  /** Per-call inputs; `value` null when no kernel reads the input. */
  readonly inputs: readonly (TensorData & { readonly value: number | null })[];
  /** What a call returns (state updates excluded). */
  readonly outputs: readonly (TensorData & { readonly value: number })[];
  /** Resident inputs, read from the weights file at load; `update` is the value that replaces
   *  one after each call, copied unless it already lives in the state buffer (written in place). */
  readonly state: readonly (TensorData & { readonly buffer: number; readonly update: number | null })[];
  readonly buffers: readonly BufferData[];
  readonly values: readonly ValueData[];
  /** In dispatch order: one compute pass runs them all. */
  readonly kernels: readonly KernelData[];
}

export interface Manifest extends Plan {
  readonly format: string;
  readonly name: string;
  readonly mode: "inference" | "train";
  readonly weights: { readonly file: string; readonly bytes: number; readonly sha256: string };
  /** WebGPU features the kernels need (["shader-f16"] for mixed precision): the loader requests
   *  them and refuses an adapter without them. Absent: none. */
  readonly features?: readonly string[];
  /** How it was compiled (for people; the loader ignores it). `tuning`: the adapter the GEMM
   *  configurations were tuned for ("portable default" when none was), and per GEMM kernel its
   *  shape class and configuration. The configuration changes only the WGSL: a bundle tuned for
   *  one adapter runs on any, just not necessarily at its best there. */
  readonly compiler: {
    readonly target: string;
    readonly fuse: boolean;
    readonly passes: readonly string[];
    readonly tuning?: { readonly tunedFor: string; readonly kernels: Readonly<Record<string, string>> };
  };
}

/** The device limits a manifest is checked against. */
export type PlanLimits = Pick<
  GPUSupportedLimits,
  | "maxBufferSize"
  | "maxStorageBufferBindingSize"
  | "maxStorageBuffersPerShaderStage"
  | "minStorageBufferOffsetAlignment"
  | "maxComputeWorkgroupsPerDimension"
>;

/** A kernel file: kernels/<name>.wgsl, nothing else (no "..", no other folder, no absolute path). */
const KERNEL_FILE = /^kernels\/[A-Za-z0-9_][A-Za-z0-9_.-]*\.wgsl$/;
/** A file at the bundle's top level: a plain name. */
const TOP_FILE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/** A WebGPU feature name as the spec spells them: "subgroups", "shader-f16". */
const FEATURE = /^[a-z0-9]+(-[a-z0-9]+)*$/;

/** Checks a parsed manifest's structure, then (with `limits`) its consistency: file names
 *  confined to the bundle, every value's range inside its buffer, types as the inputs, outputs
 *  and state declare them, bindings within the device's limits and not aliased, dispatch counts
 *  within the device's limits and the kernel's own bounds; with `features` (the device's), that
 *  it has every feature the kernels need. Throws naming the first bad field. */
export function validateManifest(
  m: unknown,
  source = "manifest.json",
  limits?: PlanLimits,
  features?: { has(name: string): boolean },
): Manifest {
  const fail = (what: string): never => {
    throw new KilnError(`kiln bundle: ${source}: ${what}`);
  };
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
  if (!isObj(m)) return fail("not a JSON object");
  if (m.format !== FORMAT)
    fail(
      `format ${JSON.stringify(m.format)} is not "${FORMAT}", the only one this loader reads; rebuild the bundle with this Kiln, or use the loader built with it`,
    );
  const nat = (v: unknown, what: string): number =>
    Number.isSafeInteger(v) && (v as number) >= 0
      ? (v as number)
      : fail(`${what} must be a non-negative integer, got ${JSON.stringify(v)}`);
  const arr = (v: unknown, what: string): unknown[] => (Array.isArray(v) ? v : fail(`${what} must be an array`));
  const obj = (v: unknown, what: string): Record<string, unknown> => (isObj(v) ? v : fail(`${what} must be an object`));
  const str = (v: unknown, what: string): string => (typeof v === "string" ? v : fail(`${what} must be a string`));
  const dtype = (v: unknown, what: string) =>
    ["f32", "i32", "u32", "bool"].includes(v as string) ? v : fail(`${what}: unknown dtype ${JSON.stringify(v)}`);
  const dims = obj(m.dims, "dims");
  for (const [d, n] of Object.entries(dims)) if (nat(n, `dims.${d}`) < 1) fail(`dims.${d} must be at least 1`);
  const shape = (v: unknown, what: string) =>
    arr(v, what).forEach((d, i) =>
      typeof d === "string" ? d in dims || fail(`${what}[${i}]: dim "${d}" has no declared bound`) : nat(d, `${what}[${i}]`),
    );
  const tensor = (v: unknown, what: string) => {
    const t = obj(v, what);
    str(t.name, `${what}.name`);
    dtype(t.dtype, `${what}.dtype`);
    shape(t.shape, `${what}.shape`);
    return t;
  };
  str(m.name, "name");
  if (m.mode !== "inference" && m.mode !== "train") fail(`mode must be "inference" or "train", got ${JSON.stringify(m.mode)}`);
  const buffers = arr(m.buffers, "buffers");
  buffers.forEach((b, i) => {
    const o = obj(b, `buffers[${i}]`);
    nat(o.bytes, `buffers[${i}].bytes`);
    if (!["arena", "state", "const", "own"].includes(o.kind as string)) fail(`buffers[${i}].kind ${JSON.stringify(o.kind)}`);
    if (o.kind === "const" && !arr(o.data, `buffers[${i}].data`).every((x) => typeof x === "number"))
      fail(`buffers[${i}].data must hold numbers`);
  });
  const buffer = (v: unknown, what: string) => (nat(v, what) < buffers.length ? v : fail(`${what}: no buffer ${JSON.stringify(v)}`));
  const ids = new Set<number>();
  arr(m.values, "values").forEach((v, i) => {
    const o = obj(v, `values[${i}]`);
    ids.add(nat(o.id, `values[${i}].id`));
    buffer(o.buffer, `values[${i}].buffer`);
    nat(o.offset, `values[${i}].offset`);
    dtype(o.dtype, `values[${i}].dtype`);
    shape(o.shape, `values[${i}].shape`);
    if (o.storage !== undefined && (o.storage !== "f16" || o.dtype !== "f32"))
      fail(`values[${i}].storage ${JSON.stringify(o.storage)}: only an f32 value may be stored as "f16"`);
  });
  const value = (v: unknown, what: string) => (ids.has(v as number) ? v : fail(`${what}: no value ${JSON.stringify(v)}`));
  arr(m.inputs, "inputs").forEach((v, i) => {
    const t = tensor(v, `inputs[${i}]`);
    if (t.value !== null) value(t.value, `inputs[${i}].value`);
  });
  arr(m.outputs, "outputs").forEach((v, i) => value(tensor(v, `outputs[${i}]`).value, `outputs[${i}].value`));
  arr(m.state, "state").forEach((v, i) => {
    const t = tensor(v, `state[${i}]`);
    if (!(t.shape as unknown[]).every((d) => typeof d === "number")) fail(`state[${i}] "${t.name}" must have a static shape`);
    buffer(t.buffer, `state[${i}].buffer`);
    if (t.update !== null) value(t.update, `state[${i}].update`);
  });
  const size = (v: unknown, what: string) => {
    const s = obj(v, what);
    nat(s.k, `${what}.k`);
    arr(s.syms, `${what}.syms`).forEach(
      (d) => (typeof d === "string" && d in dims) || fail(`${what}: dim ${JSON.stringify(d)} has no declared bound`),
    );
  };
  arr(m.kernels, "kernels").forEach((v, i) => {
    const k = obj(v, `kernels[${i}]`);
    const w = `kernels[${i}]`;
    str(k.name, `${w}.name`);
    const file = str(k.file, `${w}.file`);
    if (!KERNEL_FILE.test(file) || file.includes(".."))
      fail(`${w}.file ${JSON.stringify(file)} is not a file in the bundle's kernels/ folder (kernels/<name>.wgsl)`);
    arr(k.bindings, `${w}.bindings`).forEach((b, j) => {
      const o = obj(b, `${w}.bindings[${j}]`);
      value(o.value, `${w}.bindings[${j}].value`);
      if (o.access !== "read" && o.access !== "read_write") fail(`${w}.bindings[${j}].access ${JSON.stringify(o.access)}`);
    });
    arr(k.uniforms, `${w}.uniforms`).forEach(
      (d) => (typeof d === "string" && d in dims) || fail(`${w}.uniforms: dim ${JSON.stringify(d)} has no declared bound`),
    );
    const d = obj(k.dispatch, `${w}.dispatch`);
    if (d.kind === "linear") {
      size(d.total, `${w}.dispatch.total`);
      if (nat(d.perGroup, `${w}.dispatch.perGroup`) < 1) fail(`${w}.dispatch.perGroup must be ≥ 1`);
    } else if (d.kind === "grid") {
      for (const a of ["x", "y", "z"]) {
        const c = obj(d[a], `${w}.dispatch.${a}`);
        size(c.size, `${w}.dispatch.${a}.size`);
        if (nat(c.per, `${w}.dispatch.${a}.per`) < 1) fail(`${w}.dispatch.${a}.per must be ≥ 1`);
      }
    } else fail(`${w}.dispatch.kind ${JSON.stringify(d.kind)}`);
  });
  const wt = obj(m.weights, "weights");
  const wfile = str(wt.file, "weights.file");
  if (!TOP_FILE.test(wfile) || wfile.includes("..")) fail(`weights.file ${JSON.stringify(wfile)} is not a file in the bundle's folder`);
  nat(wt.bytes, "weights.bytes");
  if (!/^[0-9a-f]{64}$/.test(str(wt.sha256, "weights.sha256"))) fail("weights.sha256 must be 64 hex digits");
  if (m.features !== undefined)
    arr(m.features, "features").forEach((f, i) => {
      if (!FEATURE.test(str(f, `features[${i}]`))) fail(`features[${i}] ${JSON.stringify(f)} is not a WebGPU feature name`);
      if (features && !features.has(f as string))
        fail(
          `its kernels need the WebGPU feature "${f}"${f === "shader-f16" ? " (built in mixed precision)" : ""}, which this device lacks: create the device with adapter.requestDevice({ requiredFeatures: ${JSON.stringify(m.features)} }) on an adapter that offers it, or rebuild the bundle without it (kiln build ${f === "shader-f16" ? "--precision f32" : "without --subgroups"})`,
        );
    });
  if (limits) checkPlan(m as unknown as Plan, limits, fail);
  return m as unknown as Manifest;
}

const numelBound = (shape: readonly BundleDim[], dims: Readonly<Record<string, number>>): number =>
  shape.reduce<number>((a, d) => a * (typeof d === "number" ? d : dims[d]), 1);

/** The consistency of a structurally valid plan, at its declared bounds (see validateManifest). */
function checkPlan(m: Plan, lim: PlanLimits, fail: (what: string) => never): void {
  const fmt = (t: { dtype: string; shape: readonly BundleDim[] }) => `${t.dtype}[${t.shape.join(",")}]`;
  const same = (a: { dtype: string; shape: readonly BundleDim[] }, b: { dtype: string; shape: readonly BundleDim[] }) =>
    a.dtype === b.dtype && a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]);
  const names = new Set<string>();
  for (const t of [...m.inputs, ...m.state]) {
    if (names.has(t.name)) fail(`input "${t.name}" is declared twice`);
    names.add(t.name);
  }
  if (new Set(m.outputs.map((o) => o.name)).size !== m.outputs.length) fail("two outputs have one name");
  const size = (b: { bytes: number }) => Math.max(4, Math.ceil(b.bytes / 4) * 4);
  m.buffers.forEach((b, i) => {
    if (b.bytes > lim.maxBufferSize) fail(`buffers[${i}] (${b.label}) is ${b.bytes} bytes; the device allows ${lim.maxBufferSize}`);
    if (b.kind === "const") {
      if (!["f32", "i32", "u32", "bool"].includes(b.dtype as string)) fail(`buffers[${i}].dtype ${JSON.stringify(b.dtype)}`);
      if (b.data!.length * 4 !== b.bytes) fail(`buffers[${i}]: ${b.data!.length} constants for ${b.bytes} bytes`);
    }
    if (b.kind === "state" && !m.state.some((s) => s.name === b.state && s.buffer === i))
      fail(`buffers[${i}] is the state buffer of ${JSON.stringify(b.state)}, which the state list does not place there`);
  });
  const values = new Map<number, Plan["values"][number]>();
  m.values.forEach((v, i) => {
    if (values.has(v.id)) fail(`values[${i}]: value ${v.id} is placed twice`);
    values.set(v.id, v);
    const bytes = valueBytes(v, m.dims);
    const buf = m.buffers[v.buffer];
    if (!Number.isSafeInteger(v.offset + bytes) || v.offset + bytes > size(buf))
      fail(`values[${i}] (%${v.id} ${fmt(v)}) at [${v.offset}, ${v.offset + bytes}) runs past buffers[${v.buffer}] (${buf.bytes} bytes)`);
    if (v.offset % lim.minStorageBufferOffsetAlignment)
      fail(`values[${i}].offset ${v.offset} is not a multiple of ${lim.minStorageBufferOffsetAlignment}`);
    if (bytes > lim.maxStorageBufferBindingSize)
      fail(`values[${i}] (%${v.id} ${fmt(v)}) is ${bytes} bytes; the device binds at most ${lim.maxStorageBufferBindingSize}`);
    if (buf.kind === "const" && buf.dtype !== v.dtype) fail(`values[${i}] is ${v.dtype}, its constant data ${buf.dtype}`);
  });
  const typed = (t: { name: string; dtype: string; shape: readonly BundleDim[] }, id: number, what: string) => {
    const v = values.get(id)!;
    if (!same(t, v)) fail(`${what} "${t.name}" is ${fmt(t)} but its value %${id} is ${fmt(v)}`);
  };
  for (const i of m.inputs) if (i.value !== null) typed(i, i.value, "input");
  for (const o of m.outputs) typed(o, o.value, "output");
  for (const s of m.state) {
    const b = m.buffers[s.buffer];
    if (b.kind !== "state" || b.state !== s.name || b.bytes !== numelBound(s.shape, {}) * 4)
      fail(`state "${s.name}" ${fmt(s)} is not in a state buffer of its size (buffers[${s.buffer}])`);
    if (s.update !== null) typed(s, s.update, "the update of state");
    // What lives in a state buffer is the state input or its update written in place: its type.
    for (const v of m.values) if (v.buffer === s.buffer) typed(s, v.id, "state");
  }
  const writers = new Set<number>();
  m.kernels.forEach((k, i) => {
    const w = `kernels[${i}] (${k.name})`;
    if (k.bindings.length > lim.maxStorageBuffersPerShaderStage)
      fail(`${w} binds ${k.bindings.length} storage buffers; the device allows ${lim.maxStorageBuffersPerShaderStage}`);
    const ranges = k.bindings.map((b) => {
      const v = values.get(b.value)!;
      return {
        ...b,
        buffer: v.buffer,
        begin: v.offset,
        end: v.offset + valueBytes(v, m.dims),
        n: numelBound(v.shape, m.dims),
      };
    });
    ranges.forEach((a, j) => {
      if (a.access === "read_write") {
        if (m.buffers[a.buffer].kind === "const") fail(`${w}.bindings[${j}] writes constant data (%${a.value})`);
        writers.add(a.value);
      }
      for (const b of ranges.slice(0, j)) {
        if (a.buffer !== b.buffer) continue;
        // WebGPU: one buffer is bound writable or read-only within a dispatch, never both.
        if (a.access !== b.access) fail(`${w} binds buffers[${a.buffer}] both read-only and read_write`);
        if (a.begin < b.end && b.begin < a.end) fail(`${w}: bindings %${b.value} and %${a.value} overlap in buffers[${a.buffer}]`);
      }
    });
    if (!ranges.some((r) => r.access === "read_write")) fail(`${w} writes nothing (no read_write binding)`);
    // Its own bounds: no more workgroups than its largest binding has elements (or than one axis
    // allows, for small tensors): a compiled kernel writes some of its output in each, so a
    // 2³²-thread dispatch over a few values is refused.
    const most = Math.max(1, ...ranges.map((r) => r.n));
    const d = k.dispatch;
    for (const size of d.kind === "linear" ? [d.total] : [d.x.size, d.y.size, d.z.size]) {
      const n = sizeAt(size, m.dims);
      if (!Number.isSafeInteger(n)) fail(`${w}: dispatch over ${n} elements at ${JSON.stringify(m.dims)}`);
    }
    const max = lim.maxComputeWorkgroupsPerDimension;
    const groups = dispatchCounts(d, m.dims, max);
    if (groups.some((g) => g > max))
      fail(`${w}: ${groups.join("×")} workgroups at ${JSON.stringify(m.dims)} exceed the device's ${max} per dimension`);
    // The workgroups the kernel needs (a linear dispatch before its fold over x and y).
    const total = d.kind === "linear" ? Math.ceil(sizeAt(d.total, m.dims) / d.perGroup) : groups.reduce((a, g) => a * g, 1);
    if (total === 0 && ranges.some((r) => r.access === "read_write" && r.n > 0))
      fail(
        `${w} dispatches no workgroups at ${JSON.stringify(m.dims)} though it writes %${ranges.find((r) => r.access === "read_write" && r.n > 0)!.value}`,
      );
    if (total > Math.max(most, max))
      fail(
        `${w}: ${total} workgroups at ${JSON.stringify(m.dims)}, more than its largest binding has elements (${most}) and than one axis allows (${max})`,
      );
  });
  for (const o of m.outputs)
    if (!writers.has(o.value) && !m.inputs.some((i) => i.value === o.value) && m.buffers[values.get(o.value)!.buffer].kind === "arena")
      fail(`output "${o.name}" (%${o.value}) is written by no kernel`);
}

/** What the bundle's integrity hash (SHA-256) is taken over: each file's name, length and bytes,
 *  manifest.json first, then the kernels in manifest order, then the weights. */
export function integrityInput(files: readonly (readonly [string, Uint8Array])[]): Uint8Array {
  const enc = new TextEncoder();
  const parts = files.flatMap(([name, bytes]) => [enc.encode(`${name}\n${bytes.length}\n`), bytes]);
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The files the integrity hash covers, in order (kernel files once each). */
export const integrityFiles = (m: Manifest): string[] => ["manifest.json", ...new Set(m.kernels.map((k) => k.file)), m.weights.file];
