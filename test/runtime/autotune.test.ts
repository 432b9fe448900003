/** The autotuner (runtime/autotune.ts): the search over injected timings (no clock is asserted),
 *  tuneProgram's cache and target updates, and — on Dawn — every candidate configuration of both
 *  GEMM writers against the float64 reference, and a real search end to end. */
import fc from "fast-check";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test, vi } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { CPU_TARGET, GPU_TARGET, type Target } from "../../compiler/target.ts";
import { formatConfig, gemmCandidates, type GemmConfig } from "../../compiler/tuning.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import { gemmKernels, kernelGraph, searchClass, tuneProgram, type Trial } from "../../runtime/autotune.ts";
import { acquireGpu, type Gpu } from "../../runtime/device.ts";
import { Executable } from "../../runtime/execute.ts";
import { interpret } from "../../src/interpret.ts";
import { readTuning } from "../../runtime/tuning-cache.ts";
import { expectMatchesReference, useGpu } from "../helpers/gpu.ts";

useGpu();

const reg = (rm: number, rn: number, lanes = 64): GemmConfig => ({ writer: "register-blocked", rm, rn, lanes });
/** A trial whose samples are `times` in turn (the first is the warm-up), counting its calls. */
const fake = (times: readonly number[], calls: Map<string, number>, c: GemmConfig): Trial => ({
  async time() {
    const n = calls.get(formatConfig(c)) ?? 0;
    calls.set(formatConfig(c), n + 1);
    return times[Math.min(n, times.length - 1)];
  },
  dispose() {},
});

describe("the search, over injected timings", () => {
  const cands = [reg(16, 8), reg(8, 8), reg(16, 4)];

  test("picks the lowest median; a one-off spike or a slow warm-up moves nothing", async () => {
    const calls = new Map<string, number>();
    const times: Record<string, number[]> = {
      "rm16 rn8 lanes64": [50, 10, 10, 10, 10, 10, 10],
      "rm8 rn8 lanes64": [90, 7, 7, 100, 7, 7], // the fastest, with one spike
      "rm16 rn4 lanes64": [5, 9, 9, 9, 9, 9],
    };
    const r = await searchClass(cands, async (c) => fake(times[formatConfig(c)], calls, c), { repeats: 5 });
    expect(r.best).toEqual(reg(8, 8));
    expect([r.ms, r.defaultMs]).toEqual([7, 10]);
    expect(r.medians.map((m) => m.ms)).toEqual([10, 7, 9]);
    // Warm-up plus 5 rounds each, every candidate in every round (and the default once more,
    // to size the samples).
    expect([...calls.values()]).toEqual([7, 6, 6]);
  });

  test("the default stays unless another beats it by 5%", async () => {
    const calls = new Map<string, number>();
    const times: Record<string, number[]> = { "rm16 rn8 lanes64": [10], "rm8 rn8 lanes64": [9.7], "rm16 rn4 lanes64": [11] };
    const r = await searchClass(cands, async (c) => fake(times[formatConfig(c)], calls, c));
    expect(r.best).toEqual(reg(16, 8));
  });

  test("a candidate that fails is dropped with a note; a failing default is an error", async () => {
    const calls = new Map<string, number>();
    const lines: string[] = [];
    const prepare = async (c: GemmConfig) => {
      if (c.writer === "register-blocked" && c.rn === 4) throw new Error("WGSL does not compile");
      return fake([c.writer === "register-blocked" && c.rm === 8 ? 3 : 4], calls, c);
    };
    const r = await searchClass(cands, prepare, { log: (l) => lines.push(l) });
    expect(r.medians.map((m) => formatConfig(m.config))).toEqual(["rm16 rn8 lanes64", "rm8 rn8 lanes64"]);
    expect(r.best).toEqual(reg(8, 8));
    expect(lines).toEqual(["    rm16 rn4 lanes64: dropped (WGSL does not compile)"]);
    await expect(searchClass([cands[2], cands[0]], prepare)).rejects.toThrow(/WGSL does not compile/);
  });

  test("past the time budget only the first round runs", async () => {
    const calls = new Map<string, number>();
    await searchClass(cands, async (c) => fake([1], calls, c), { budgetMs: 0, repeats: 5 });
    expect([...calls.values()]).toEqual([3, 2, 2]);
  });
});

