/** The bench's driver. For each workload: compute the float64 reference value; start every
 *  selected runner in its own process, one at a time (so setup and first step, W4's figures, are
 *  timed on a quiet machine); warm each up; then hand out chunks of timed steps round robin
 *  (A B C A B C …) so drift in the machine's speed hits every runner alike. A runner that fails,
 *  crashes or hangs is recorded with its reason and the rest go on. */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { RunnerDown, RunnerProcess } from "./child.ts";
import type { Reply, Request, RunnerInfo } from "./protocol.ts";
import { referenceValue } from "./reference.ts";
import type { Ceilings } from "./runners/ceilings.ts";
import { RUNNERS, type RunnerEntry } from "./registry.ts";
import { WORKLOADS, withBatch, type WorkloadId } from "./workloads.ts";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const RUNNERS_DIR = fileURLToPath(new URL("./runners/", import.meta.url));

/** A runner's file: its bundled twin where KILN_BENCH_PREBUILT names a folder holding one
 *  (scripts/gpu-kit.mjs bundles the peers for a machine without their packages), else its source. */
function runnerModule(entry: RunnerEntry, dir: string): string {
  if (entry.checkout) return join(entry.checkout, "test/bench/runners", entry.module);
  const prebuilt = process.env.KILN_BENCH_PREBUILT && join(process.env.KILN_BENCH_PREBUILT, entry.module.replace(/\.ts$/, ".mjs"));
  return prebuilt && existsSync(prebuilt) ? prebuilt : join(dir, entry.module);
}

export interface BenchOptions {
  readonly workloads: readonly WorkloadId[];
  /** Runner ids; undefined: every registered runner except opt-in ones. */
  readonly runners?: readonly string[];
  readonly warmup: number;
  readonly steps: number;
  /** Steps per turn in the round robin. */
  readonly chunk: number;
  /** Cap on one runner's timed steps per workload, in seconds of step time; a slow runner gets
   *  fewer steps (never fewer than minSteps), and its row says so. */
  readonly budgetS: number;
  readonly minSteps: number;
  /** Deadline for info and setup replies (setup includes the first step and its compile). */
  readonly timeoutS: number;
  /** Deadline for a steps reply, plus 5× the steps' expected time. */
  readonly stepsTimeoutS: number;
  /** Override every workload's batch (smoke runs); undefined keeps the sizes. */
  readonly batch?: number;
  /** Override W6's examples per epoch (smoke runs). */
  readonly examples?: number;
  /** Which of warmup, steps and chunk were set by hand (or by --smoke): the others follow a
   *  workload's own plan where it has one (W6: its step is a whole epoch). */
  readonly fixed?: readonly PlanKey[];
  /** "cold": a fresh empty Mesa shader cache per runner process; "warm": the persistent one. */
  readonly shaderCache: "cold" | "warm";
  readonly registry?: readonly RunnerEntry[];
  readonly runnersDir?: string;
  readonly log?: (line: string) => void;
}

export type Status = "ok" | "failed" | "crashed" | "timeout" | "not built" | "skipped";

export interface RunResult {
  readonly workload: WorkloadId;
  readonly runner: string;
  status: Status;
  /** Why it is not ok: the runner's error, the crash, or the reason it was skipped. */
  error?: string;
  info?: RunnerInfo;
  setupMs?: number;
  firstStepMs?: number;
  /** The first step's loss (or checksum), and the float64 reference it should match (none for
   *  a W6 epoch of several batches: see reference.ts). */
  firstLoss?: number;
  lastLoss?: number;
  reference?: number;
  /** Timed steps, in the order they ran. */
  ms: number[];
  stepsPlanned?: number;
  /** Files in the Mesa shader cache when the runner started (0: cold). */
  shaderCacheFiles?: number;
  /** The end of the runner's stderr when it did not finish ok (stacks, library warnings). */
  stderr?: string;
}

