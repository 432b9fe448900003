/** The planned arena on Dawn: results with planning on equal those with it off (bit for bit) and
 *  the float64 reference; a kernel reading and writing one arena buffer validates; values reused
 *  across runs and batch sizes never leak stale bytes into results; fewer buffers, none leaked;
 *  memory planned once at declared bounds (or grown to the largest batch) serves every batch. */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { memoryReport } from "../../compiler/plan-memory.ts";
import { compile, type CompileOptions } from "../../compiler/pipeline.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import { grad } from "../../src/api/grad.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import { printGraph } from "../../src/ir/print.ts";
import { KilnError } from "../../src/ir/errors.ts";
import type { Graph } from "../../src/ir/types.ts";
import { liveBuffers } from "../../runtime/buffers.ts";
import { Executable, type OutputTensor } from "../../runtime/execute.ts";
import { mismatch, useGpu } from "../helpers/gpu.ts";
import { buildRecipe, recipeArb } from "../helpers/random-graph.ts";

useGpu();

type Outputs = Record<string, OutputTensor>;

/** Run `graph` on each input set in turn with one executable; the results of every run. */
async function runAll(graph: Graph, runs: readonly Readonly<Record<string, HostTensor>>[], opts: CompileOptions): Promise<Outputs[]> {
  const exe = await Executable.load(compile(graph, opts));
  try {
    const out: Outputs[] = [];
    for (const inputs of runs) out.push(await exe.run(inputs));
    return out;
  } finally {
    exe.dispose();
  }
}

/** Bit for bit (NaN equals NaN), naming the first difference. */
function expectSame(a: Outputs, b: Outputs, graph: Graph): void {
  for (const [name, t] of Object.entries(b)) {
    const u = a[name];
    expect(u.shape).toEqual(t.shape);
    for (let i = 0; i < t.data.length; i++) {
      if (!Object.is(u.data[i], t.data[i]) && !(Number.isNaN(u.data[i]) && Number.isNaN(t.data[i]))) {
        throw new Error(`${name}[${i}]: planned ${u.data[i]}, unplanned ${t.data[i]}\n${printGraph(graph)}`);
      }
    }
  }
}

const vals = (n: number, k: number) => Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i * 1.7 + k) * 2));

describe("planning on == planning off == the float64 reference", () => {
  test("24 random graphs, each run at two batch sizes and again at the first", async () => {
    await fc.assert(
      fc.asyncProperty(recipeArb, fc.integer({ min: 1, max: 40 }), async (r, batch) => {
        const graph = buildRecipe(r);
        const n = r.shape.reduce((a, d) => a * d, 1);
        const at = (b: number) => ({ x: { shape: [b, ...r.shape], data: vals(b * n, b) }, y: { shape: r.shape, data: vals(n, 1) } });
        // The third run reuses an arena the second one filled: stale bytes must not leak in.
        const runs = [at(batch), at(batch + 3), at(batch)];
        const on = await runAll(graph, runs, { plan: true });
        const off = await runAll(graph, runs, { plan: false });
        runs.forEach((inputs, i) => {
          expectSame(on[i], off[i], graph);
          const m = mismatch(graph, on[i], interpret(graph, inputs), { atol: 1e-5, rtol: 1e-4 });
          if (m) throw new Error(m);
        });
      }),
      { seed: 17, numRuns: 24 },
    );
  });

  test("an MLP training step with resident weights: five steps, planned and unplanned", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 6]);
    const t = g.input("t", "f32", ["B", 3]);
    const w1 = g.input("w1", "f32", [6, 8]);
    const w2 = g.input("w2", "f32", [8, 3]);
    const r = x.matmul(w1).tanh().matmul(w2).sub(t);
    const loss = r.mul(r).mean();
    const [d1, d2] = grad(loss, [w1, w2]);
    const graph = g.build({ loss, w1_next: w1.sub(d1.mul(0.5)), w2_next: w2.sub(d2.mul(0.5)) });
    const state = { w1: "w1_next", w2: "w2_next" };
    const trace = async (plan: boolean) => {
      const exe = await Executable.load(compile(graph, { state, plan }));
      try {
        await exe.write("w1", { shape: [6, 8], data: vals(48, 3).map((v) => v / 4) });
        await exe.write("w2", { shape: [8, 3], data: vals(24, 4).map((v) => v / 4) });
        const losses: number[] = [];
        for (let i = 0; i < 5; i++)
          losses.push(
            (await exe.run({ x: { shape: [4, 6], data: vals(24, i) }, t: { shape: [4, 3], data: vals(12, i + 9) } })).loss.data[0],
          );
        if (plan) expect(exe.memoryPlan!.arenas).toHaveLength(1);
        return { losses, w1: Array.from((await exe.read("w1")).data) };
      } finally {
        exe.dispose();
      }
    };
    const on = await trace(true);
    expect(on).toEqual(await trace(false));
    expect(on.losses[4]).toBeLessThan(on.losses[0]);
  });
});

