/** Device limits that static shapes exceed are refused at compile time (compiler/limits.ts, the
 *  pipeline's "check-limits" stage), naming the op, its type and the user's line; symbolic dims
 *  are checked at their declared bounds, or by the runtime with the same message for the dims
 *  it meets. No GPU is needed for the compile-time half. */
import { describe, expect, test } from "vitest";
import { checkLimits, DEFAULT_LIMITS, dispatchCounts } from "../../compiler/limits.ts";
import { compile } from "../../compiler/pipeline.ts";
import { CPU_TARGET, GPU_TARGET } from "../../compiler/target.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import { KilnError } from "../../src/ir/errors.ts";
import { Executable } from "../../runtime/execute.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();

/** A VGG block's first conv at batch 64: f32[64,224,224,64] is 784 MiB. */
function bigConv(batch: number | string) {
  const g = new GraphBuilder();
  const x = g.input("x", "f32", [batch, 224, 224, 3]);
  const f = g.input("f", "f32", [3, 3, 3, 64]);
  const y = x.conv2d(f, { padding: [1, 1, 1, 1] });
  return g.build({ y: y.relu() });
}

describe("limits at compile time", () => {
  test("a conv output over the storage binding limit names the value, its kernel, its size and the line", () => {
    expect(() => compile(bigConv(64))).toThrow(KilnError);
    expect(() => compile(bigConv(64))).toThrow(
      /^relu %3 @ limits\.test\.ts:\d+: output f32\[64,224,224,64\] of k0 = fused\[conv2d, relu\] is 784 MiB, over the device's 128 MiB storage binding limit$/,
    );
    // Batch 2 (24.5 MiB) fits.
    expect(compile(bigConv(2)).kernels.length).toBeGreaterThan(0);
  });

  test("an input over the limit is named by its input name", () => {
    const g = new GraphBuilder();
    const x = g.input("pixels", "f32", [600, 224, 224, 3]);
    const graph = g.build({ y: x.mul(2) });
    expect(() => compile(graph)).toThrow(
      /^input "pixels" %0 @ limits\.test\.ts:\d+: f32\[600,224,224,3\] is 345 MiB, over the device's 128 MiB/,
    );
  });

  test("a device's own limits are used: a larger binding limit accepts what the default refuses", () => {
    const limits = { ...DEFAULT_LIMITS, maxStorageBufferBindingSize: 2 ** 30, maxBufferSize: 2 ** 31 };
    expect(compile(bigConv(64), { limits }).kernels.length).toBeGreaterThan(0);
    // …and a buffer size below the binding size is the limit that counts.
    const small = { ...DEFAULT_LIMITS, maxBufferSize: 16 * 2 ** 20 };
    expect(() => compile(bigConv(2), { limits: small })).toThrow(/is 24\.5 MiB, over the device's 16 MiB buffer size limit$/);
  });

  test("symbolic dims are checked at their declared bound, and not at all without one", () => {
    expect(() => compile(bigConv("B"), { dims: { B: 64 } })).toThrow(
      /^relu %3 @ limits\.test\.ts:\d+: output f32\[B,224,224,64\] with \{"B":64\} of k0 = fused\[conv2d, relu\] is 784 MiB, over the device's 128 MiB storage binding limit$/,
    );
    expect(compile(bigConv("B"), { dims: { B: 8 } }).kernels.length).toBeGreaterThan(0);
    expect(compile(bigConv("B")).kernels.length).toBeGreaterThan(0);
  });

  test("a dispatch past the per-dimension workgroup limit names the kernel and the op", () => {
    // A symbolic batch is not folded (its size is not known when the kernel is written): at a
    // declared bound of 70,000 it needs 70,000 workgroups along z.
    const g = new GraphBuilder();
    const a = g.input("a", "f32", ["B", 2, 3]);
    const b = g.input("b", "f32", ["B", 3, 2]);
    const graph = g.build({ y: a.matmul(b) });
    expect(() => compile(graph, { target: GPU_TARGET, dims: { B: 70000 } })).toThrow(
      /^matmul %2 @ limits\.test\.ts:\d+: kernel k0 \(matmul\) for f32\[B,2,2\] with \{"B":70000\} needs 1×1×70000 workgroups, over the device's 65535 per dimension$/,
    );
    expect(compile(graph, { target: GPU_TARGET, dims: { B: 65535 } }).kernels).toHaveLength(1);
  });

  test("the batched-matmul batch past 65,535 is folded, not refused, on both GEMM writers", () => {
    const g = new GraphBuilder();
    const a = g.input("a", "f32", [70000, 2, 3]);
    const b = g.input("b", "f32", [70000, 3, 2]);
    const graph = g.build({ y: a.matmul(b) });
    for (const target of [GPU_TARGET, CPU_TARGET]) {
      const p = compile(graph, { target });
      const c = dispatchCounts(p.kernels[0].dispatch, {}, 65535);
      expect(c, target.gemm).toEqual([1, 65535, 2]);
      expect(() => checkLimits(p, {}, DEFAULT_LIMITS)).not.toThrow();
    }
  });

  test("open dims are refused by the runtime with the same message, before memory is allocated", async () => {
    const exe = await Executable.load(compile(bigConv("B")));
    try {
      // Refused before any memory is planned or allocated for B = 64.
      const x = { shape: [64, 224, 224, 3], data: new Float32Array(64 * 224 * 224 * 3) };
      const f = { shape: [3, 3, 3, 64], data: new Float32Array(3 * 3 * 3 * 64) };
      await expect(exe.run({ x, f })).rejects.toThrow(
        /^relu %3 @ limits\.test\.ts:\d+: output f32\[B,224,224,64\] with \{"B":64\} of k0 = fused\[conv2d, relu\] is 784 MiB, over the device's 128 MiB storage binding limit$/,
      );
    } finally {
      exe.dispose();
    }
  });

  test("arenas are sized to the device's buffer limit, not WebGPU's default 256 MiB", async () => {
    // x and three outputs of 66 MiB each, all live at the end: 264 MiB (inPlace: false, so the
    // last kernel reading x does not store its output over it).
    const n = 66 * 2 ** 18;
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [n]);
    const graph = g.build({ e: x.exp(), d: x.mul(2), s: x.add(1) });
    const at = (limits = DEFAULT_LIMITS) => compile(graph, { limits, inPlace: false }).memory!;
    expect(at().arenas.length).toBe(2);
    const big = { ...DEFAULT_LIMITS, maxBufferSize: 2 ** 32 - 1 };
    expect(at(big).arenas).toEqual([4 * 66 * 2 ** 20]);

    // On Dawn, with the device's own limits (lavapipe: 4 GiB buffers).
    const exe = await Executable.fromGraph(graph, { inPlace: false });
    try {
      const data = Float32Array.from({ length: n }, (_, i) => (i % 1000) / 1000);
      const out = await exe.run({ x: { shape: [n], data } });
      if (exe.gpu.limits.maxBufferSize >= 4 * 66 * 2 ** 20) expect(exe.memoryPlan!.arenas.length).toBe(1);
      for (const i of [0, 1, 999, n - 1]) {
        expect(out.e.data[i]).toBeCloseTo(Math.exp(data[i]), 5);
        expect(out.d.data[i]).toBe(data[i] * 2);
        expect(out.s.data[i]).toBeCloseTo(data[i] + 1, 6);
      }
    } finally {
      exe.dispose();
    }
  });
});
