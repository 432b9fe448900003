/** The device requests the kernel features its adapter offers, and a program whose kernels need
 *  a feature the device lacks is refused before any pipeline compiles, naming kernel and feature. */
import { describe, expect, test } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { requiredFeatures } from "../../compiler/program.ts";
import { GPU_TARGET, withFeatures } from "../../compiler/target.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import { acquireGpu, assertFeatures } from "../../runtime/device.ts";
import { Executable } from "../../runtime/execute.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();

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
