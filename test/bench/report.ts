/** The bench's results as JSON (everything, for later comparison) and as markdown tables
 *  (medians with min–max, samples/s, GFLOP/s beside the adapter's FMA ceiling, the ratio
 *  runner ÷ baseline, and whether the first value matched the float64 reference). */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { ROOT, planFor, type BenchOptions, type BenchRun, type RunResult } from "./orchestrate.ts";
import { BASELINE } from "./registry.ts";
import type { Ceilings } from "./runners/ceilings.ts";
import { packageVersion } from "./versions.ts";
import { WORKLOADS, flopsPerStep, samplesPerStep, withBatch, type WorkloadId } from "./workloads.ts";

/** A first value this far (relative) from the float64 reference is flagged: all are f32. */
export const REFERENCE_TOLERANCE = 1e-3;
/** W6's first epoch loss against the runners' median (no float64 reference: reference.ts).
 *  Each runs 16 Adam steps in f32, and not quite the same Adam: Kiln adds ε to √v as Keras
 *  does, TF.js to the bias-corrected √v̂ (a ~30× smaller ε at step 1), which moves weights with
 *  tiny gradients differently (measured: 5e-5 relative). A wrong model is off by far more. */
export const RUNNERS_TOLERANCE = 1e-3;

export interface Summary {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly samplesPerSec: number;
  readonly gflops: number;
  /** This runner's median ÷ the baseline's, when both ran. */
  readonly ratio?: number;
}

export type ResultRow = RunResult & {
  summary?: Summary;
  firstLossRelError?: number;
  /** What the first value was compared with: the float64 reference or, where there is none,
   *  the median of every runner's first value (when two or more have one). */
  checkedAgainst?: { readonly value: number; readonly by: "float64" | "runners' median"; readonly tolerance: number };
};

