/** The executor core's guarantees, seen through Executable and a bundle: overlapping calls are
 *  queued — each result equals the same call made alone, and state updates happen in call order —
 *  writes need the exact length, use after dispose is a clear error (calls already queued are
 *  refused, their buffers freed once they settle), and the pipeline cache is held by the
 *  executables that use it and bounded when they are gone. */
import { describe, expect, test } from "vitest";
import { buildBundle } from "../../cli/build.ts";
import { compile } from "../../compiler/pipeline.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import { grad } from "../../src/api/grad.ts";
import { KilnError } from "../../src/ir/errors.ts";
import type { Graph } from "../../src/ir/types.ts";
import { integrityFiles, integrityInput, type Manifest } from "../../formats/bundle-manifest.ts";
import { liveBuffers } from "../../runtime/buffers.ts";
import { Bundle } from "../../runtime/bundle-runtime.ts";
import { acquireGpu, type Gpu } from "../../runtime/device.ts";
import { Executable } from "../../runtime/execute.ts";
import { cachedPipelines, MAX_IDLE, release } from "../../runtime/pipelines.ts";
import { createHash } from "node:crypto";
import { useGpu } from "../helpers/gpu.ts";

useGpu();

const data = (n: number, s: number) => Array.from({ length: n }, (_, i) => Math.sin(i * 1.3 + s));

/** y = tanh(x·w) + x·w over a symbolic batch, w resident; and an SGD step updating w. */
function model(): Graph {
  const g = new GraphBuilder();
  const x = g.input("x", "f32", ["B", 4]);
  const w = g.input("w", "f32", [4, 4]);
  const h = x.matmul(w);
  return g.build({ y: h.tanh().add(h) });
}
function step(): Graph {
  const g = new GraphBuilder();
  const x = g.input("x", "f32", ["B", 4]);
  const w = g.input("w", "f32", [4, 1]);
  const r = x.matmul(w).sub(1);
  const loss = r.mul(r).mean();
  const [dw] = grad(loss, [w]);
  return g.build({ loss, w_next: w.sub(dw.mul(0.1)) });
}

describe("overlapping calls are queued", () => {
  test("24 runs of one Executable started at once, of changing batch sizes: each equals the same run made alone", async () => {
    const exe = await Executable.load(compile(model(), { state: { w: null } }));
    try {
      await exe.write("w", { shape: [4, 4], data: data(16, 0) });
      const calls = Array.from({ length: 24 }, (_, i) => ({ x: { shape: [1 + (i % 5), 4], data: data(4 * (1 + (i % 5)), i) } }));
      await exe.run(calls[4]); // memory for B = 5: every call below shares its buffers
      const buffers = liveBuffers();
      const together = await Promise.all(calls.map((c) => exe.run(c)));
      expect(liveBuffers()).toBe(buffers);
      for (const [i, c] of calls.entries()) expect(together[i], `run ${i}`).toEqual(await exe.run(c));
    } finally {
      exe.dispose();
    }
  });

  test("8 training steps started at once update the state in call order, as 8 awaited steps do", async () => {
    const program = compile(step(), { state: { w: "w_next" } });
    const batches = Array.from({ length: 8 }, (_, i) => ({ x: { shape: [3, 4], data: data(12, i) } }));
    const run = async (together: boolean) => {
      const exe = await Executable.load(program);
      try {
        await exe.write("w", { shape: [4, 1], data: [0, 0, 0, 0] });
        await exe.run(batches[0]); // memory allocated: the steps below share it
        await exe.write("w", { shape: [4, 1], data: [0, 0, 0, 0] });
        const losses = together ? await Promise.all(batches.map((b) => exe.run(b))) : [];
        if (!together) for (const b of batches) losses.push(await exe.run(b));
        return { losses: losses.map((l) => l.loss.data[0]), w: Array.from((await exe.read("w")).data) };
      } finally {
        exe.dispose();
      }
    };
    const [a, b] = [await run(true), await run(false)];
    expect(a).toEqual(b);
    expect(new Set(a.losses).size).toBe(8); // every step saw another w
  });

  test("16 calls of one bundle started at once: each equals the same call made alone", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 4]);
    const w = g.input("w", "f32", [4, 3]);
    const files = buildBundle(
      { graph: g.build({ out: x.matmul(w).relu() }), state: { w: null }, weights: { w: Float32Array.from(data(12, 3)) }, dims: { B: 4 } },
      { name: "tiny" },
    );
    const bytes = new Map([...files].map(([k, v]) => [k, typeof v === "string" ? new TextEncoder().encode(v) : v]));
    const m: Manifest = JSON.parse(files.get("manifest.json") as string);
    const integrity = createHash("sha256")
      .update(integrityInput(integrityFiles(m).map((f) => [f, bytes.get(f)!] as const)))
      .digest("hex");
    const source = { bytes: async (n: string) => bytes.get(n)!, text: async (n: string) => files.get(n) as string };
    const bundle = await Bundle.open((await acquireGpu()).device, source, { integrity });
    try {
      const calls = Array.from({ length: 16 }, (_, i) => ({ x: Float32Array.from(data(4 * (1 + (i % 4)), i)) }));
      const together = await Promise.all(calls.map((c) => bundle.call(c)));
      for (const [i, c] of calls.entries()) expect(together[i], `call ${i}`).toEqual(await bundle.call(c));
    } finally {
      bundle.dispose();
    }
    await expect(bundle.call({ x: new Float32Array(4) })).rejects.toThrow("kiln bundle: the model was disposed");
  });
});

