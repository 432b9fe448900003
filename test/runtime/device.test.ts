/** settle: waiting for a Dawn promise without the binding's busy polling gives the promise's
 *  own outcome, whether it is already settled, settles later, or fails. */
import { expect, test } from "vitest";
import { KilnError } from "../../src/ir/errors.ts";
import { acquireGpu, settle } from "../../runtime/device.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();

test("settle resolves with the value and rejects with the error of the promise it waits for", async () => {
  expect(await settle(Promise.resolve(7))).toBe(7);
  expect(await settle(new Promise((resolve) => setTimeout(() => resolve("later"), 5)))).toBe("later");
  const failure = new KilnError("no");
  await expect(settle(Promise.reject(failure))).rejects.toBe(failure);
  await expect(settle(new Promise((_, reject) => setTimeout(() => reject(failure), 5)))).rejects.toBe(failure);
});

test("settle waits for GPU work: a mapped buffer holds what was copied into it", async () => {
  const { device } = await acquireGpu();
  const src = device.createBuffer({ size: 16, usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
  const dst = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(src, 0, Float32Array.of(1, 2, 3, 4));
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(src, 0, dst, 0, 16);
  device.queue.submit([enc.finish()]);
  await settle(device.queue.onSubmittedWorkDone());
  await settle(dst.mapAsync(GPUMapMode.READ));
  expect(Array.from(new Float32Array(dst.getMappedRange()))).toEqual([1, 2, 3, 4]);
  dst.unmap();
  src.destroy();
  dst.destroy();
});