export interface BenchReport {
  readonly date: string;
  readonly options: Omit<BenchOptions, "registry" | "log" | "runnersDir">;
  readonly baseline: string;
  readonly host: {
    readonly cpus: number;
    readonly cpuModel: string;
    readonly memGiB: number;
    readonly platform: string;
    readonly node: string;
  };
  readonly versions: Record<string, string>;
  readonly adapter?: string;
  readonly shaderCache: string;
  readonly load: BenchRun["load"];
  readonly ceilings?: BenchRun["ceilings"];
  readonly results: readonly ResultRow[];
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function kilnVersion(): string {
  const v = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
  try {
    const git = (args: string[]) => execFileSync("git", args, { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    return `${v} (${git(["rev-parse", "--short", "HEAD"])}${git(["status", "--porcelain"]) ? ", modified" : ""})`;
  } catch {
    return v;
  }
}

function checkFor(r: RunResult, all: readonly RunResult[]): ResultRow["checkedAgainst"] {
  if (r.reference !== undefined) return { value: r.reference, by: "float64", tolerance: REFERENCE_TOLERANCE };
  const firsts = all.filter((x) => x.workload === r.workload && x.firstLoss !== undefined).map((x) => x.firstLoss!);
  return firsts.length >= 2 ? { value: median(firsts), by: "runners' median", tolerance: RUNNERS_TOLERANCE } : undefined;
}

const LIBS = [
  "@tensorflow/tfjs",
  "@tensorflow/tfjs-backend-webgpu",
  "@tensorflow/tfjs-backend-wasm",
  "@jax-js/jax",
  "onnxruntime-node",
  "webgpu",
];

export function buildReport(run: BenchRun, opts: BenchOptions, baseline = BASELINE): BenchReport {
  const { registry: _r, log: _l, runnersDir: _d, ...options } = opts;
  const versions: Record<string, string> = { kiln: kilnVersion() };
  for (const lib of LIBS) versions[lib] = packageVersion(lib);
  const adapters = new Set(run.results.flatMap((r) => (r.info?.adapter ? [r.info.adapter] : [])));
  if (run.ceilings && "adapter" in run.ceilings) adapters.add(run.ceilings.adapter);
  const results = run.results.map((r): ResultRow => {
    const row: ResultRow = { ...r };
    const check = checkFor(r, run.results);
    if (r.firstLoss !== undefined && check) {
      row.checkedAgainst = check;
      row.firstLossRelError = Math.abs(r.firstLoss - check.value) / Math.abs(check.value);
    }
    if (r.ms.length) {
      const spec = withBatch(WORKLOADS[r.workload], opts.batch, opts.examples);
      const med = median(r.ms);
      row.summary = {
        median: med,
        min: Math.min(...r.ms),
        max: Math.max(...r.ms),
        samplesPerSec: (samplesPerStep(spec) * 1000) / med,
        gflops: flopsPerStep(spec) / (med * 1e6),
      };
    }
    return row;
  });
  for (const row of results) {
    const base = results.find((b) => b.workload === row.workload && b.runner === baseline && b.status === "ok")?.summary;
    if (row.summary && base) row.summary = { ...row.summary, ratio: row.summary.median / base.median };
  }
  return {
    date: new Date().toISOString(),
    options,
    baseline,
    host: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? "?",
      memGiB: Math.round(totalmem() / 2 ** 30),
      platform: `${process.platform} ${process.arch}`,
      node: process.version,
    },
    versions,
    adapter: adapters.size ? [...adapters].join(" / ") : undefined,
    shaderCache:
      opts.shaderCache === "cold"
        ? "cold: a fresh empty MESA_SHADER_CACHE_DIR per runner process"
        : "warm: the persistent .cache/bench/mesa-shader",
    load: run.load,
    ceilings: run.ceilings,
    results,
  };
}

const cell = (s: string) => s.replace(/\s*\n\s*/g, " ").replace(/\|/g, "\\|");
const ms = (v: number | undefined) => (v === undefined ? "—" : v >= 100 ? v.toFixed(0) : v.toFixed(1));
const num = (v: number, digits = 1) => (v >= 1000 ? v.toFixed(0) : v.toFixed(digits));
const ratio = (v: number | undefined) => (v === undefined ? "—" : `${v.toFixed(2)}×`);

function statusText(r: ResultRow): string {
  return cell(`${r.status}${r.error ? `: ${r.error.length > 160 ? `${r.error.slice(0, 160)}…` : r.error}` : ""}`);
}

function firstValue(r: ResultRow): string {
  if (r.firstLoss === undefined) return "—";
  const c = r.checkedAgainst;
  if (!c || r.firstLossRelError === undefined) return `${r.firstLoss.toPrecision(6)} (nothing to compare with)`;
  const err = c.by === "float64" ? "" : ` (${r.firstLossRelError.toExponential(1)})`;
  return `${r.firstLoss.toPrecision(6)} ${r.firstLossRelError <= c.tolerance ? `✓${err}` : `✗ (${c.by === "float64" ? "ref" : "median"} ${c.value.toPrecision(6)})`}`;
}

function workloadTable(report: BenchReport, w: WorkloadId, fma: number | undefined): string[] {
  const rows = report.results.filter((r) => r.workload === w);
  if (!rows.length) return [];
  const o = report.options;
  const spec = withBatch(WORKLOADS[w], o.batch, o.examples);
  const plan = planFor(o, w);
  const fit = spec.kind === "fit";
  const overridden = [
    ...(o.batch === undefined ? [] : [`batch overridden to ${spec.batch}`]),
    ...(fit && o.examples !== undefined ? [`examples overridden to ${spec.examples}`] : []),
  ];
  const unit = fit ? "epoch" : "step";
  const checkedBy =
    rows.find((r) => r.checkedAgainst)?.checkedAgainst?.by ?? (rows.some((r) => r.reference !== undefined) ? "float64" : "runners' median");
  const lines = [
    `### ${w} — ${WORKLOADS[w].title}${overridden.map((t) => ` — ${t}`).join("")} (${(flopsPerStep(spec) / 1e9).toFixed(2)} GFLOP/${unit})`,
    "",
    ...(fit
      ? [
          `Each step is one epoch of the library's fit: ${plan.warmup} warm-up epoch(s) after the first, then ${plan.steps} timed. ${checkedBy === "float64" ? "The first epoch is one batch, so its loss is checked against float64." : `No float64 reference for a whole Adam epoch: each first-epoch loss is compared with the runners' median (tolerance ${RUNNERS_TOLERANCE}).`}`,
          "",
        ]
      : []),
    `| runner | ms/${unit}, median (min–max) | ${unit}s | samples/s | GFLOP/s | % of GPU FMA ceiling | ÷ ${report.baseline} | first ${fit ? "epoch's loss" : "value"} vs ${checkedBy} | notes |`,
    "|---|---:|---:|---:|---:|---:|---:|---|---|",
  ];
  for (const r of rows) {
    const notes = cell([...(r.info?.notes ?? []), ...(r.status !== "ok" && r.summary ? [statusText(r)] : [])].join("; "));
    const s = r.summary;
    if (!s) {
      lines.push(`| ${r.runner} | ${statusText(r)} | | | | | | ${firstValue(r)} | ${notes} |`);
      continue;
    }
    const steps = r.stepsPlanned !== undefined && r.ms.length < plan.steps ? `${r.ms.length} of ${plan.steps}` : `${r.ms.length}`;
    const perSample = w === "W5" ? "—" : num(s.samplesPerSec, 0);
    // The ceiling is the GPU adapter's: a percentage of it means nothing for a CPU backend.
    const pct = fma && r.info?.adapter ? `${((100 * s.gflops) / fma).toFixed(1)}%` : "—";
    lines.push(
      `| ${r.runner} | ${ms(s.median)} (${ms(s.min)}–${ms(s.max)}) | ${steps} | ${perSample} | ${num(s.gflops, 2)} | ${pct} | ${ratio(s.ratio)} | ${firstValue(r)} | ${notes} |`,
    );
  }
  return [...lines, ""];
}

/** W4: time from nothing to the first loss in hand (setup + first step, compile included). */
function compileTable(report: BenchReport): string[] {
  const ws = (["W1", "W3"] as const).filter((w) => report.results.some((r) => r.workload === w));
  if (!ws.length) return [];
  const runners = [...new Set(report.results.filter((r) => ws.includes(r.workload as "W1" | "W3")).map((r) => r.runner))];
  const total = (r: ResultRow | undefined) =>
    r?.setupMs !== undefined && r.firstStepMs !== undefined ? r.setupMs + r.firstStepMs : undefined;
  const lines = [
    `### W4 — compile: setup + first step (ms), shader cache ${report.options.shaderCache}`,
    "",
    `| runner | ${ws.map((w) => `${w} setup | ${w} first step | ${w} total | ${w} ÷ ${report.baseline}`).join(" | ")} |`,
    `|---|${ws.map(() => "---:|---:|---:|---:").join("|")}|`,
  ];
  for (const name of runners) {
    const cells = ws.map((w) => {
      const r = report.results.find((x) => x.workload === w && x.runner === name);
      const base = total(report.results.find((x) => x.workload === w && x.runner === report.baseline));
      const t = total(r);
      if (t === undefined) return `${r ? statusText(r) : "—"} | | | `;
      return `${ms(r!.setupMs)} | ${ms(r!.firstStepMs)} | ${ms(t)} | ${base ? ratio(t / base) : "—"}`;
    });
    lines.push(`| ${name} | ${cells.join(" | ")} |`);
  }
  return [...lines, ""];
}

function ceilingLine(c: Ceilings | { error: string } | undefined): string[] {
  if (!c) return [];
  if ("error" in c) return [`Adapter ceilings: not measured (${cell(c.error)})`, ""];
  return [
    `Adapter ceilings (ceilings.ts): FMA ${num(c.fmaGflops)} GFLOP/s (${c.fmaShape}); copy kernel ${num(c.copyGBps)} GB/s (${c.copyShape}); copyBufferToBuffer ${num(c.copyBufferToBufferGBps)} GB/s — read+write traffic over ${c.copyBytes >> 20} MiB.`,
    "",
  ];
}

export function toMarkdown(report: BenchReport): string {
  const o = report.options;
  const fma = report.ceilings && "fmaGflops" in report.ceilings ? report.ceilings.fmaGflops : undefined;
  const load = (i: number) => report.load[i]?.avg.map((v) => v.toFixed(2)).join(" ") ?? "?";
  const out = [
    `## Kiln bench, ${report.date}`,
    "",
    `- adapter: ${report.adapter ?? "none reported"}`,
    `- host: ${report.host.cpus} × ${report.host.cpuModel}, ${report.host.memGiB} GiB, ${report.host.platform}, Node ${report.host.node}; load average (1/5/15 min) ${load(0)} at start, ${load(report.load.length - 1)} at end`,
    `- versions: ${Object.entries(report.versions)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ")}`,
    `- method: ${o.warmup} warm-up step(s), then up to ${o.steps} timed steps per runner (capped at ~${o.budgetS} s of steps, never below ${o.minSteps}), handed out ${o.chunk} at a time round robin; each step includes reading the loss (or the whole output) back to the host; Mesa shader cache ${report.shaderCache}`,
    `- ÷ ${report.baseline}: a runner's median ÷ ${report.baseline}'s (above 1: ${report.baseline} is faster); GFLOP/s counts 2 per multiply-add of the matmuls and convolutions (a training step: forward, weight and input gradients)`,
    "",
  ];
  for (const w of ["W1", "W2", "W3"] as const) out.push(...workloadTable(report, w, fma));
  out.push(...compileTable(report));
  out.push(...workloadTable(report, "W5", fma), ...ceilingLine(report.ceilings));
  out.push(...workloadTable(report, "W6", fma));
  out.push(...workloadTable(report, "W7", fma));
  return out.join("\n");
}