/** A device stand-in for tuneProgram over injected trials: its adapter id and target. */
const fakeGpu = (target: Target): Gpu => ({ adapterId: "fake adapter", adapter: "fake", target }) as unknown as Gpu;

describe("tuneProgram", () => {
  const g = new GraphBuilder();
  const x = g.input("x", "f32", [100, 784]);
  const w1 = g.input("w1", "f32", [784, 300]);
  const w2 = g.input("w2", "f32", [300, 10]);
  const w3 = g.input("w3", "f32", [784, 300]);
  const h = x.matmul(w1).relu();
  const graph = g.build({ y: h.matmul(w2), z: x.matmul(w3).add(1) });

  test("tunes each class once, writes the cache, and the next compile uses it", async () => {
    const program = compile(graph, { target: CPU_TARGET });
    expect(gemmKernels(program).map((k) => k.gemm!.class)).toEqual([
      "matmul/register-blocked/M128xN512xK1024/nn",
      "matmul/register-blocked/M128xN16xK512/nn",
    ]);
    const dir = mkdtempSync(join(tmpdir(), "kiln-tune-"));
    const gpu = fakeGpu(CPU_TARGET);
    const calls = new Map<string, number>();
    const fastest = (cls: string) => (cls.includes("N512") ? reg(8, 16) : reg(16, 4));
    const results = await tuneProgram(gpu, program, {
      dir,
      prepare: async (cls, _k, _p, c) => fake([formatConfig(c) === formatConfig(fastest(cls)) ? 1 : 2], calls, c),
    });
    expect(results.map((r) => [r.class, formatConfig(r.entry.config)])).toEqual([
      ["matmul/register-blocked/M128xN512xK1024/nn", "rm8 rn16 lanes64"],
      ["matmul/register-blocked/M128xN16xK512/nn", "rm16 rn4 lanes64"],
    ]);
    expect(Object.keys(readTuning("fake adapter", dir))).toHaveLength(2);
    const again = compile(graph, { target: gpu.target });
    expect(gemmKernels(again).map((k) => [k.gemm!.source, formatConfig(k.gemm!.config)])).toEqual([
      ["tuned", "rm8 rn16 lanes64"],
      ["tuned", "rm16 rn4 lanes64"],
    ]);
    // Cached classes are skipped unless asked to tune again.
    expect(await tuneProgram(gpu, program, { dir, prepare: async () => Promise.reject(new Error("not called")) })).toEqual([]);
  });

  test("kernelGraph cuts a kernel out with its inlined loads and epilogue", () => {
    const program = compile(graph, { target: CPU_TARGET });
    const k = program.kernels.find((k) => k.what === "fused[matmul, relu]")!;
    const sub = kernelGraph(program, k);
    expect(sub.nodes.map((n) => n.op)).toEqual(["input", "input", "matmul", "relu"]);
    expect(compile(sub, { target: CPU_TARGET }).kernels.map((k) => k.what)).toEqual([k.what]);
  });
});