function selected(opts: BenchOptions, w: WorkloadId): { entry: RunnerEntry; skip?: string }[] {
  const registry = opts.registry ?? RUNNERS;
  const unknown = (opts.runners ?? []).filter((id) => !registry.some((e) => e.id === id));
  if (unknown.length) throw new Error(`unknown runner(s) ${unknown.join(", ")}; known: ${registry.map((e) => e.id).join(", ")}`);
  return registry
    .filter((e) => (opts.runners ? opts.runners.includes(e.id) : true) && e.workloads.includes(w))
    .map((entry) => ({
      entry,
      skip:
        !opts.runners && entry.optIn
          ? `opt-in (${entry.optIn})`
          : entry.checkout === ""
            ? "no checkout to run: set KILN_BENCH_BASE to one (e.g. a git worktree of the commit to compare with)"
            : undefined,
    }));
}

const errorOf = (r: Reply) => ("error" in r ? r.error : undefined);

type PlanKey = "warmup" | "steps" | "chunk";

/** Warm-ups, timed steps and chunk for one workload: its own plan, unless set by hand. */
export function planFor(opts: BenchOptions, w: WorkloadId): Record<PlanKey, number> {
  const plan = WORKLOADS[w].plan;
  const own = (k: PlanKey) => (plan && !opts.fixed?.includes(k) ? plan[k] : opts[k]);
  return { warmup: own("warmup"), steps: own("steps"), chunk: own("chunk") };
}

interface Live {
  readonly result: RunResult;
  readonly proc: RunnerProcess;
  readonly cacheDir?: string;
  estimateMs: number;
}

export async function runWorkload(w: WorkloadId, opts: BenchOptions): Promise<RunResult[]> {
  const log = opts.log ?? (() => {});
  const spec = withBatch(WORKLOADS[w], opts.batch, opts.examples);
  const reference = referenceValue(spec);
  const plan = planFor(opts, w);
  const results: RunResult[] = [];
  const live: Live[] = [];
  const setupReq: Request = {
    cmd: "setup",
    workload: w,
    ...(opts.batch === undefined ? {} : { batch: opts.batch }),
    ...(opts.examples === undefined ? {} : { examples: opts.examples }),
  };

  const down = (l: Live, e: unknown) => {
    const r = l.result;
    r.status = e instanceof RunnerDown ? e.kind : "failed";
    r.error = e instanceof Error ? e.message : String(e);
    r.stderr = l.proc.stderrTail(20) || undefined;
    log(`[${w}] ${r.runner}: ${r.status}: ${r.error}`);
  };

  for (const { entry, skip } of selected(opts, w)) {
    const result: RunResult = { workload: w, runner: entry.id, status: "ok", reference, ms: [] };
    results.push(result);
    const module = runnerModule(entry, opts.runnersDir ?? RUNNERS_DIR);
    if (skip) Object.assign(result, { status: "skipped", error: skip });
    else if (!existsSync(module)) Object.assign(result, { status: "not built", error: `${module} does not exist yet` });
    if (result.status !== "ok") {
      log(`[${w}] ${entry.id}: ${result.status}`);
      continue;
    }
    const cacheDir = opts.shaderCache === "cold" ? mkdtempSync(join(tmpdir(), "kiln-bench-mesa-")) : join(ROOT, ".cache/bench/mesa-shader");
    mkdirSync(cacheDir, { recursive: true });
    result.shaderCacheFiles = readdirSync(cacheDir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).length;
    const env = { ...process.env, MESA_SHADER_CACHE_DIR: cacheDir, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR || "/tmp" };
    const proc = new RunnerProcess(process.execPath, ["--import", "tsx", module, ...entry.args], { cwd: ROOT, env });
    const l: Live = { result, proc, cacheDir: opts.shaderCache === "cold" ? cacheDir : undefined, estimateMs: 0 };
    try {
      const info = await proc.request({ cmd: "info" }, opts.timeoutS * 1000);
      if (!info.ok) throw new Error(errorOf(info));
      if ("info" in info) result.info = info.info;
      const s = await proc.request(setupReq, opts.timeoutS * 1000);
      if (!s.ok && "notBuilt" in s && s.notBuilt) {
        Object.assign(result, { status: "not built", error: s.error });
        log(`[${w}] ${entry.id}: not built: ${s.error}`);
        await finish(l);
        continue;
      }
      if (!s.ok) throw new Error(errorOf(s));
      if (!("setupMs" in s)) throw new Error(`setup reply lacks setupMs: ${JSON.stringify(s)}`);
      Object.assign(result, { setupMs: s.setupMs, firstStepMs: s.firstStepMs, firstLoss: s.loss, lastLoss: s.loss });
      l.estimateMs = s.firstStepMs;
      log(`[${w}] ${entry.id}: setup ${s.setupMs.toFixed(0)} ms, first step ${s.firstStepMs.toFixed(0)} ms, loss ${s.loss}`);
      live.push(l);
    } catch (e) {
      down(l, e);
      await finish(l);
    }
  }

  const steps = async (l: Live, n: number): Promise<readonly number[] | undefined> => {
    try {
      const r = await l.proc.request({ cmd: "steps", n }, opts.stepsTimeoutS * 1000 + 5 * n * l.estimateMs);
      if (!r.ok) throw new Error(errorOf(r));
      if (!("ms" in r) || r.ms.length !== n) throw new Error(`steps ×${n}: reply has ${"ms" in r ? r.ms.length : "no"} timings`);
      l.result.lastLoss = r.loss;
      return r.ms;
    } catch (e) {
      down(l, e);
      await finish(l);
      return undefined;
    }
  };

  const alive = () => live.filter((l) => l.result.status === "ok");
  for (const l of alive()) {
    const ms = plan.warmup > 0 ? await steps(l, plan.warmup) : [];
    if (!ms) continue;
    if (ms.length) l.estimateMs = [...ms].sort((a, b) => a - b)[Math.floor(ms.length / 2)];
    const affordable = Math.floor((opts.budgetS * 1000) / Math.max(l.estimateMs, 1e-3));
    l.result.stepsPlanned = Math.max(Math.min(opts.minSteps, plan.steps), Math.min(plan.steps, affordable));
  }
  for (;;) {
    const turn = alive().filter((l) => l.result.ms.length < l.result.stepsPlanned!);
    if (!turn.length) break;
    for (const l of turn) {
      const ms = await steps(l, Math.min(plan.chunk, l.result.stepsPlanned! - l.result.ms.length));
      if (ms) l.result.ms.push(...ms);
    }
  }
  for (const l of alive()) {
    const s = [...l.result.ms].sort((a, b) => a - b);
    log(`[${w}] ${l.result.runner}: median ${s[Math.floor(s.length / 2)]?.toFixed(1)} ms over ${s.length} steps`);
    await finish(l);
  }
  return results;
}

