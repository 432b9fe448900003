/** The runtime: buffers are freed, inputs are validated with errors that name them, GPU errors
 *  name the kernel, edge-case programs (outputs that are inputs or constants, empty tensors, more
 *  workgroups than one dispatch axis allows) run, and the device can be released and re-acquired. */
import { describe, expect, test } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import type { Kernel, Program } from "../../compiler/program.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import { grad } from "../../src/api/grad.ts";
import { GpuError, KilnError } from "../../src/ir/errors.ts";
import type { Graph } from "../../src/ir/types.ts";
import { liveBuffers } from "../../runtime/buffers.ts";
import { acquireGpu, releaseGpu } from "../../runtime/device.ts";
import { Executable } from "../../runtime/execute.ts";
import { expectMatchesReference, runGpu, useGpu } from "../helpers/gpu.ts";

useGpu();

const range = (n: number, f = (i: number) => i) => Array.from({ length: n }, (_, i) => f(i));

/** y = tanh(x·w + 1) with constant data w, a symbolic batch and a second output: every kind of
 *  buffer (input, constant, temporary, uniform, staging). */
function mlpish(): Graph {
  const g = new GraphBuilder();
  const x = g.input("x", "f32", ["B", 3]);
  const w = g.constant([0.5, -1, 2], "f32", [3]);
  const h = x.mul(w);
  return g.build({ y: h.add(1).tanh(), h });
}

const batch = (b: number) => ({ x: { shape: [b, 3], data: range(b * 3, (i) => i / 10) } });

describe("GPU buffers", () => {
  test("50 runs with the same and with changing batch sizes, then dispose: none left", async () => {
    const start = liveBuffers();
    const exe = await Executable.load(compile(mlpish()));
    await exe.run(batch(4));
    const perArena = liveBuffers();
    for (let i = 0; i < 50; i++) await exe.run(batch(4));
    expect(liveBuffers()).toBe(perArena);
    for (let i = 0; i < 50; i++) {
      const { y } = await exe.run(batch(1 + (i % 7)));
      expect(y.shape).toEqual([1 + (i % 7), 3]);
      // A new batch size replaces the arena; it never adds to it.
      expect(liveBuffers()).toBe(perArena);
    }
    await expect(exe.run({ x: { shape: [2, 3], data: [1] } })).rejects.toThrow(KilnError);
    exe.dispose();
    expect(liveBuffers()).toBe(start);
    await expect(exe.run(batch(1))).rejects.toThrow("run on a disposed Executable");
  });
});

describe("input validation", () => {
  const g = new GraphBuilder();
  const x = g.input("x", "f32", ["B", 3]);
  const n = g.input("n", "i32", ["B", 1]);
  const graph = g.build({ y: x.add(n.cast("f32")) });
  const ok = { x: { shape: [2, 3], data: range(6) }, n: { shape: [2, 1], data: [1, 2] } };
  let exe: Executable;

  test.each([
    ["a missing input", { x: ok.x }, 'input "n" [B,1] was not given (inputs: x)'],
    ["an unknown input", { ...ok, z: ok.n }, 'unknown input "z" (the graph\'s inputs: x, n)'],
    ["a wrong shape", { ...ok, x: { shape: [2, 4], data: range(8) } }, 'input "x": shape [2,4] does not match [B,3] with {"B":2}'],
    ["a wrong rank", { ...ok, x: { shape: [6], data: range(6) } }, 'input "x": shape [6] does not match [B,3]'],
    [
      "inconsistent symbolic dims",
      { ...ok, n: { shape: [5, 1], data: range(5) } },
      'input "n": shape [5,1] does not match [B,1] with {"B":2}',
    ],
    ["a wrong element count", { ...ok, x: { shape: [2, 3], data: range(5) } }, 'input "x": 5 values for shape [2,3] (6 elements)'],
    ["a non-integer for an i32", { ...ok, n: { shape: [2, 1], data: [1, 2.5] } }, 'input "n" i32[2,1]: element 1 is 2.5, not an i32'],
    ["an i32 out of range", { ...ok, n: { shape: [2, 1], data: [2 ** 31, 0] } }, 'input "n" i32[2,1]: element 0 is 2147483648, not an i32'],
  ])("%s", async (_what, inputs, message) => {
    exe ??= await Executable.load(compile(graph));
    const err = await exe.run(inputs).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KilnError);
    expect((err as Error).message).toBe(message);
    // A rejected run leaves the executable usable.
    expect(Array.from((await exe.run(ok)).y.data)).toEqual([1, 2, 3, 5, 6, 7]);
  });
});