describe("the arena", () => {
  /** x → 8 unary ops, a kernel each: every kernel reads and writes the one arena buffer. */
  function chain(): Graph {
    const g = new GraphBuilder();
    let v = g.input("x", "f32", [5, 100]); // static: no uniform buffers to count
    for (let i = 0; i < 8; i++) v = i % 2 ? v.neg() : v.sin();
    return g.build({ y: v });
  }

  test("kernels that read and write one buffer validate, with fewer buffers and none leaked", async () => {
    const start = liveBuffers();
    const graph = chain();
    const inputs = { x: { shape: [5, 100], data: vals(500, 0) } };
    // Apart, each kernel reads one range and writes another; in place, it reads and writes one.
    for (const [inPlace, values] of [
      [false, 9],
      [true, 1],
    ] as const) {
      const exe = await Executable.load(compile(graph, { fuse: false, inPlace }));
      try {
        const out = await exe.run(inputs); // a validation error would throw a GpuError here
        expect(mismatch(graph, out, interpret(graph, inputs), { atol: 1e-6, rtol: 1e-5 })).toBeUndefined();
        const plan = exe.memoryPlan!;
        expect(plan.arenas).toEqual([Math.min(values, 2) * 2048]);
        expect(plan.naiveBytes).toBe(values * 2048);
        expect(liveBuffers() - start).toBe(2); // the arena and the output's staging buffer
      } finally {
        exe.dispose();
      }
      expect(liveBuffers()).toBe(start);
      const off = await Executable.load(compile(graph, { fuse: false, plan: false, inPlace }));
      await off.run(inputs);
      expect(off.memoryPlan).toBeUndefined();
      expect(liveBuffers() - start).toBe(values + 1); // a buffer per value (in place: x's), and the staging buffer
      off.dispose();
      expect(liveBuffers()).toBe(start);
    }
  });

  test("a larger batch grows the memory, a smaller one reuses it; zero-size batches and values read twice by a kernel run", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 4]);
    const sq = x.mul(x);
    const graph = g.build({ sq, gram: x.matmul(x.transpose()).tanh(), s: sq.sum([1]) });
    const exe = await Executable.load(compile(graph));
    try {
      const sizes: number[] = [];
      const allocations: number[] = [];
      for (const b of [3, 0, 70, 0, 3]) {
        const inputs = { x: { shape: [b, 4], data: vals(4 * b, b) } };
        const out = await exe.run(inputs);
        expect(mismatch(graph, out, interpret(graph, inputs), { atol: 1e-5, rtol: 1e-5 })).toBeUndefined();
        sizes.push(exe.memoryPlan!.arenaBytes);
        allocations.push(exe.allocations);
      }
      expect(sizes[2]).toBeGreaterThan(sizes[0]);
      expect(sizes.slice(3)).toEqual([sizes[2], sizes[2]]);
      expect(allocations).toEqual([1, 1, 2, 2, 2]);
    } finally {
      exe.dispose();
    }
  });
});

