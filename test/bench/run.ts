/** `npm run bench`: Kiln against TensorFlow.js, jax-js and ONNX Runtime on the same machine and
 *  Dawn adapter.
 *  Prints markdown tables on stdout, progress on stderr, and writes everything as JSON.
 *    npm run bench                         the full run (W1–W7, every default runner)
 *    npm run bench -- --smoke              the CI smoke: W1, smoke runners, 1 + 3 steps
 *    npm run bench -- --workloads W1,W3 --runners kiln,tfjs-webgpu --steps 30
 *    npm run bench -- --workloads W6       one epoch of fit per step: 1 warm-up + 3 timed epochs
 *    npm run bench -- --workloads W2,W7 --runners kiln,onnxruntime   ONNX files in Kiln and ORT
 *  Runners and the protocol they speak: registry.ts, protocol.ts. */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { Command, InvalidArgumentError } from "commander";
import { ROOT, runBench, type BenchOptions } from "./orchestrate.ts";
import { BASELINE, RUNNERS } from "./registry.ts";
import { buildReport, toMarkdown } from "./report.ts";
import { WORKLOAD_IDS, type WorkloadId } from "./workloads.ts";

const list = (v: string) =>
  v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
const atLeast = (min: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`must be a whole number ≥ ${min}`);
  return n;
};
const workloads = (v: string): WorkloadId[] => {
  const ws = list(v)
    .map((w) => (w === "W4" ? ["W1", "W3"] : [w]))
    .flat();
  const bad = ws.filter((w) => !(WORKLOAD_IDS as readonly string[]).includes(w));
  if (bad.length) throw new InvalidArgumentError(`unknown workload(s) ${bad.join(", ")}; known: W1 W2 W3 W4 (= W1 + W3 setup) W5 W6 W7`);
  return [...new Set(ws)] as WorkloadId[];
};

const program = new Command("bench")
  .description("Time Kiln, TensorFlow.js, jax-js and ONNX Runtime on the same workloads; see test/bench/run.ts")
  .option("--smoke", "CI smoke: W1 with the smoke runners, 1 warm-up + 3 steps")
  .option("--workloads <list>", `comma-separated, from ${WORKLOAD_IDS.join(",")} (W4 comes from W1 and W3)`, workloads)
  .option("--runners <list>", `comma-separated, from ${RUNNERS.map((r) => r.id).join(",")}`, list)
  .option("--steps <n>", "timed steps per runner and workload (W6: 3 epochs unless set)", atLeast(1), 20)
  .option("--warmup <n>", "untimed steps after the first (W6: 1 epoch unless set)", atLeast(0), 2)
  .option("--chunk <n>", "steps per turn in the round robin (W6: 1 unless set)", atLeast(1), 4)
  .option("--budget <s>", "cap on one runner's timed steps per workload, in seconds", atLeast(0), 120)
  .option("--timeout <s>", "deadline for a runner's setup reply (first step and compile included)", atLeast(1), 300)
  .option("--steps-timeout <s>", "deadline for a chunk of steps, plus 5× its expected time", atLeast(1), 120)
  .option("--batch <n>", "override every workload's batch size", atLeast(1))
  .option("--examples <n>", "override W6's examples per epoch", atLeast(1))
  .option("--warm-shader-cache", "reuse .cache/bench/mesa-shader instead of a cold cache per runner")
  .option("--baseline <id>", "runner the ratio column divides by", BASELINE)
  .option("--json <file>", "where to write the JSON report", join(ROOT, ".cache/bench/latest.json"))
  .parse();

const o = program.opts<{
  smoke?: boolean;
  workloads?: WorkloadId[];
  runners?: string[];
  steps: number;
  warmup: number;
  chunk: number;
  budget: number;
  timeout: number;
  stepsTimeout: number;
  batch?: number;
  examples?: number;
  warmShaderCache?: boolean;
  baseline: string;
  json: string;
}>();
const explicit = (name: string) => program.getOptionValueSource(name) === "cli";

const opts: BenchOptions = {
  workloads: o.workloads ?? (o.smoke ? ["W1"] : ["W1", "W2", "W3", "W5", "W6", "W7"]),
  runners: o.runners ?? (o.smoke ? RUNNERS.filter((r) => r.smoke).map((r) => r.id) : undefined),
  warmup: o.smoke && !explicit("warmup") ? 1 : o.warmup,
  steps: o.smoke && !explicit("steps") ? 3 : o.steps,
  chunk: o.smoke && !explicit("chunk") ? 1 : o.chunk,
  budgetS: o.budget,
  minSteps: 3,
  timeoutS: o.smoke && !explicit("timeout") ? 120 : o.timeout,
  stepsTimeoutS: o.stepsTimeout,
  batch: o.batch,
  examples: o.examples,
  fixed: (["warmup", "steps", "chunk"] as const).filter((k) => o.smoke || explicit(k)),
  shaderCache: o.warmShaderCache ? "warm" : "cold",
  log: (line) => process.stderr.write(`${line}\n`),
};

const run = await runBench(opts);
const report = buildReport(run, opts, o.baseline);
const jsonPath = resolve(o.json);
mkdirSync(dirname(jsonPath), { recursive: true });
writeFileSync(jsonPath, `${JSON.stringify(report, null, 1)}\n`);
process.stdout.write(`${toMarkdown(report)}\n`);
process.stderr.write(`JSON: ${jsonPath}\n`);
