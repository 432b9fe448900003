/** The autotuner: for each GEMM shape class of a program (compiler/tuning.ts), time every
 *  candidate configuration on the device and keep the fastest in the tuning cache
 *  (./tuning-cache.ts), which later compiles for this adapter use.
 *
 *  The kernel timed is the program's own: its nodes (the GEMM, the loads inlined into it, its
 *  epilogue) cut out as a graph of their own, compiled once per candidate with that candidate
 *  forced for the class, its bindings filled with seeded values and dispatched alone:
 *      k3 = matmul[permute, add, relu] over %7, %2  →  graph { in7, in2 → permute, matmul, add, relu }
 *  A search, per class, within a time box:
 *      warm-up   each candidate compiled and run once (the compile and first-run costs are not
 *                timed); then the default is timed once more to fit the dispatches a sample
 *                repeats to ≈ SAMPLE_MS — one count for every candidate, so the submission's
 *                fixed cost weighs the same in each
 *      rounds    every candidate timed once a round, in an order rotated each round (drift and a
 *                neighbour's load spread over all of them), until `repeats` rounds or the budget
 *      choice    the lowest median; the default stays unless another beats it by MIN_GAIN, so
 *                noise alone never moves a class off the portable default
 *  A candidate that fails to compile or run is dropped with a note (the default failing is an
 *  error). Every candidate computes the same GEMM: a tuned kernel's results are the default's. */
import { bytesOf } from "../compiler/cost.ts";
import { compile, type CompileOptions } from "../compiler/pipeline.ts";
import type { Kernel, Program } from "../compiler/program.ts";
import { formatConfig, gemmCandidates, type GemmConfig } from "../compiler/tuning.ts";
import { KilnError } from "../src/ir/errors.ts";
import type { DimEnv } from "../src/ir/shape.ts";
import type { Graph, Node, ValueId } from "../src/ir/types.ts";
import { createBuffer, destroyBuffer } from "./buffers.ts";
import { checked, setTuning, type Gpu } from "./device.ts";
import { USAGE } from "./executor.ts";
import { pipeline, release, workgroups } from "./pipelines.ts";
import { asTuning, readTuning, writeTuning, type TuningEntry } from "./tuning-cache.ts";

/** A candidate ready to time: `time(n)` submits n dispatches and returns the milliseconds per
 *  dispatch (one sample). */
export interface Trial {
  time(dispatches: number): Promise<number>;
  dispose(): void;
}

/** Prepares a candidate of a class for timing (compiles it): the device's by default. */
export type Prepare = (config: GemmConfig) => Promise<Trial>;

export interface TuneOptions {
  /** Timed rounds a class (default 5). */
  readonly repeats?: number;
  /** Milliseconds a class may take, warm-up included (default 30,000); at least one round runs. */
  readonly budgetMs?: number;
  /** Lines of the search's log (default: none). */
  readonly log?: (line: string) => void;
  /** Tune classes that already have a cache entry too (default false). */
  readonly retune?: boolean;
  /** Skip (with a note) a class whose symbolic dims `env` leaves unbound, instead of failing. */
  readonly skipUnbound?: boolean;
  /** The cache folder (default ./tuning-cache.ts cacheDir()). */
  readonly dir?: string;
  /** Replaces the device trial (tests inject fake timings): class, kernel, config → trial. */
  readonly prepare?: (cls: string, kernel: Kernel, program: Program, config: GemmConfig) => Promise<Trial>;
}

/** What one class's search found. */
export interface ClassResult {
  readonly class: string;
  readonly kernel: string;
  readonly entry: TuningEntry;
  /** Median ms per candidate tried, in candidate order. */
  readonly medians: readonly { readonly config: GemmConfig; readonly ms: number }[];
}

/** The default keeps its place unless a candidate's median is this much lower (5%). */
const MIN_GAIN = 0.95;
/** A sample repeats the dispatch until it lasts about this long, so a short kernel's time is not
 *  the submission's overhead. */
const SAMPLE_MS = 20;
const MAX_DISPATCHES = 64;

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
};

