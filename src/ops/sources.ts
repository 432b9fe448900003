/** Source ops: graph inputs, constants, iota and the counter-based random generator. */
import { formatShape, formatType, isValidDim } from "../ir/shape.ts";
import type { Shape } from "../ir/types.ts";
import { defineOp, fail } from "./def.ts";
import { forEachIndex, size, tensor64 } from "./tensor64.ts";
import { lit } from "./wgsl.ts";

function checkShape(shape: Shape, what: string): void {
  if (!Array.isArray(shape) || !shape.every(isValidDim)) fail(`${what}: bad shape ${JSON.stringify(shape)}`);
}

export const input = defineOp({
  name: "input",
  arity: 0,
  attrs: { name: "string", dtype: "dtype", shape: "shape" },
  infer: (_ins, a) => (checkShape(a.shape, "input"), { dtype: a.dtype, shape: a.shape }),
  reference: () => fail("input has no reference: the interpreter binds it"),
  pattern: { kind: "source" },
  lower: { kind: "buffer" },
});

/** A number fills the shape and is inlined into kernels as a literal; an array is data in a buffer. */
export const constant = defineOp({
  name: "const",
  arity: 0,
  attrs: { dtype: "dtype", shape: "shape", value: "number|numbers" },
  infer: (_ins, a) => {
    checkShape(a.shape, "const");
    if (Array.isArray(a.value)) {
      if (!a.shape.every((d) => typeof d === "number")) fail(`const data needs a static shape, got ${formatShape(a.shape)}`);
      const n = size(a.shape as number[]);
      if (a.value.length !== n) fail(`const has ${a.value.length} values for shape ${formatShape(a.shape)} (${n} elements)`);
    }
    return { dtype: a.dtype, shape: a.shape };
  },
  reference: (_ins, a, out) =>
    tensor64(out.dtype, out.shape, typeof a.value === "number" ? new Array<number>(size(out.shape)).fill(a.value) : a.value),
  pattern: { kind: "source" },
  lower: (a) =>
    typeof a.value === "number" ? { kind: "index", expr: (c) => lit(c.attrs.value as number, c.type.dtype) } : { kind: "buffer" },
});

export const iota = defineOp({
  name: "iota",
  arity: 0,
  attrs: { dtype: "dtype", shape: "shape", axis: "int" },
  infer: (_ins, a) => {
    checkShape(a.shape, "iota");
    if (!Number.isInteger(a.axis) || a.axis < 0 || a.axis >= a.shape.length)
      fail(`iota: axis ${a.axis} out of range for ${formatShape(a.shape)}`);
    if (a.dtype === "bool") fail("iota: dtype bool has no counting");
    return { dtype: a.dtype, shape: a.shape };
  },
  reference: (_ins, a, out) => {
    const r = tensor64(out.dtype, out.shape);
    forEachIndex(out.shape, (idx, flat) => (r.data[flat] = idx[a.axis]));
    return r;
  },
  pattern: { kind: "source" },
  lower: { kind: "index", expr: (c) => (c.type.dtype === "u32" ? c.out[c.attrs.axis] : `${c.type.dtype}(${c.out[c.attrs.axis]})`) },
});

/** PCG hash (O'Neill), on u32 like the WGSL helper `kiln_pcg`. */
export function pcg(v: number): number {
  const s = (Math.imul(v, 747796405) + 2891336453) >>> 0;
  const w = Math.imul(((s >>> ((s >>> 28) + 4)) ^ s) >>> 0, 277803737) >>> 0;
  return ((w >>> 22) ^ w) >>> 0;
}

/** Element i of stream (seed, key): pcg(pcg(i) ^ pcg(seed ^ pcg(key))), top 24 bits scaled to
 *  [0, 1). Counter-based: any element is computed alone, bit-identical on GPU and reference, and
 *  a new key (e.g. the training step) gives a fresh stream without recompiling. */
export function uniformAt(seed: number, key: number, i: number): number {
  const stream = pcg((seed ^ pcg(key >>> 0)) >>> 0);
  return (pcg((pcg(i >>> 0) ^ stream) >>> 0) >>> 8) * 2 ** -24;
}

export const random = defineOp({
  name: "random",
  arity: 1,
  attrs: { shape: "shape", seed: "int" },
  infer: (ins, a) => {
    checkShape(a.shape, "random");
    const [key] = ins;
    if (key.dtype !== "u32" || key.shape.length !== 0) fail(`random: the key must be a u32 scalar, got ${formatType(key)}`);
    if (!Number.isInteger(a.seed) || a.seed < 0 || a.seed > 0xffffffff) fail(`random: seed must be a u32, got ${a.seed}`);
    return { dtype: "f32", shape: a.shape };
  },
  reference: ([key], a, out) => {
    const r = tensor64("f32", out.shape);
    for (let i = 0; i < r.data.length; i++) r.data[i] = uniformAt(a.seed, key.data[0], i);
    return r;
  },
  pattern: { kind: "source" },
  lower: {
    kind: "index",
    expr: (c) => {
      const stream = `kiln_pcg(${c.attrs.seed >>> 0}u ^ kiln_pcg(${c.at(0, [])}))`;
      return `(f32(kiln_pcg(kiln_pcg(${c.linear(c.out, c.type.shape)}) ^ ${stream}) >> 8u) * 5.9604644775390625e-8f)`;
    },
  },
});