describe("memory for a range of batch sizes", () => {
  /** A two-layer MLP's loss and weight gradients over a batch of B: uniforms, reductions over
   *  B, GEMMs, outputs of fixed and of batch-sized shapes. */
  function mlpGrad(): Graph {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 6]);
    const t = g.input("t", "f32", ["B", 3]);
    const w1 = g.input("w1", "f32", [6, 8]);
    const w2 = g.input("w2", "f32", [8, 3]);
    const h = x.matmul(w1).tanh();
    const r = h.matmul(w2).sub(t);
    const loss = r.mul(r).mean();
    const [d1, d2] = grad(loss, [w1, w2]);
    return g.build({ loss, d1, d2, h });
  }
  const at = (b: number) => ({
    x: { shape: [b, 6], data: vals(6 * b, b) },
    t: { shape: [b, 3], data: vals(3 * b, b + 1) },
    w1: { shape: [6, 8], data: vals(48, 3).map((v) => v / 4) },
    w2: { shape: [8, 3], data: vals(24, 4).map((v) => v / 4) },
  });

  /** Run the batches in turn; after each: results against float64, allocations, live buffers. */
  async function alternate(opts: CompileOptions, batches: readonly number[]) {
    const graph = mlpGrad();
    const exe = await Executable.load(compile(graph, opts));
    const trace: { allocations: number; buffers: number; plan: unknown }[] = [];
    try {
      for (const b of batches) {
        const out = await exe.run(at(b));
        expect(out.h.shape).toEqual([b, 8]);
        const m = mismatch(graph, out, interpret(graph, at(b)), { atol: 1e-5, rtol: 1e-4 });
        if (m) throw new Error(`batch ${b}: ${m}`);
        trace.push({ allocations: exe.allocations, buffers: liveBuffers(), plan: exe.memoryPlan });
      }
      return { exe, trace };
    } catch (e) {
      exe.dispose();
      throw e;
    }
  }

  test("declared B ≤ 128: planned once at the bound, 128 / 64 / 128 / 64 reuse the same buffers", async () => {
    const { exe, trace } = await alternate({ dims: { B: 128 } }, [128, 64, 128, 64, 100]);
    try {
      expect(trace.map((t) => t.allocations)).toEqual([1, 1, 1, 1, 1]);
      for (const t of trace) {
        expect(t.plan).toBe(trace[0].plan); // the one plan, made at the bound
        expect(t.buffers).toBe(trace[0].buffers); // a new binding adds no buffer
      }
      expect(exe.memoryPlan!.arenaBytes).toBe(memoryReport(exe.program, { B: 128 }).arenaBytes);
      // Made once, by the pipeline: the runtime uses the program's plan, not one of its own.
      expect(exe.memoryPlan).toBe(exe.program.memory);
    } finally {
      exe.dispose();
    }
  });

  test("declared B ≤ 128: first a small batch, still planned at the bound", async () => {
    const { exe, trace } = await alternate({ dims: { B: 128 } }, [3, 128]);
    try {
      expect(trace.map((t) => t.allocations)).toEqual([1, 1]);
      expect(trace[1].plan).toBe(trace[0].plan);
    } finally {
      exe.dispose();
    }
  });

  test("a batch beyond the declared bound is refused before anything runs, naming the dim", async () => {
    const { exe } = await alternate({ dims: { B: 128 } }, [64]);
    try {
      const err = await exe.run(at(200)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KilnError);
      expect((err as Error).message).toMatch(/^dim B = 200 exceeds its declared bound 128\b/);
      expect(exe.allocations).toBe(1);
      // Still usable, with its memory as it was.
      const out = await exe.run(at(128));
      expect(mismatch(mlpGrad(), out, interpret(mlpGrad(), at(128)), { atol: 1e-5, rtol: 1e-4 })).toBeUndefined();
      expect(exe.allocations).toBe(1);
    } finally {
      exe.dispose();
    }
  });

  test("without bounds the memory grows to the largest batch: 64, 128, then 64 and 128 reuse it", async () => {
    const start = liveBuffers();
    const { exe, trace } = await alternate({}, [64, 128, 64, 128, 64]);
    try {
      expect(trace.map((t) => t.allocations)).toEqual([1, 2, 2, 2, 2]);
      for (const t of trace.slice(2)) {
        expect(t.plan).toBe(trace[1].plan);
        expect(t.buffers).toBe(trace[1].buffers);
      }
      expect(exe.memoryPlan!.arenaBytes).toBe(memoryReport(exe.program, { B: 128 }).arenaBytes);
    } finally {
      exe.dispose();
    }
    expect(liveBuffers()).toBe(start);
  });
});
