/** Kernels as the GPU runs them: pipelines compiled once per kernel shape (for the process), and
 *  the workgroup counts of a dispatch for a binding of the dims.
 *
 *  Kernels that differ only in their value names and comments are one pipeline: the module
 *  compiled is the kernel's WGSL with comment lines blanked (line numbers kept for error
 *  messages) and each `v<id>` renamed `vv<n>` in order of first use — the bindings' order, as
 *  they are declared first. An unrolled LSTM's 30 time steps repeat the same gate kernels over
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

/** Compile (or find) the pipeline of a kernel and hold it until `release`; WGSL errors name the
 *  kernel and the line. */
export function pipeline(gpu: Gpu, k: Kernel): Promise<GPUComputePipeline> {
  const code = canonicalWgsl(k.wgsl);
  let p = gpu.pipelines.get(code);
  if (p)
    gpu.pipelines.delete(code); // re-inserted below: the map's order is the order of last use
  else {
    const title = `kernel ${k.name} (${k.wgsl.slice(3, k.wgsl.indexOf("\n"))})`;
    p = checked(gpu, title, () => compileKernel(gpu.device, k, code, title, k.wgsl));
    p.catch(() => {
      if (gpu.pipelines.get(code) === p) gpu.pipelines.delete(code);
    });
  }
  gpu.pipelines.set(code, p);
  const h = holdersOf(gpu);
  h.set(code, (h.get(code) ?? 0) + 1);
  return p;
}

/** Let go of the pipelines of `kernels` (one `pipeline` call each); drop idle ones past MAX_IDLE. */
export function release(gpu: Gpu, kernels: readonly Kernel[]): void {
  const h = holdersOf(gpu);
  for (const k of kernels) {
    const code = canonicalWgsl(k.wgsl);
    const n = (h.get(code) ?? 0) - 1;
    if (n > 0) h.set(code, n);
    else h.delete(code);
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

/** The WGSL a kernel is compiled as (see the header): same text, same pipeline. */
export function canonicalWgsl(wgsl: string): string {
  const names = new Map<string, string>();
  return wgsl
    .split("\n")
    .map((l) => (l.trimStart().startsWith("//") ? "" : l))
    .join("\n")
    .replace(/\bv\d+\b/g, (v) => names.get(v) ?? (names.set(v, `vv${names.size}`), `vv${names.size - 1}`));
}

/** How many cached pipelines some executable holds, and how many are idle. */
export function cachedPipelines(gpu: Gpu): { held: number; idle: number } {
  const h = holdersOf(gpu);
  let held = 0;
  for (const code of gpu.pipelines.keys()) if (h.has(code)) held++;
  return { held, idle: gpu.pipelines.size - held };
}
