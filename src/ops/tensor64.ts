/** The reference interpreter's value: float64 data in row-major order, whatever the dtype.
 *  i32/u32 values are kept wrapped to their range and bool as 0/1, so they match the GPU exactly. */
import { strides } from "../ir/shape.ts";
import type { DType } from "../ir/types.ts";

export interface Tensor64 {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: Float64Array;
}

export const size = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

export function tensor64(dtype: DType, shape: readonly number[], data?: ArrayLike<number>): Tensor64 {
  const n = size(shape);
  const out = new Float64Array(n);
  if (data) {
    if (data.length !== n) throw new Error(`tensor64: ${data.length} values for shape [${shape}] (${n} elements)`);
    for (let i = 0; i < n; i++) out[i] = wrap(dtype, data[i]);
  }
  return { dtype, shape: [...shape], data: out };
}

/** Round a float64 to the value the dtype can hold (f32 keeps float64: it is the oracle). */
export function wrap(dtype: DType, x: number): number {
  switch (dtype) {
    case "f32":
      return x;
    case "i32":
      return Number.isFinite(x) ? Math.trunc(x) | 0 : 0;
    case "u32":
      return Number.isFinite(x) ? Math.trunc(x) >>> 0 : 0;
    case "bool":
      return x !== 0 ? 1 : 0; // NaN is true, as NaN != 0 in WGSL
  }
}

/** Visit every index of `shape` in row-major order. */
export function forEachIndex(shape: readonly number[], fn: (idx: readonly number[], flat: number) => void): void {
  const n = size(shape);
  const idx = new Array<number>(shape.length).fill(0);
  for (let flat = 0; flat < n; flat++) {
    fn(idx, flat);
    for (let a = shape.length - 1; a >= 0; a--) {
      if (++idx[a] < shape[a]) break;
      idx[a] = 0;
    }
  }
}

export function flatIndex(idx: readonly number[], shape: readonly number[]): number {
  const st = strides(shape);
  let f = 0;
  for (let i = 0; i < idx.length; i++) f += idx[i] * st[i];
  return f;
}

/** Broadcast read: index `idx` of an output of rank ≥ t's rank, numpy-aligned on the right. */
export function broadcastAt(t: Tensor64, idx: readonly number[]): number {
  const off = idx.length - t.shape.length;
  let f = 0;
  let stride = 1;
  for (let a = t.shape.length - 1; a >= 0; a--) {
    const d = t.shape[a];
    if (d !== 1) f += idx[a + off] * stride;
    stride *= d;
  }
  return t.data[f];
}
