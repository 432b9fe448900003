/** Seeded test data. */
import type { HostTensor } from "../../src/ir/host.ts";

/** Deterministic f32 values in [-1, 1) (mulberry32), exactly representable in f32. */
export function floats(n: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.fround((((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * 2 - 1);
  });
}

export const host = (shape: readonly number[], seed: number): HostTensor => ({
  shape,
  data: floats(
    shape.reduce((a, d) => a * d, 1),
    seed,
  ),
});
