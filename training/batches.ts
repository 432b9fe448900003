/** Host-side batching for fit / evaluate / predict (training/compile-model.ts): example counts, row
 *  slices, shuffled mini-batches gathered into a reused buffer. */
import { KilnError } from "../src/ir/errors.ts";
import type { HostTensor } from "../src/ir/host.ts";

export const size = (shape: readonly number[]): number => shape.reduce((a, d) => a * d, 1);
export const rowSize = (t: HostTensor): number => size(t.shape.slice(1));

export function examples(x: HostTensor, y: HostTensor, what: string): number {
  const n = x.shape[0];
  if (n === undefined || y.shape[0] !== n)
    throw new KilnError(`${what}: x [${x.shape}] and y [${y.shape}] must have the same number of examples (first dim)`);
  if (x.data.length !== n * rowSize(x) || y.data.length !== n * rowSize(y))
    throw new KilnError(`${what}: data lengths ${x.data.length} / ${y.data.length} do not match shapes [${x.shape}] / [${y.shape}]`);
  return n;
}

export function rows(t: HostTensor, lo: number, hi: number): HostTensor {
  const r = rowSize(t);
  const data = t.data as Float32Array;
  return { shape: [hi - lo, ...t.shape.slice(1)], data: data.subarray(lo * r, hi * r) };
}

export function gatherRows(src: HostTensor["data"], order: Int32Array, lo: number, b: number, row: number, dst: Float32Array): void {
  const s = src as Float32Array;
  for (let i = 0; i < b; i++) {
    const from = order[lo + i] * row;
    dst.set(s.subarray(from, from + row), i * row);
  }
}

export function shuffle(a: Int32Array, random: () => number): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
}
