/** Kernels as the GPU runs them: pipelines compiled once per kernel shape (for the process), and
 *  the workgroup counts of a dispatch for a binding of the dims.
 *
 *  Kernels that differ only in their value names and comments are one pipeline: the compiler
 *  renders each kernel a second time with canonical names and blank comment lines (`Kernel.key`,
 *  compiler/wgsl/kernel-builder.ts), and the first kernel of a key compiles its own WGSL, as
 *  written, for all of them. An unrolled LSTM's 30 time steps repeat the same gate kernels over
 *  other values: its training step's 362 kernels are 90 pipelines, and a cold shader cache
 *  compiles 90.
 *
 *  The cache (Gpu.pipelines) is bounded: an executable holds its pipelines (acquire) until it is
 *  disposed (release); of the pipelines no executable holds, the MAX_IDLE used last are kept for
 *  the next load of the same kernels and older ones are dropped (WebGPU frees a pipeline with its
 *  last reference). The dispatch rule and the compilation itself are runtime/executor.ts's. */
import type { DimEnv } from "../src/ir/shape.ts";
import type { Kernel } from "../compiler/program.ts";
import { checked, type Gpu } from "./device.ts";
import { compileKernel, workgroupCounts, type Workgroups } from "./executor.ts";

/** Pipelines no executable holds that stay cached. */
export const MAX_IDLE = 256;

/** Workgroup counts for a dispatch; undefined when there is nothing to do (an empty tensor). */
export function workgroups(k: Kernel, env: DimEnv, maxDim: number): Workgroups | undefined {
  return workgroupCounts(k.dispatch, env, maxDim, `kernel ${k.name}`);
}

/** Holders per cached pipeline, by device. */
const holders = new WeakMap<Gpu, Map<string, number>>();
const holdersOf = (gpu: Gpu) => holders.get(gpu) ?? (holders.set(gpu, new Map()), holders.get(gpu)!);

/** Compile (or find, by Kernel.key) the pipeline of a kernel and hold it until `release`; WGSL
 *  errors name the kernel and the line. */
export function pipeline(gpu: Gpu, k: Kernel): Promise<GPUComputePipeline> {
  const { key } = k;
  let p = gpu.pipelines.get(key);
  if (p)
    gpu.pipelines.delete(key); // re-inserted below: the map's order is the order of last use
  else {
    const title = `kernel ${k.name} (${k.wgsl.slice(3, k.wgsl.indexOf("\n"))})`;
    p = checked(gpu, title, () => compileKernel(gpu.device, k, k.wgsl, title));
    p.catch(() => {
      if (gpu.pipelines.get(key) === p) gpu.pipelines.delete(key);
    });
  }
  gpu.pipelines.set(key, p);
  const h = holdersOf(gpu);
  h.set(key, (h.get(key) ?? 0) + 1);
  return p;
}

/** Let go of the pipelines of `kernels` (one `pipeline` call each); drop idle ones past MAX_IDLE. */
export function release(gpu: Gpu, kernels: readonly Kernel[]): void {
  const h = holdersOf(gpu);
  for (const k of kernels) {
    const n = (h.get(k.key) ?? 0) - 1;
    if (n > 0) h.set(k.key, n);
    else h.delete(k.key);
  }
  let idle = 0;
  for (const code of gpu.pipelines.keys()) if (!h.has(code)) idle++;
  for (const code of gpu.pipelines.keys()) {
    if (idle <= MAX_IDLE) break;
    if (h.has(code)) continue;
    gpu.pipelines.delete(code);
    idle--;
  }
}

/** How many cached pipelines some executable holds, and how many are idle. */
export function cachedPipelines(gpu: Gpu): { held: number; idle: number } {
  const h = holdersOf(gpu);
  let held = 0;
  for (const code of gpu.pipelines.keys()) if (h.has(code)) held++;
  return { held, idle: gpu.pipelines.size - held };
}
