/** Shared by the GPU suites: compile and run a graph on Dawn, compare with the float64 oracle,
 *  and print the graph as text IR when they disagree. */
import { afterAll } from "vitest";
import { compile, type CompileOptions } from "../../compiler/pipeline.ts";
import { CPU_TARGET, GPU_TARGET, type Target, withFeatures } from "../../compiler/target.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import type { Graph } from "../../src/ir/types.ts";
import { printGraph } from "../../src/ir/print.ts";
import { acquireGpu, releaseGpu } from "../../runtime/device.ts";
import { Executable, type OutputTensor } from "../../runtime/execute.ts";

/** GPU suites call this at top level: the device is released when the file's tests end. */
export function useGpu(): void {
  afterAll(() => releaseGpu());
}

/** Resolves to the adapter's description, or fails loudly: with no adapter these suites cannot
 *  check anything, and under CI the driver is installed, so a missing one is an error. */
export async function gpuOrFail(): Promise<string> {
  return (await acquireGpu()).adapter;
}

/** The targets whose kernels differ for GEMMs (matmul, conv2d and its gradients): the default
 *  GPU target (workgroup-tiled) and the CPU target (register-blocked), and each with its
 *  subgroup variant forced on (compiler/wgsl/kernels/gemm-subgroup.ts; lavapipe has the
 *  feature), all run on this Dawn. `share` scales a property's runs: the full count on the
 *  default, a third on the others. */
export const GEMM_TARGETS: readonly { readonly name: string; readonly target: Target; readonly share: number }[] = [
  { name: "gpu target (workgroup-tiled GEMM)", target: GPU_TARGET, share: 1 },
  { name: "cpu target (register-blocked GEMM)", target: CPU_TARGET, share: 1 / 3 },
  { name: "gpu target, subgroups (subgroup-shuffle tiled GEMM)", target: withFeatures(GPU_TARGET, ["subgroups"]), share: 1 / 3 },
  {
    name: "cpu target, subgroups (subgroup-broadcast register GEMM)",
    // variantMinMacs 0: the grouped and subgroup forms even at the properties' small sizes.
    target: withFeatures({ ...CPU_TARGET, subgroupGemm: true, variantMinMacs: 0 }, ["subgroups"]),
    share: 1 / 3,
  },
];

/** `n` runs scaled by a target's share, at least 2. */
export const runsFor = (n: number, share: number): number => Math.max(2, Math.round(n * share));

export async function runGpu(
  graph: Graph,
  inputs: Readonly<Record<string, HostTensor>>,
  opts?: CompileOptions,
): Promise<Record<string, OutputTensor>> {
  const exe = await Executable.load(compile(graph, { verifyEach: true, ...opts }));
  try {
    return await exe.run(inputs);
  } finally {
    exe.dispose();
  }
}

export interface Tolerance {
  /** |gpu − ref| ≤ atol + rtol·|ref| per element. */
  readonly atol: number;
  readonly rtol: number;
}

/** f32 arithmetic against float64: a few ulps for plain arithmetic. */
export const F32_TOL: Tolerance = { atol: 1e-6, rtol: 1e-5 };

/** Describe the first mismatch, or undefined when every output agrees. NaN must match NaN. */
export function mismatch(
  graph: Graph,
  gpu: Record<string, OutputTensor>,
  ref: ReturnType<typeof interpret>,
  tol: Tolerance,
): string | undefined {
  for (const [name, r] of Object.entries(ref)) {
    const g = gpu[name];
    if (!g) return `output ${name} missing`;
    if (g.shape.join() !== r.shape.join()) return `output ${name}: shape [${g.shape}] vs reference [${r.shape}]`;
    for (let i = 0; i < r.data.length; i++) {
      const a = g.data[i];
      const b = r.data[i];
      // An infinite reference must be met exactly: rtol·|inf| would accept anything.
      const ok = Number.isNaN(b)
        ? Number.isNaN(a)
        : a === b || (Number.isFinite(b) && Math.abs(a - b) <= tol.atol + tol.rtol * Math.abs(b));
      if (!ok) return `output ${name}[${i}]: gpu ${a}, reference ${b}\n${printGraph(graph)}`;
    }
  }
  return undefined;
}

/** Run on Dawn and on the reference; throw with the graph in text IR on any mismatch. */
export async function expectMatchesReference(
  graph: Graph,
  inputs: Readonly<Record<string, HostTensor>>,
  tol: Tolerance = F32_TOL,
  opts?: CompileOptions,
): Promise<void> {
  const ref = interpret(graph, inputs);
  const gpu = await runGpu(graph, inputs, opts);
  const m = mismatch(graph, gpu, ref, tol);
  if (m) throw new Error(m);
}