describe("on Dawn: tuned kernels compute what the defaults do", () => {
  const data = (n: number, s: number) => Array.from({ length: n }, (_, i) => Math.sin(i * 1.37 + s));
  const tol = { atol: 1e-4, rtol: 1e-4 };

  test.each([
    { target: CPU_TARGET, runs: 10 },
    { target: GPU_TARGET, runs: 7 },
  ])("$target.name: every candidate matches float64 at odd sizes, a transposed operand and an epilogue", async ({ target, runs }) => {
    const cands = gemmCandidates(target, `matmul/${target.gemm}/M1024xN1024xK1024/nn`);
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 70 }),
        fc.integer({ min: 1, max: 70 }),
        fc.integer({ min: 1, max: 70 }),
        fc.nat(),
        fc.boolean(),
        async (m, k, n, c, t) => {
          const g = new GraphBuilder();
          const w = g.input("w", "f32", t ? [n, k] : [k, n]);
          const graph = g.build({
            y: g
              .input("x", "f32", [m, k])
              .matmul(t ? w.transpose() : w)
              .relu(),
          });
          const cls = compile(graph, { target }).kernels[0].gemm!.class;
          const config = cands[c % cands.length];
          const tuned = { ...target, tuning: { tunedFor: "test", configs: { [cls]: config } } };
          expect(compile(graph, { target: tuned }).kernels[0].gemm).toMatchObject({ config, source: "tuned" });
          await expectMatchesReference(
            graph,
            { x: { shape: [m, k], data: data(m * k, 1) }, w: { shape: t ? [n, k] : [k, n], data: data(n * k, 2) } },
            tol,
            {
              target: tuned,
            },
          );
        },
      ),
      { seed: 16, numRuns: Math.max(runs, cands.length) },
    );
  });

  test("a conv2d and its filter gradient with tuned configs match float64", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [2, 7, 9, 3]);
    const f = g.input("f", "f32", [3, 3, 3, 5]);
    const gy = g.input("gy", "f32", [2, 4, 5, 5]);
    const conv = { strides: [2, 2], padding: [1, 1, 1, 1], dilations: [1, 1] } as const;
    const graph = g.build({ y: x.conv2d(f), df: g.add("conv2d_grad_filter", [x, gy], { ...conv, shape: [3, 3, 3, 5] }) });
    const classes = compile(graph, { target: CPU_TARGET }).kernels.flatMap((k) => (k.gemm ? [k.gemm.class] : []));
    expect(classes).toHaveLength(2);
    const configs = Object.fromEntries(classes.map((c, i) => [c, i ? reg(8, 4, 32) : reg(32, 4, 128)]));
    const target = { ...CPU_TARGET, tuning: { tunedFor: "test", configs } };
    const inputs = {
      x: { shape: [2, 7, 9, 3], data: data(378, 1) },
      f: { shape: [3, 3, 3, 5], data: data(135, 2) },
      gy: { shape: [2, 4, 5, 5], data: data(200, 3) },
    };
    await expectMatchesReference(graph, inputs, tol, { target });
  });

  test("Executable.fromGraph with tune: tunes the classes the cache lacks at first use, then loads the tuned kernels", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-tune-"));
    const saved = process.env.KILN_CACHE_DIR;
    process.env.KILN_CACHE_DIR = dir;
    vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      const g = new GraphBuilder();
      const graph = g.build({ y: g.input("x", "f32", [9, 12]).matmul(g.input("w", "f32", [12, 5])) });
      const exe = await Executable.fromGraph(graph, { tune: true });
      try {
        const gpu = await acquireGpu();
        const cls = exe.program.kernels[0].gemm!.class;
        expect(exe.program.kernels[0].gemm).toMatchObject({ source: "tuned", config: readTuning(gpu.adapterId, dir)[cls].config });
        const out = await exe.run({ x: { shape: [9, 12], data: data(108, 1) }, w: { shape: [12, 5], data: data(60, 2) } });
        const ref = interpret(graph, { x: { shape: [9, 12], data: data(108, 1) }, w: { shape: [12, 5], data: data(60, 2) } });
        out.y.data.forEach((v, i) => expect(Math.abs(v - ref.y.data[i])).toBeLessThan(1e-4));
      } finally {
        exe.dispose();
      }
    } finally {
      vi.restoreAllMocks();
      saved === undefined ? delete process.env.KILN_CACHE_DIR : (process.env.KILN_CACHE_DIR = saved);
    }
  });

  test("a real search on this adapter writes an entry whose kernel matches float64", async () => {
    const gpu = await acquireGpu();
    const g = new GraphBuilder();
    const graph = g.build({ y: g.input("x", "f32", ["B", 33]).matmul(g.input("w", "f32", [33, 17])) });
    const dir = mkdtempSync(join(tmpdir(), "kiln-tune-"));
    const program = compile(graph, { target: gpu.target, dims: { B: 40 } });
    const [r] = await tuneProgram(gpu, program, { dir, repeats: 2, budgetMs: 0 });
    expect(r.entry.candidates).toBe(gemmCandidates(gpu.target, r.class).length);
    expect(readTuning(gpu.adapterId, dir)[r.class].config).toEqual(r.entry.config);
    expect(compile(graph, { target: gpu.target }).kernels[0].gemm).toMatchObject({ source: "tuned", config: r.entry.config });
    await expectMatchesReference(graph, { x: { shape: [40, 33], data: data(1320, 1) }, w: { shape: [33, 17], data: data(561, 2) } }, tol, {
      target: gpu.target,
    });
  });
});
