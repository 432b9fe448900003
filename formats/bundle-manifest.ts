/** A bundle's manifest.json: everything the generated loader needs to run the kernels, as data.
 *  This file imports nothing: compiler/bundle/loader.ts copies its text into every generated
 *  loader, so the emitter and the loader share one definition and one validation. */

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
}

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

export interface Manifest {
  readonly format: string;
  readonly name: string;
  readonly mode: "inference" | "train";
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
  readonly weights: { readonly file: string; readonly bytes: number; readonly sha256: string };
  /** How it was compiled (for people; the loader ignores it). */
  readonly compiler: { readonly target: string; readonly fuse: boolean; readonly passes: readonly string[] };
}

/** Checks a parsed manifest's structure; throws naming the first bad field. */
export function validateManifest(m: unknown, source = "manifest.json"): Manifest {
  const fail = (what: string): never => {
    throw new Error(`kiln bundle: ${source}: ${what}`);
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
    str(k.file, `${w}.file`);
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
  str(wt.file, "weights.file");
  nat(wt.bytes, "weights.bytes");
  if (!/^[0-9a-f]{64}$/.test(str(wt.sha256, "weights.sha256"))) fail("weights.sha256 must be 64 hex digits");
  return m as unknown as Manifest;
}
