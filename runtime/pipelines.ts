/** Kernels as the GPU runs them: pipelines compiled once per kernel shape (for the process), and
 *  the workgroup counts of a dispatch for a binding of the dims.
 *
 *  Kernels that differ only in their value names and comments are one pipeline: the compiler
 *  renders each kernel a second time with canonical names and blank comment lines (`Kernel.key`,
 *  compiler/wgsl/kernel-builder.ts), and the first kernel of a key compiles its own WGSL, as
 *  written, for all of them. An unrolled LSTM's 30 time steps repeat the same gate kernels over
 *  other values: its training step's 362 kernels are 90 pipelines, and a cold shader cache
 *  compiles 90. */
import { GpuError, KilnError } from "../src/ir/errors.ts";
import { evalSize, type DimEnv } from "../src/ir/shape.ts";
import type { Dispatch, Kernel } from "../compiler/program.ts";
import { checked, type Gpu } from "./device.ts";

/** Workgroup counts for a dispatch; undefined when there is nothing to do (an empty tensor). */
export function workgroups(k: Kernel, env: DimEnv, maxDim: number): readonly [number, number, number] | undefined {
  const d: Dispatch = k.dispatch;
  let c: [number, number, number];
  if (d.kind === "linear") {
    const groups = Math.ceil(evalSize(d.total, env) / d.perGroup);
    const x = Math.min(groups, maxDim);
    c = [x, x ? Math.ceil(groups / x) : 0, 1];
  } else {
    c = [d.x, d.y, d.z].map((a) => Math.ceil(evalSize(a.size, env) / a.per)) as [number, number, number];
  }
  if (c.some((n) => n === 0)) return undefined;
  if (c.some((n) => n > maxDim))
    throw new KilnError(
      `kernel ${k.name}: ${c.join("×")} workgroups with ${JSON.stringify(env)} exceed the device's ${maxDim} per dimension`,
    );
  return c;
}

/** Compile (or find) the pipeline of a kernel; WGSL errors name the kernel and the line. */
export async function pipeline(gpu: Gpu, k: Kernel): Promise<GPUComputePipeline> {
  let p = gpu.pipelines.get(k.key);
  if (!p) {
    p = compile(gpu, k);
    gpu.pipelines.set(k.key, p);
    p.catch(() => gpu.pipelines.delete(k.key));
  }
  return p;
}

async function compile(gpu: Gpu, k: Kernel): Promise<GPUComputePipeline> {
  const { device } = gpu;
  const title = `kernel ${k.name} (${k.wgsl.slice(3, k.wgsl.indexOf("\n"))})`;
  return checked(gpu, title, async () => {
    const module = device.createShaderModule({ label: k.name, code: k.wgsl });
    const info = await module.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === "error");
    if (errors.length) {
      const lines = k.wgsl.split("\n");
      throw new GpuError(
        `${title}: WGSL does not compile:\n${errors.map((m) => `  ${m.lineNum}:${m.linePos}: ${m.message}\n    ${lines[m.lineNum - 1] ?? ""}`).join("\n")}`,
      );
    }
    const entries: GPUBindGroupLayoutEntry[] = k.bindings.map((b, i) => ({
      binding: i,
      visibility: 4 /* COMPUTE */,
      buffer: { type: b.access === "read" ? "read-only-storage" : "storage" },
    }));
    if (k.uniforms.length) entries.push({ binding: k.bindings.length, visibility: 4, buffer: { type: "uniform" } });
    const layout = device.createPipelineLayout({ bindGroupLayouts: [device.createBindGroupLayout({ entries })] });
    try {
      return await device.createComputePipelineAsync({ label: k.name, layout, compute: { module, entryPoint: "main" } });
    } catch (e) {
      throw new GpuError(`${title}: ${(e as Error).message}`);
    }
  });
}