/** Search `candidates` (the default first) with `prepare`; see the header. */
export async function searchClass(
  candidates: readonly GemmConfig[],
  prepare: Prepare,
  opts: Pick<TuneOptions, "repeats" | "budgetMs" | "log"> = {},
): Promise<{ best: GemmConfig; ms: number; defaultMs: number; medians: { config: GemmConfig; ms: number }[] }> {
  const t0 = performance.now();
  const budget = opts.budgetMs ?? 30_000;
  const log = opts.log ?? (() => {});
  const trials: { config: GemmConfig; trial: Trial; times: number[] }[] = [];
  try {
    for (const [i, config] of candidates.entries()) {
      try {
        const trial = await prepare(config);
        trials.push({ config, trial, times: [] });
        await trial.time(1);
      } catch (e) {
        if (i === 0) throw e;
        log(`    ${formatConfig(config)}: dropped (${(e as Error).message.split("\n")[0]})`);
        trials.at(-1)?.config === config && trials.pop()?.trial.dispose();
      }
    }
    const once = await trials[0].trial.time(1);
    const n = Math.max(1, Math.min(MAX_DISPATCHES, Math.round(SAMPLE_MS / Math.max(once, 0.01))));
    const repeats = opts.repeats ?? 5;
    for (let r = 0; r < repeats && (r === 0 || performance.now() - t0 < budget); r++)
      for (let j = 0; j < trials.length; j++) {
        const t = trials[(j + r) % trials.length];
        t.times.push(await t.trial.time(n));
      }
  } finally {
    for (const t of trials) t.trial.dispose();
  }
  const medians = trials.map((t) => ({ config: t.config, ms: median(t.times) }));
  const defaultMs = medians[0].ms;
  const fastest = medians.reduce((a, b) => (b.ms < a.ms ? b : a));
  const best = fastest.ms < defaultMs * MIN_GAIN ? fastest : medians[0];
  return { best: best.config, ms: best.ms, defaultMs, medians };
}

/** The GEMM kernels of `program`, one per shape class (the first of each). */
export function gemmKernels(program: Program): Kernel[] {
  const seen = new Set<string>();
  return program.kernels.filter((k) => k.gemm && !seen.has(k.gemm.class) && seen.add(k.gemm.class));
}

/** The nodes of `kernel` as a graph of their own: each value it reads from a buffer becomes an
 *  input (named in<id>), its nodes are copied in order, and its stored value is the output "out". */
export function kernelGraph(program: Program, kernel: Kernel): Graph {
  const g = program.graph;
  const inside = new Set(kernel.nodes);
  const ids = new Map<ValueId, ValueId>();
  const nodes: Node[] = [];
  const outside = [...new Set(kernel.nodes.flatMap((id) => g.nodes[id].inputs.filter((i) => !inside.has(i))))].sort((a, b) => a - b);
  for (const v of outside) {
    const n = g.nodes[v];
    ids.set(v, nodes.length);
    nodes.push({
      id: nodes.length,
      op: "input",
      inputs: [],
      attrs: { name: `in${v}`, dtype: n.type.dtype, shape: n.type.shape },
      type: n.type,
      site: n.site,
    } as Node);
  }
  for (const v of kernel.nodes) {
    const n = g.nodes[v];
    ids.set(v, nodes.length);
    nodes.push({ ...n, id: nodes.length, inputs: n.inputs.map((i) => ids.get(i)!) });
  }
  return { nodes, outputs: [{ name: "out", id: ids.get(kernel.output)! }] };
}

/** A device trial: `kernel`'s graph compiled with `config` forced for class `cls`, its GEMM kernel
 *  bound to buffers of seeded values at `env`, dispatched as one sample. */
export async function deviceTrial(
  gpu: Gpu,
  program: Program,
  kernel: Kernel,
  cls: string,
  config: GemmConfig,
  env: DimEnv,
): Promise<Trial> {
  const target = { ...gpu.target, tuning: { tunedFor: "search", configs: { [cls]: config } } };
  const sub = compile(kernelGraph(program, kernel), { target, maxStorageBuffers: gpu.limits.maxStorageBuffersPerShaderStage, plan: false });
  const k = sub.kernels.find((x) => x.gemm?.class === cls && x.gemm.source === "tuned");
  if (!k) throw new KilnError(`tune: ${kernel.name}'s graph compiled alone has no ${cls} kernel`);
  const { device } = gpu;
  const what = `tuning ${cls} (${formatConfig(config)})`;
  const counts = workgroups(k, env, gpu.limits.maxComputeWorkgroupsPerDimension);
  if (!counts) throw new KilnError(`tune: ${cls} is empty at ${JSON.stringify(env)}`);
  const pipe = await pipeline(gpu, k);
  const buffers: GPUBuffer[] = [];
  try {
    const group = await checked(gpu, what, () => {
      const entries: GPUBindGroupEntry[] = k.bindings.map((b, i) => {
        const n = sub.graph.nodes[b.value];
        const bytes = bytesOf(n.type.shape, env);
        const buf = createBuffer(device, `tune ${i}`, bytes, USAGE.STORAGE | USAGE.COPY_DST);
        buffers.push(buf);
        const data = new Float32Array(Math.max(1, bytes / 4));
        // Seeded values in [-1, 1) for floats; integers (indices) stay 0, always in range.
        if (n.type.dtype === "f32") for (let j = 0; j < data.length; j++) data[j] = ((j * 7919 + i * 104729) % 2000) / 1000 - 1;
        device.queue.writeBuffer(buf, 0, data);
        return { binding: i, resource: { buffer: buf } };
      });
      if (k.uniforms.length) {
        const u = createBuffer(device, "tune dims", 4 * k.uniforms.length, USAGE.UNIFORM | USAGE.COPY_DST);
        buffers.push(u);
        device.queue.writeBuffer(u, 0, Uint32Array.from(k.uniforms.map((d) => env[d])));
        entries.push({ binding: k.bindings.length, resource: { buffer: u } });
      }
      return device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries });
    });
    const run = async (n: number): Promise<number> => {
      const t = performance.now();
      await checked(gpu, what, async () => {
        const enc = device.createCommandEncoder();
        const pass = enc.beginComputePass();
        pass.setPipeline(pipe);
        pass.setBindGroup(0, group);
        for (let i = 0; i < n; i++) pass.dispatchWorkgroups(...counts);
        pass.end();
        device.queue.submit([enc.finish()]);
        await device.queue.onSubmittedWorkDone();
      });
      return (performance.now() - t) / n;
    };
    return {
      time: run,
      dispose() {
        for (const b of buffers) destroyBuffer(b);
        release(gpu, [k]);
      },
    };
  } catch (e) {
    for (const b of buffers) destroyBuffer(b);
    release(gpu, [k]);
    throw e;
  }
}

