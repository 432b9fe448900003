/** A bundle built in mixed precision (kiln build --precision mixed): its manifest lists the
 *  feature its kernels need and the values stored as f16, its loader exports REQUIRED_FEATURES,
 *  it runs on a device with `shader-f16` within f16's rounding of the f32 bundle, and a device
 *  without it is refused by name before anything is compiled. */
import { afterAll, describe, expect, test } from "vitest";
import { buildBundle } from "../../cli/build.ts";
import { acquireGpu } from "../../runtime/device.ts";
import { Bundle, type BundleFiles } from "../../runtime/bundle-runtime.ts";
import type { Manifest } from "../../formats/bundle-manifest.ts";
import { batchOf, mlpInput, removeStandalone, runStandalone, standalone } from "../helpers/bundle.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();
afterAll(() => removeStandalone());

const serve = (files: Map<string, string | Uint8Array>): BundleFiles => ({
  text: async (n) => files.get(n) as string,
  bytes: async (n) => {
    const f = files.get(n)!;
    return typeof f === "string" ? new TextEncoder().encode(f) : f;
  },
});

const mixed = buildBundle(mlpInput("forward", 4), { name: "mlp-mixed", target: "cpu", precision: "mixed" });
const f32 = buildBundle(mlpInput("forward", 4), { name: "mlp", target: "cpu" });
const manifest = (files: Map<string, string | Uint8Array>) => JSON.parse(files.get("manifest.json") as string) as Manifest;

describe("bundles in mixed precision", () => {
  test("the manifest lists shader-f16 and the f16 values; the loader exports REQUIRED_FEATURES", () => {
    const m = manifest(mixed);
    expect(m.features).toEqual(["shader-f16"]);
    const half = m.values.filter((v) => v.storage === "f16");
    expect(half.length).toBe(2); // the two hidden layers
    for (const v of half) expect(v.dtype).toBe("f32");
    expect(mixed.get("loader.ts")).toContain('export const REQUIRED_FEATURES: readonly GPUFeatureName[] = ["shader-f16"];');
    expect(manifest(f32).features).toBeUndefined();
    expect(f32.get("loader.ts")).toContain("export const REQUIRED_FEATURES: readonly GPUFeatureName[] = [];");
    // Kernels binding an f16 value enable f16, the others do not.
    for (const k of m.kernels) {
      const wgsl = mixed.get(k.file) as string;
      expect(wgsl.includes("enable f16;")).toBe(k.bindings.some((b) => half.some((v) => v.id === b.value)));
    }
  });

  test("it runs within two f16 roundings (2·2⁻¹¹ of the output's scale) of the f32 bundle", async () => {
    const { device } = await acquireGpu();
    const { x } = batchOf(4, 784, 7);
    const out = async (files: Map<string, string | Uint8Array>) => {
      const b = await Bundle.open(device, serve(files));
      try {
        return (await b.call({ x })).out as Float32Array;
      } finally {
        b.dispose();
      }
    };
    const [a, b] = [await out(f32), await out(mixed)];
    const scale = Math.max(...Array.from(a, Math.abs));
    expect(a.length).toBe(40);
    for (let i = 0; i < a.length; i++)
      expect(Math.abs(a[i] - b[i]), `out[${i}]`).toBeLessThanOrEqual(2 * 2 ** -11 * (scale * 2 + Math.abs(a[i])));
  });

  test("standalone (its own Node process, device made with REQUIRED_FEATURES) it gives what it gives in-process", async () => {
    const { device } = await acquireGpu();
    const { x } = batchOf(3, 784, 8);
    const b = await Bundle.open(device, serve(mixed));
    const here = (await b.call({ x })).out as Float32Array;
    b.dispose();
    const there = (await runStandalone(standalone(mixed), { x })).results[0].out;
    // The same kernels on the same driver: the same f16 roundings.
    expect(there).toEqual(Array.from(here));
  });

  test("a device without shader-f16 is refused by name", async () => {
    const { device } = await acquireGpu();
    const without = new Proxy(device, { get: (t, k) => (k === "features" ? new Set() : Reflect.get(t, k, t)) });
    await expect(Bundle.open(without, serve(mixed))).rejects.toThrow(
      /kiln bundle: manifest\.json: its kernels need the WebGPU feature "shader-f16" \(built in mixed precision\), which this device lacks: create the device with adapter\.requestDevice\(\{ requiredFeatures: \["shader-f16"\] \}\)/,
    );
  });
});
