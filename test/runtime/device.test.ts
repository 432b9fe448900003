/** settle: waiting for a Dawn promise without the binding's busy polling gives the promise's
 *  own outcome, whether it is already settled, settles later, or fails. The device requests the
 *  kernel features its adapter offers, and a program whose kernels need a feature the device
 *  lacks is refused before any pipeline compiles, naming kernel and feature. */
import { describe, expect, test } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { requiredFeatures } from "../../compiler/program.ts";
import { GPU_TARGET, withFeatures } from "../../compiler/target.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import { KilnError } from "../../src/ir/errors.ts";
import { acquireGpu, assertFeatures, settle } from "../../runtime/device.ts";
import { Executable } from "../../runtime/execute.ts";
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

const sumGraph = () => {
  const g = new GraphBuilder();
  return g.build({ s: g.input("x", "f32", [2, 4096]).sum(1) });
};

describe("kernel features on the device", () => {
  test("the device has every kernel feature its adapter offers, and its target uses them", async () => {
    const gpu = await acquireGpu();
    for (const f of gpu.target.features) expect(gpu.device.features.has(f)).toBe(true);
    if (gpu.features.has("subgroups")) expect(gpu.target.features).toContain("subgroups");
  });

  test("a program using subgroups is refused on a device without them, before compiling", async () => {
    const gpu = await acquireGpu();
    const p = compile(sumGraph(), { target: withFeatures(GPU_TARGET, ["subgroups"]) });
    expect(requiredFeatures(p)).toEqual(["subgroups"]);
    const bare = { ...gpu, device: { features: new Set<string>() } as unknown as GPUDevice, pipelines: new Map() };
    await expect(Executable.load(p, bare)).rejects.toThrow(
      /loading the program: kernel k0 uses the WebGPU feature "subgroups", which this device lacks \(it has: none\)/,
    );
    expect(() => assertFeatures({ features: new Set(["shader-f16"]) } as unknown as GPUDevice, p.kernels, "here")).toThrow(
      'here: kernel k0 uses the WebGPU feature "subgroups", which this device lacks (it has: shader-f16)',
    );
    // Without the feature the same graph needs nothing.
    expect(requiredFeatures(compile(sumGraph(), { target: GPU_TARGET }))).toEqual([]);
  });
});
