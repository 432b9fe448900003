/** Compiling a program's kernels on a second device while the first runs them, where that helps.
 *
 *  llvmpipe (lavapipe) turns a pipeline into machine code with LLVM at its first dispatch, on the
 *  device's one queue thread: a cold first step of LeNet-5's training (35 kernels) spends
 *  ≈ 10–18 s of CPU there, one kernel after another, on one core. What it compiles goes into
 *  Mesa's on-disk shader cache, which every device of the process reads. So while the first run
 *  compiles its kernels in program order, a second device (its own queue thread, the other core)
 *  compiles them from the last one back, dispatching each once over 16-byte stand-in buffers; as
 *  the first run reaches a kernel the helper has done, it finds the machine code in the cache.
 *  Measured on lavapipe, 2 cores, cold cache: W3's first step 31.0 → 19.6 s (at load ≈ 9).
 *
 *    first run:   k0 k1 k2 k3 … → (cache hits) …
 *    helper:          … ← k32 k33 k34
 *
 *  Only where Gpu.sharedJitCache says so (llvmpipe, shader cache on) and for MIN_KERNELS new
 *  kernels or more; KILN_JIT_HELPER=0 turns it off. The helper's own results are never used, and a failure of it (a WebGPU error on its
 *  device) only ends the warming: the run compiles what is left itself. The result says how far
 *  it got and why it stopped. */
import type { Kernel } from "../compiler/program.ts";
import { besideGpu, settle, type Gpu } from "./device.ts";
import { compileKernel, scoped, USAGE } from "./executor.ts";

export interface WarmResult {
  /** Distinct kernels the helper dispatched, of those it was given. */
  readonly compiled: number;
  readonly of: number;
  /** Why it stopped early, if it failed. */
  readonly error?: string;
}

export interface Warming {
  /** Stop after the kernel under way (the run has compiled everything it needs). */
  stop(): void;
  readonly done: Promise<WarmResult>;
}

/** Fewer distinct new kernels than this compile in well under a second: not worth a device. */
export const MIN_KERNELS = 4;

/** Start compiling `kernels` (those new to this process) on a helper device, last first; none
 *  when the driver gains nothing from it or there are fewer than MIN_KERNELS distinct kernels. */
export function warmJit(gpu: Gpu, kernels: readonly Kernel[]): Warming | undefined {
  if (!gpu.sharedJitCache || process.env.KILN_JIT_HELPER === "0") return undefined;
  const seen = new Set<string>();
  const todo = [...kernels].reverse().filter((k) => !seen.has(k.key) && Boolean(seen.add(k.key)));
  if (todo.length < MIN_KERNELS) return undefined;
  let stopped = false;
  let compiled = 0;
  const done = besideGpu(gpu, async (device) => {
    for (const k of todo) {
      if (stopped) return;
      const p = await settle(compileKernel(device, k, k.wgsl, `warming kernel ${k.name}`));
      if (stopped) return;
      await scoped(device, `warming kernel ${k.name}`, async () => {
        const buffers = k.bindings.map(() => device.createBuffer({ size: 16, usage: USAGE.STORAGE }));
        if (k.uniforms.length) {
          // Every dim 1 (a valid binding of any symbolic dim): loops over them end.
          const dims = device.createBuffer({ size: Math.ceil(k.uniforms.length / 4) * 16, usage: USAGE.UNIFORM, mappedAtCreation: true });
          new Uint32Array(dims.getMappedRange()).fill(1);
          dims.unmap();
          buffers.push(dims);
        }
        const group = device.createBindGroup({
          layout: p.getBindGroupLayout(0),
          entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
        });
        const enc = device.createCommandEncoder();
        const pass = enc.beginComputePass();
        pass.setPipeline(p);
        pass.setBindGroup(0, group);
        pass.dispatchWorkgroups(1);
        pass.end();
        device.queue.submit([enc.finish()]);
        await settle(device.queue.onSubmittedWorkDone());
        for (const b of buffers) b.destroy();
      });
      compiled++;
    }
  }).then(
    (): WarmResult => ({ compiled, of: todo.length }),
    (e): WarmResult => ({ compiled, of: todo.length, error: e instanceof Error ? e.message : String(e) }),
  );
  return {
    stop: () => {
      stopped = true;
    },
    done,
  };
}