describe("GPU errors name the kernel", () => {
  const g = new GraphBuilder();
  const x = g.input("x", "f32", [4]);
  const program = compile(g.build({ y: x.neg() }));
  const [k] = program.kernels;
  const withKernel = (patch: Partial<Kernel>): Program => ({ ...program, kernels: [{ ...k, ...patch }] });

  test("WGSL that does not compile fails the load", async () => {
    const broken = withKernel({ wgsl: k.wgsl.replace("= (-v0[i0]);", "= 1u;") });
    const err = await Executable.load(broken).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GpuError);
    expect((err as Error).message).toMatch(/^kernel k0 \(k0 = neg -> %1, f32\[4\] @ execute\.test\.ts:\d+\): /);
    expect((err as Error).message).toContain("WGSL does not compile");
    expect((err as Error).message).toContain("cannot assign 'u32' to 'f32'");
  });

  test("a validation error at run time is a GpuError naming the kernel and its node", async () => {
    // One buffer bound both read-only and writable in one dispatch: valid to compile and to bind,
    // rejected when the pass is encoded.
    const aliased = withKernel({
      wgsl: [
        "// k0 = aliased",
        "@group(0) @binding(0) var<storage, read> a: array<f32>;",
        "@group(0) @binding(1) var<storage, read_write> b: array<f32>;",
        "@compute @workgroup_size(64)",
        "fn main() { b[0] = a[0]; }",
      ].join("\n"),
      bindings: [
        { value: k.output, access: "read" },
        { value: k.output, access: "read_write" },
      ],
    });
    const exe = await Executable.load(aliased);
    try {
      const err = await exe.run({ x: { shape: [4], data: [1, 2, 3, 4] } }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(GpuError);
      expect((err as Error).message).toMatch(/^kernel k0 \(neg %1 @ execute\.test\.ts:\d+\): validation: .*writable usage/);
    } finally {
      exe.dispose();
    }
  });
});

describe("edge cases", () => {
  test("outputs that are inputs, shared values and scalar constants", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "i32", [2, 2]);
    const graph = g.build({ x, again: x, c: g.constant(3), neg: x.neg() });
    const r = await runGpu(graph, { x: { shape: [2, 2], data: [1, -2, 3, -4] } });
    expect(r.x).toEqual({ dtype: "i32", shape: [2, 2], data: new Int32Array([1, -2, 3, -4]) });
    expect(r.again).toEqual(r.x);
    expect(r.c).toEqual({ dtype: "f32", shape: [], data: new Float32Array([3]) });
    expect(Array.from(r.neg.data)).toEqual([-1, 2, -3, 4]);
  });

  test("zero-size tensors run and come back empty", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 3]);
    const e = g.input("e", "f32", [0, 4]);
    const graph = g.build({ y: x.exp(), z: e.add(1), x });
    const exe = await Executable.load(compile(graph));
    try {
      const r = await exe.run({ x: { shape: [0, 3], data: [] }, e: { shape: [0, 4], data: [] } });
      expect(r.y).toEqual({ dtype: "f32", shape: [0, 3], data: new Float32Array(0) });
      expect(r.z.shape).toEqual([0, 4]);
      expect(r.z.data.length).toBe(0);
      expect(r.x.data.length).toBe(0);
      // The same executable then runs a non-empty batch.
      expect(Array.from((await exe.run({ x: { shape: [1, 3], data: [0, 0, 0] }, e: { shape: [0, 4], data: [] } })).y.data)).toEqual([
        1, 1, 1,
      ]);
    } finally {
      exe.dispose();
    }
    await expectMatchesReference(graph, { x: { shape: [0, 3], data: [] }, e: { shape: [0, 4], data: [] } });
  });

  test("5·10^6 elements: more workgroups than one dispatch axis allows", async () => {
    const n = 5_000_000; // 78,125 workgroups of 64 > 65,535: folded over x and y
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["N"]);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = i % 1024;
    const { y } = await runGpu(g.build({ y: x.mul(2).add(1) }), { x: { shape: [n], data } });
    let bad = -1;
    for (let i = 0; i < n && bad < 0; i++) if (y.data[i] !== 2 * (i % 1024) + 1) bad = i;
    expect(bad).toBe(-1);
  });
});

