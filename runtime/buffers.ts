/** GPU buffers with a live count, so tests can prove repeated runs leak nothing; and host data
 *  checked into buffer contents (bool is stored as u32; runtime/executor.ts reads them back). */
import { KilnError } from "../src/ir/errors.ts";
import type { DType } from "../src/ir/types.ts";

let live = 0;

export const liveBuffers = (): number => live;

export function createBuffer(device: GPUDevice, label: string, size: number, usage: GPUBufferUsageFlags): GPUBuffer {
  const b = device.createBuffer({ label, size: Math.max(4, Math.ceil(size / 4) * 4), usage });
  live++;
  return b;
}

export function destroyBuffer(b: GPUBuffer): void {
  b.destroy();
  live--;
}

export type { HostArray } from "./executor.ts";

/** Host data → the typed array a buffer of `dtype` holds; integers must be integers in range. */
export function toStorage(dtype: DType, data: ArrayLike<number>, what: string): Float32Array | Int32Array | Uint32Array {
  if (dtype === "f32") return data instanceof Float32Array ? data : Float32Array.from(data);
  const [lo, hi] = dtype === "i32" ? [-2147483648, 2147483647] : dtype === "u32" ? [0, 4294967295] : [0, 1];
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (!Number.isInteger(v) || v < lo || v > hi) {
      throw new KilnError(
        `${what}: element ${i} is ${v}, not ${dtype === "i32" ? "an" : "a"} ${dtype}${dtype === "bool" ? " (0 or 1)" : ""}`,
      );
    }
  }
  if (dtype === "i32") return data instanceof Int32Array ? data : Int32Array.from(data);
  return data instanceof Uint32Array ? data : Uint32Array.from(data);
}
