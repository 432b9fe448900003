/** The JIT helper (runtime/jit-warm.ts): a second device dispatches a program's new kernels, last
 *  first, while the first run compiles them; results are the run's alone. */
import { expect, test } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import { interpret } from "../../src/interpret.ts";
import type { Graph } from "../../src/ir/types.ts";
import { acquireGpu } from "../../runtime/device.ts";
import { Executable } from "../../runtime/execute.ts";
import { MIN_KERNELS, warmJit } from "../../runtime/jit-warm.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();
// The suite turns the helper off (vitest.config.ts); these tests are about it.
delete process.env.KILN_JIT_HELPER;

/** A few distinct kernels (a GEMM, a reduction, elementwise), a symbolic batch (dims uniforms);
 *  `salt` makes the kernels new to the process. */
function graph(salt: number): Graph {
  const g = new GraphBuilder();
  const x = g.input("x", "f32", ["B", 6]);
  const w = g.input("w", "f32", [6, 5]);
  const h = x.matmul(w).add(salt).tanh();
  return g.build({ y: h.mul(h).sum([1]), z: h.exp(), m: h.abs().max([0]) });
}

const inputs = (b: number) => ({
  x: { shape: [b, 6], data: Array.from({ length: b * 6 }, (_, i) => Math.sin(i)) },
  w: { shape: [6, 5], data: Array.from({ length: 30 }, (_, i) => Math.cos(i) / 3) },
});

test("the first run of new kernels is helped where the driver shares its JIT cache, and computes the same", async () => {
  const gpu = await acquireGpu();
  const g = graph(0.25);
  const exe = await Executable.load(compile(g, { target: gpu.target }));
  const out = await exe.run(inputs(3));
  const ref = interpret(g, inputs(3));
  for (const name of ["y", "z", "m"]) out[name].data.forEach((v, i) => expect(v).toBeCloseTo(ref[name].data[i], 5));
  if (gpu.sharedJitCache) {
    const r = await exe.warmed!;
    expect(r.error).toBeUndefined();
    expect(r.of).toBe(new Set(exe.program.kernels.map((k) => k.key)).size);
    expect(r.compiled).toBeLessThanOrEqual(r.of);
  } else expect(exe.warmed).toBeUndefined();
  // Only the first run is helped.
  const again = exe.warmed;
  await exe.run(inputs(2));
  expect(exe.warmed).toBe(again);
  exe.dispose();
});

test("left to finish, the helper dispatches every distinct kernel once; never for fewer than MIN_KERNELS or when turned off", async () => {
  const gpu = await acquireGpu();
  const { kernels } = compile(graph(0.5), { target: gpu.target });
  expect(new Set(kernels.map((k) => k.key)).size).toBeGreaterThanOrEqual(MIN_KERNELS);
  const w = warmJit(gpu, [...kernels, ...kernels]);
  if (!gpu.sharedJitCache) return expect(w).toBeUndefined();
  expect(await w!.done).toEqual({ compiled: new Set(kernels.map((k) => k.key)).size, of: new Set(kernels.map((k) => k.key)).size });
  expect(warmJit(gpu, kernels.slice(0, MIN_KERNELS - 1))).toBeUndefined();
  process.env.KILN_JIT_HELPER = "0";
  try {
    expect(warmJit(gpu, kernels)).toBeUndefined();
  } finally {
    delete process.env.KILN_JIT_HELPER;
  }
});