describe("releasing the GPU", () => {
  test("a new load after releaseGpu acquires a fresh device; an old executable says why it cannot run", async () => {
    const graph = mlpish();
    const old = await Executable.load(compile(graph));
    const before = await old.run(batch(3));
    await releaseGpu();
    await expect(old.run(batch(3))).rejects.toThrow(/the GPU was released \(releaseGpu\); load the program again/);
    old.dispose();
    const after = await runGpu(graph, batch(3));
    expect(after).toEqual(before);
  });
});

describe("resident state", () => {
  /** One SGD step on f(w) = Σ (x·w − t)² / B: w ← w − 0.1 · ∇f(w), and a step counter. */
  function sgdStep(): Graph {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 3]);
    const t = g.input("t", "f32", ["B", 1]);
    const w = g.input("w", "f32", [3, 1]);
    const step = g.input("step", "f32", []);
    const r = x.matmul(w).sub(t);
    const loss = r.mul(r).mean();
    const [dw] = grad(loss, [w]);
    return g.build({ loss, w_next: w.sub(dw.mul(0.1)), step_next: step.add(1), w });
  }

  test("the state stays on the GPU and takes its update after every run, in one submission", async () => {
    const start = liveBuffers();
    const exe = await Executable.load(compile(sgdStep(), { state: { w: "w_next", step: "step_next" } }));
    await expect(exe.run({ x: { shape: [2, 3], data: range(6) }, t: { shape: [2, 1], data: [1, 2] } })).rejects.toThrow(
      'resident input "w" f32[3,1] has no value yet: write it, or pass it to run',
    );
    await exe.write("w", { shape: [3, 1], data: [0, 0, 0] });
    await exe.write("step", { shape: [], data: [0] });
    const x = [1, 0, 0, 0, 1, 0];
    const t = [1, 2];
    let w = [0, 0, 0];
    for (let i = 0; i < 5; i++) {
      const out = await exe.run({ x: { shape: [2, 3], data: x }, t: { shape: [2, 1], data: t } });
      // Outputs are this run's values: the input w as it was, not as it becomes.
      expect(Object.keys(out).sort()).toEqual(["loss", "w"]);
      expect(Array.from(out.w.data)).toEqual(w.map(Math.fround));
      const r = [w[0] - t[0], w[1] - t[1]];
      expect(out.loss.data[0]).toBeCloseTo((r[0] ** 2 + r[1] ** 2) / 2, 6);
      w = [w[0] - 0.1 * r[0], w[1] - 0.1 * r[1], w[2]];
    }
    Array.from((await exe.read("w")).data).forEach((v, i) => expect(v).toBeCloseTo(w[i], 6));
    expect(Array.from((await exe.read("step")).data)).toEqual([5]);
    // Passing a resident input to run sets it, as write would.
    await exe.run({ x: { shape: [2, 3], data: x }, t: { shape: [2, 1], data: t }, step: { shape: [], data: [10] } }, ["loss"]);
    expect(Array.from((await exe.read("step")).data)).toEqual([11]);
    await expect(exe.write("x", { shape: [2, 3], data: x })).rejects.toThrow('write "x": not a resident input (state: w, step)');
    await expect(exe.write("w", { shape: [3], data: [1, 2, 3] })).rejects.toThrow('write "w": shape [3] does not match f32[3,1]');
    exe.dispose();
    expect(liveBuffers()).toBe(start);
    await expect(exe.read("w")).rejects.toThrow("read on a disposed Executable");
  });

  test("a resident input without an update keeps what was written: weights for inference", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 2]);
    const w = g.input("w", "f32", [2, 2]);
    const exe = await Executable.load(compile(g.build({ y: x.matmul(w) }), { state: { w: null } }));
    await expect(exe.run({ x: { shape: [1, 2], data: [1, 2] } })).rejects.toThrow('resident input "w" f32[2,2] has no value yet');
    await exe.write("w", { shape: [2, 2], data: [1, 2, 3, 4] });
    for (const b of [1, 3]) {
      const { y } = await exe.run({ x: { shape: [b, 2], data: range(2 * b) } });
      expect(Array.from(y.data)).toEqual(range(b).flatMap((i) => [2 * i + 3 * (2 * i + 1), 2 * 2 * i + 4 * (2 * i + 1)]));
    }
    expect(Array.from((await exe.read("w")).data)).toEqual([1, 2, 3, 4]);
    exe.dispose();
  });

  test("state that cannot be resident is refused when compiling", () => {
    const g = sgdStep();
    expect(() => compile(g, { state: { v: "w_next" } })).toThrow('state: "v" is not an input of the graph (inputs: x, t, w, step)');
    expect(() => compile(g, { state: { w: "nope" } })).toThrow('state: "nope" (the update of "w") is not an output of the graph');
    expect(() => compile(g, { state: { w: "loss" } })).toThrow('state: "loss" f32[] cannot replace input "w" f32[3,1]');
    expect(() => compile(g, { state: { x: "w" } })).toThrow('state: input "x" f32[B,3] must have a static shape to stay resident');
  });
});

