/** The runners the bench knows. Each is a module under runners/ that speaks protocol.ts, started
 *  as `node --import tsx runners/<module> <...args>` in its own process per workload. A module
 *  that does not exist yet is reported as "not built" rather than failing the run. */
import type { WorkloadId } from "./workloads.ts";

export interface RunnerEntry {
  readonly id: string;
  /** File under runnersDir (default test/bench/runners/). */
  readonly module: string;
  readonly args: readonly string[];
  readonly workloads: readonly WorkloadId[];
  /** In the CI smoke run (W1, a few steps). */
  readonly smoke?: boolean;
  /** Left out of a default run, with the reason shown in the table; naming the runner in
   *  --runners includes it. */
  readonly optIn?: string;
  /** Another checkout whose runners/ this runner's module is taken from (a paired before/after
   *  run: both Kilns interleaved round robin in one bench run); "" when it is not set. */
  readonly checkout?: string;
}

const ALL: readonly WorkloadId[] = ["W1", "W2", "W3", "W5", "W6"];

const BASE = process.env.KILN_BENCH_BASE;

export const RUNNERS: readonly RunnerEntry[] = [
  { id: "kiln", module: "kiln.ts", args: [], workloads: [...ALL, "W7"], smoke: true },
  {
    id: "kiln-base",
    module: "kiln.ts",
    args: [],
    workloads: [...ALL, "W7"],
    optIn: "Kiln of the checkout KILN_BENCH_BASE names, for a paired before/after run",
    checkout: BASE ?? "",
  },
  {
    id: "kiln-mixed",
    module: "kiln.ts",
    args: ["mixed"],
    workloads: [...ALL, "W7"],
    optIn: 'Kiln with precision "mixed" (f16 activations behind shader-f16), paired with kiln in one run',
  },
  // ONNX files only: W2 as Kiln exports it, W7 as the bench writes it.
  { id: "onnxruntime", module: "onnxruntime.ts", args: [], workloads: ["W2", "W7"] },
  { id: "tfjs-webgpu", module: "tfjs.ts", args: ["webgpu"], workloads: ALL, smoke: true },
  { id: "tfjs-wasm", module: "tfjs.ts", args: ["wasm"], workloads: ALL, smoke: true },
  { id: "tfjs-cpu", module: "tfjs.ts", args: ["cpu"], workloads: ALL },
  { id: "jax-webgpu", module: "jax.ts", args: ["webgpu"], workloads: ALL },
  { id: "jax-wasm", module: "jax.ts", args: ["wasm"], workloads: ALL, smoke: true },
  {
    id: "jax-cpu",
    module: "jax.ts",
    args: ["cpu"],
    workloads: ALL,
    // jax-js's README: the cpu backend is "slow, interpreted JS, only meant for debugging".
    optIn: "interpreted JS, ~55 s per W1 step on 2 cores; --runners jax-cpu times it",
  },
];

/** The ratio column divides by this runner's median. */
export const BASELINE = "kiln";