describe("lifecycle", () => {
  test("write needs exactly the state's element count", async () => {
    const exe = await Executable.load(compile(model(), { state: { w: null } }));
    try {
      await expect(exe.write("w", { shape: [4, 4], data: data(15, 0) })).rejects.toThrow('write "w": 15 values for f32[4,4] (16 elements)');
      await expect(exe.write("w", { shape: [4, 4], data: data(17, 0) })).rejects.toThrow('write "w": 17 values for f32[4,4] (16 elements)');
      await expect(exe.run({ x: { shape: [1, 4], data: data(4, 0) } })).rejects.toThrow('resident input "w" f32[4,4] has no value yet');
    } finally {
      exe.dispose();
    }
  });

  test("calls queued when dispose comes are refused, and every buffer is freed once they settle", async () => {
    const start = liveBuffers();
    const exe = await Executable.load(compile(model(), { state: { w: null } }));
    await exe.write("w", { shape: [4, 4], data: data(16, 0) });
    await exe.run({ x: { shape: [2, 4], data: data(8, 0) } });
    const queued = [1, 2, 3].map((b) => exe.run({ x: { shape: [b, 4], data: data(4 * b, b) } }));
    exe.dispose();
    for (const r of await Promise.allSettled(queued)) {
      expect(r.status).toBe("rejected");
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(KilnError);
      expect(String((r as PromiseRejectedResult).reason)).toContain("run on a disposed Executable");
    }
    expect(liveBuffers()).toBe(start);
    await expect(exe.write("w", { shape: [4, 4], data: data(16, 0) })).rejects.toThrow("write on a disposed Executable");
    await expect(exe.read("w")).rejects.toThrow("read on a disposed Executable");
    exe.dispose(); // twice: nothing more to free
    expect(liveBuffers()).toBe(start);
  });
});

describe("the pipeline cache", () => {
  test("executables hold their pipelines until disposed; 12 models of distinct widths leave none held", async () => {
    const gpu = await acquireGpu();
    const before = cachedPipelines(gpu).held;
    const exes = [];
    for (let n = 1; n <= 12; n++) {
      const g = new GraphBuilder();
      const x = g.input("x", "f32", ["B", n]);
      exes.push(await Executable.load(compile(g.build({ y: x.mul(2).exp() }))));
    }
    expect(cachedPipelines(gpu).held).toBeGreaterThanOrEqual(before + 12);
    for (const e of exes) e.dispose();
    expect(cachedPipelines(gpu).held).toBe(before);
  });

  test(`pipelines nobody holds: the ${MAX_IDLE} used last are kept, older ones dropped`, () => {
    const pipelines = new Map<string, Promise<GPUComputePipeline>>();
    const gpu = { pipelines } as unknown as Gpu;
    for (let i = 0; i < MAX_IDLE + 40; i++) pipelines.set(`code ${i}`, Promise.resolve({} as GPUComputePipeline));
    release(gpu, []);
    expect(pipelines.size).toBe(MAX_IDLE);
    expect(pipelines.has("code 39")).toBe(false);
    expect(pipelines.has("code 40")).toBe(true);
  });
});