describe("Executable.fromGraph", () => {
  test("compiles for the device's target and limits, then loads", async () => {
    const g = new GraphBuilder();
    const y = g.input("a", "f32", ["B", 3]).matmul(g.input("b", "f32", [3, 2]));
    const graph = g.build({ y });
    const exe = await Executable.fromGraph(graph);
    const gpu = await acquireGpu();
    expect(exe.program.kernels.map((k) => k.wgsl)).toEqual(
      compile(graph, { target: gpu.target, maxStorageBuffers: gpu.limits.maxStorageBuffersPerShaderStage }).kernels.map((k) => k.wgsl),
    );
    const out = await exe.run({ a: { shape: [2, 3], data: [1, 2, 3, 4, 5, 6] }, b: { shape: [3, 2], data: [1, 0, 0, 1, 1, 1] } });
    expect(Array.from(out.y.data)).toEqual([4, 5, 10, 11]);
    exe.dispose();
  });
});

describe("timing kernels (test/bench/profile.ts)", () => {
  test("every kernel alone and all in one pass, each round; the next run still computes the step", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 3]);
    const w = g.input("w", "f32", [3, 2]);
    const y = x.matmul(w).relu();
    const graph = g.build({ s: y.sum(), w_next: w.mul(0.5) });
    const exe = await Executable.load(compile(graph, { state: { w: "w_next" } }));
    await exe.write("w", { shape: [3, 2], data: [1, -1, 2, 0, 0, 1] });
    const input = { x: { shape: [2, 3], data: range(6) } };
    const { kernels, all } = await exe.timeKernels(input, 3);
    expect(kernels).toHaveLength(exe.program.kernels.length);
    for (const t of [...kernels, all]) {
      expect(t).toHaveLength(3);
      for (const ms of t) expect(ms).toBeGreaterThanOrEqual(0);
    }
    // Timing ran the update kernels over w; written again, a run is the step as before.
    await exe.write("w", { shape: [3, 2], data: [1, -1, 2, 0, 0, 1] });
    const out = await exe.run(input, ["s"]);
    // x·w = [[2, 2], [11, 2]] → relu → sum 17
    expect(Array.from(out.s.data)).toEqual([17]);
    expect(Array.from((await exe.read("w")).data)).toEqual([0.5, -0.5, 1, 0, 0, 0.5]);
    exe.dispose();
  });
});