/** The adapter's ceilings, from ceilings.ts in its own process (it uses Kiln's device code). */
export async function runCeilings(opts: BenchOptions): Promise<Ceilings | { error: string }> {
  const dir = mkdtempSync(join(tmpdir(), "kiln-bench-mesa-"));
  const env = { ...process.env, MESA_SHADER_CACHE_DIR: dir, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR || "/tmp" };
  const proc = new RunnerProcess(process.execPath, ["--import", "tsx", join(RUNNERS_DIR, "ceilings.ts")], { cwd: ROOT, env });
  try {
    const r = await proc.reply(opts.timeoutS * 1000, "ceilings");
    if (!r.ok) return { error: r.error };
    if (!("ceilings" in r)) return { error: `unexpected reply ${JSON.stringify(r)}` };
    return r.ceilings;
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  } finally {
    await proc.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface BenchRun {
  readonly results: RunResult[];
  readonly ceilings?: Ceilings | { error: string };
  /** 1, 5 and 15-minute load averages before each workload and at the end. */
  readonly load: { readonly at: string; readonly avg: readonly number[] }[];
}

/** Every workload in turn (and the ceilings when W5 is among them). */
export async function runBench(opts: BenchOptions): Promise<BenchRun> {
  const load: { at: string; avg: number[] }[] = [];
  const results: RunResult[] = [];
  for (const w of opts.workloads) {
    load.push({ at: w, avg: loadavg() });
    results.push(...(await runWorkload(w, opts)));
  }
  let ceilings: BenchRun["ceilings"];
  if (opts.workloads.includes("W5")) {
    load.push({ at: "ceilings", avg: loadavg() });
    opts.log?.("[W5] ceilings: FMA and copy kernels");
    ceilings = await runCeilings(opts);
  }
  load.push({ at: "end", avg: loadavg() });
  return { results, ceilings, load };
}

async function finish(l: Live): Promise<void> {
  await l.proc.close();
  if (l.cacheDir) rmSync(l.cacheDir, { recursive: true, force: true });
}