/** Tune the GEMM classes of `program` on `gpu` (those without a cache entry, or all with
 *  `retune`), write the results to the adapter's cache file and apply them to `gpu.target`.
 *  Symbolic dims are timed at `env` (default: the program's declared dims). */
export async function tuneProgram(gpu: Gpu, program: Program, opts: TuneOptions & { env?: DimEnv } = {}): Promise<ClassResult[]> {
  const env = opts.env ?? program.dims ?? {};
  const log = opts.log ?? (() => {});
  const cached = readTuning(gpu.adapterId, opts.dir);
  const results: ClassResult[] = [];
  const entries: Record<string, TuningEntry> = {};
  for (const k of gemmKernels(program)) {
    const cls = k.gemm!.class;
    if (cached[cls] && !opts.retune) {
      log(`${cls}: cached (${formatConfig(cached[cls].config)}), skipped`);
      continue;
    }
    const unbound = [...new Set(k.uniforms)].filter((d) => env[d] === undefined);
    if (unbound.length && opts.skipUnbound) {
      log(`${cls}: skipped (its symbolic dim ${unbound.join(", ")} has no declared bound to time it at)`);
      continue;
    }
    if (unbound.length)
      throw new KilnError(`tune: bind the symbolic dim ${unbound.join(", ")} to time ${k.name} (${cls}), e.g. -d ${unbound[0]}=128`);
    const candidates = gemmCandidates(gpu.target, cls);
    log(`${cls} (${k.name}, ${candidates.length} candidates)`);
    const prepare: Prepare = (c) => (opts.prepare ? opts.prepare(cls, k, program, c) : deviceTrial(gpu, program, k, cls, c, env));
    const found = await searchClass(candidates, prepare, opts);
    for (const m of found.medians)
      log(`    ${formatConfig(m.config).padEnd(24)}${m.ms.toFixed(3).padStart(10)} ms${m.config === found.best ? "  ← chosen" : ""}`);
    log(`    ${(found.defaultMs / found.ms).toFixed(2)}× the default`);
    const entry: TuningEntry = {
      config: found.best,
      ms: found.ms,
      defaultMs: found.defaultMs,
      candidates: found.medians.length,
      at: new Date().toISOString(),
    };
    entries[cls] = entry;
    results.push({ class: cls, kernel: k.name, entry, medians: found.medians });
    // Written class by class: a tune stopped halfway keeps what it found.
    log(`    wrote ${writeTuning(gpu.adapterId, { [cls]: entry }, opts.dir)}`);
  }
  setTuning(gpu, asTuning(gpu.adapterId, { ...cached, ...entries }));
  return results;
}

/** Compile `graph` for `gpu`, tune its GEMM classes (./tuneProgram) and return the program
 *  compiled again with the results. */
export async function tuneGraph(gpu: Gpu, graph: Graph, compileOpts: CompileOptions, opts: TuneOptions & { env?: DimEnv } = {}) {
  const base = { maxStorageBuffers: gpu.limits.maxStorageBuffersPerShaderStage, ...compileOpts };
  const results = await tuneProgram(gpu, compile(graph, { ...base, target: gpu.target }), opts);
  return { results, program: compile(graph, { ...base, target: gpu.target }) };
}
