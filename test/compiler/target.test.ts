import { describe, expect, test } from "vitest";
import { CPU_TARGET, GPU_TARGET, targetForAdapter, uses, withFeatures } from "../../compiler/target.ts";

describe("targetForAdapter", () => {
  test("software rasterizers get the CPU target", () => {
    // Dawn's adapter.info on lavapipe: description, device, vendor, architecture.
    expect(targetForAdapter("llvmpipe: Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6) 0.0.1 llvmpipe-llvm-15-0-6-256-bits- mesa software")).toBe(
      CPU_TARGET,
    );
    expect(targetForAdapter("SwiftShader Device (Subzero) google")).toBe(CPU_TARGET);
    expect(targetForAdapter("Microsoft Basic Render Driver")).toBe(CPU_TARGET);
    expect(targetForAdapter("lavapipe")).toBe(CPU_TARGET);
  });

  test("hardware adapters get the GPU target, unless marked as the fallback adapter", () => {
    expect(targetForAdapter("NVIDIA GeForce RTX 4090 nvidia lovelace")).toBe(GPU_TARGET);
    expect(targetForAdapter("AMD Radeon RX 7900 XTX (RADV NAVI31) amd rdna-3")).toBe(GPU_TARGET);
    expect(targetForAdapter("Apple M2 apple metal-3")).toBe(GPU_TARGET);
    expect(targetForAdapter("Intel(R) UHD Graphics 630 intel gen-9")).toBe(GPU_TARGET);
    expect(targetForAdapter("", false)).toBe(GPU_TARGET);
    expect(targetForAdapter("some adapter", true)).toBe(CPU_TARGET);
  });
});

describe("kernel features", () => {
  test("the device's target uses the kernel features it has, and only those", () => {
    const t = targetForAdapter("llvmpipe", false, ["timestamp-query", "subgroups"]);
    expect(t).toEqual({ ...CPU_TARGET, features: ["subgroups"] });
    expect(targetForAdapter("NVIDIA GeForce RTX 4090", false, ["subgroups"]).features).toEqual(["subgroups"]);
    expect(targetForAdapter("NVIDIA GeForce RTX 4090", false, ["depth-clip-control"])).toBe(GPU_TARGET);
  });

  test("withFeatures forces features on or off; the same features give the same target", () => {
    const on = withFeatures(GPU_TARGET, ["subgroups", "not-a-feature"]);
    expect(on.features).toEqual(["subgroups"]);
    expect(uses(on, "subgroups")).toBe(true);
    expect(withFeatures(on, [])).toEqual(GPU_TARGET);
    expect(uses(GPU_TARGET, "subgroups")).toBe(false);
    expect(withFeatures(CPU_TARGET, [])).toBe(CPU_TARGET);
  });
});
