/** The executor core: what runs a compiled program on a GPUDevice, for Kiln's Executable
 *  (./execute.ts, a bundle held in memory) and for every generated bundle loader
 *  (./bundle-runtime.ts), which ships this very file as text (compiler/bundle/loader.ts). So it
 *  imports nothing but types and the dependency-free error classes, and gets the device passed in.
 *
 *    plan (formats/bundle-manifest.ts Plan): buffers, where each value lives in them, kernels with
 *          bindings and dispatch sizes as data over the symbolic dims, planned at `plan.dims`.
 *    create: every buffer (or the caller's own: resident state and constants that outlive one
 *          plan), the dims uniforms, a staging buffer per output and every bind group, made once.
 *    run:  inside error scopes, as one submission: the dims uniforms when the dims changed, the
 *          inputs, one compute pass of every kernel, the outputs into staging, then each state
 *          input's update copied into it (unless written in place); outputs mapped back. A GPU
 *          error is replayed kernel by kernel to name the kernel.
 *  Calls on one executor are serialized (Serial): they share its buffers. */
import { GpuError, KilnError } from "../src/ir/kiln-error.ts";
import {
  dispatchCounts,
  type BundleDim,
  type BundleDtype,
  type DispatchData,
  type KernelData,
  type Plan,
  valueBytes,
} from "../formats/bundle-manifest.ts";

export type HostArray = Float32Array | Int32Array | Uint32Array | Uint8Array;
/** What a buffer holds: every dtype in 32 bits (bool as u32). */
export type StorageArray = Float32Array | Int32Array | Uint32Array;
export type Workgroups = readonly [number, number, number];

export const USAGE = { STORAGE: 0x80, COPY_DST: 0x8, COPY_SRC: 0x4, MAP_READ: 0x1, UNIFORM: 0x40 } as const;

export const numelAt = (shape: readonly BundleDim[], env: Readonly<Record<string, number>>): number =>
  shape.reduce<number>((a, d) => a * (typeof d === "number" ? d : env[d]), 1);

/** Workgroup counts of a dispatch for a binding of the dims; undefined when there is nothing to
 *  do (an empty tensor). A linear dispatch is folded over x and y past the per-dimension limit
 *  (the kernel rebuilds its index from workgroup_id and num_workgroups). */
export function workgroupCounts(
  d: DispatchData,
  env: Readonly<Record<string, number>>,
  maxDim: number,
  what: string,
): Workgroups | undefined {
  const c = dispatchCounts(d, env, maxDim);
  if (c.some((n) => n === 0)) return undefined;
  if (c.some((n) => n > maxDim))
    throw new KilnError(`${what}: ${c.join("×")} workgroups with ${JSON.stringify(env)} exceed the device's ${maxDim} per dimension`);
  return c;
}

const SCOPES: readonly GPUErrorFilter[] = ["validation", "out-of-memory", "internal"];

/** Run `fn` inside error scopes; a WebGPU error raised by it is thrown as a GpuError naming `what`. */
export async function scoped<T>(device: GPUDevice, what: string, fn: () => T | Promise<T>): Promise<T> {
  for (const s of SCOPES) device.pushErrorScope(s);
  let result: T | undefined;
  let thrown: unknown;
  try {
    result = await fn();
  } catch (e) {
    thrown = e;
  }
  const errors = [];
  for (const s of [...SCOPES].reverse()) {
    const e = await device.popErrorScope();
    if (e) errors.push(`${s}: ${e.message}`);
  }
  // A GpuError thrown inside already explains the scope's error (e.g. WGSL compile messages).
  if (thrown instanceof GpuError) throw thrown;
  if (errors.length) throw new GpuError(`${what}: ${errors.join("; ")}`);
  if (thrown !== undefined) throw thrown;
  return result as T;
}

/** Calls run one after another, in the order they were made, whether earlier ones fail or not. */
export class Serial {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const r = this.tail.then(fn);
    this.tail = r.catch(() => undefined);
    return r;
  }
}

/** Compile a kernel's WGSL into a pipeline whose layout its bindings' access modes decide;
 *  errors are GpuErrors titled `title`, WGSL ones with the line of `source` (what was written). */
export function compileKernel(
  device: GPUDevice,
  k: Pick<KernelData, "name" | "bindings" | "uniforms">,
  code: string,
  title: string,
  source = code,
): Promise<GPUComputePipeline> {
  return scoped(device, title, async () => {
    const module = device.createShaderModule({ label: k.name, code });
    const errors = (await module.getCompilationInfo()).messages.filter((m) => m.type === "error");
    if (errors.length) {
      const lines = source.split("\n");
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

/** Buffer contents (32 bits per element) → a host array of `dtype` (bool as Uint8Array). */
export function fromBits(dtype: BundleDtype, bytes: ArrayBuffer, n: number): HostArray {
  switch (dtype) {
    case "f32":
      return new Float32Array(bytes.slice(0, n * 4));
    case "i32":
      return new Int32Array(bytes.slice(0, n * 4));
    case "u32":
      return new Uint32Array(bytes.slice(0, n * 4));
    case "bool":
      return Uint8Array.from(new Uint32Array(bytes, 0, n));
  }
}

/** How the executor makes and frees buffers, names what it does and scopes GPU work. */
export interface ExecutorHooks {
  /** "kiln bundle: " for a bundle; "" for Kiln. */
  readonly prefix: string;
  createBuffer(label: string, bytes: number, usage: number): GPUBuffer;
  destroyBuffer(b: GPUBuffer): void;
  /** Error scopes around GPU work (Kiln's adds the device's health). */
  scope<T>(what: string, fn: () => T | Promise<T>): Promise<T>;
  /** Kernel i, for a GPU error found by replaying them one by one. */
  describe(i: number): string;
  /** Wait for a promise that resolves when GPU work is done (a readback's mapAsync): by default
   *  the promise itself; Kiln's in Node sleeps between the binding's polls (device.ts settle). */
  wait?<T>(p: Promise<T>): Promise<T>;
}

/** Default hooks over a bare device (a bundle's). */
export function deviceHooks(device: GPUDevice, prefix: string, describe: (i: number) => string): ExecutorHooks {
  return {
    prefix,
    createBuffer: (label, bytes, usage) => device.createBuffer({ label, size: Math.max(4, Math.ceil(bytes / 4) * 4), usage }),
    destroyBuffer: (b) => b.destroy(),
    scope: (what, fn) => scoped(device, `${prefix}${what}`, fn),
    describe,
  };
}

const waitFor = <T>(hooks: ExecutorHooks, p: Promise<T>): Promise<T> => (hooks.wait ? hooks.wait(p) : p);

/** Copy `bytes` of `buffer` back to the host (its own submission). */
export async function readBack(
  device: GPUDevice,
  hooks: ExecutorHooks,
  what: string,
  buffer: GPUBuffer,
  bytes: number,
  dtype: BundleDtype,
): Promise<HostArray> {
  const st = hooks.createBuffer(`read ${what}`, bytes, USAGE.MAP_READ | USAGE.COPY_DST);
  try {
    await hooks.scope(`reading ${what}`, () => {
      const enc = device.createCommandEncoder();
      if (bytes) enc.copyBufferToBuffer(buffer, 0, st, 0, bytes);
      device.queue.submit([enc.finish()]);
    });
    await waitFor(hooks, st.mapAsync(USAGE.MAP_READ));
    const data = fromBits(dtype, st.getMappedRange(), bytes / 4);
    st.unmap();
    return data;
  } finally {
    hooks.destroyBuffer(st);
  }
}

export interface ExecutorInit {
  /** Buffers the caller owns, by index in plan.buffers (never destroyed here). */
  readonly provided?: ReadonlyMap<number, GPUBuffer>;
  /** The initial value of a state buffer the executor makes (a bundle's weights). */
  stateData?(name: string): StorageArray;
}

/** One plan's buffers, uniforms, staging and bind groups over compiled pipelines. */
export class Executor {
  private readonly own: GPUBuffer[] = [];
  private readonly buffers: GPUBuffer[] = [];
  private readonly where = new Map<number, { readonly buffer: GPUBuffer; readonly offset: number }>();
  private readonly uniforms: (GPUBuffer | undefined)[] = [];
  private readonly staging = new Map<string, GPUBuffer>();
  private readonly groups: GPUBindGroup[] = [];
  private env: string | undefined;
  private counts: (Workgroups | undefined)[] = [];
  private disposed = false;

  private constructor(
    readonly device: GPUDevice,
    readonly plan: Plan,
    private readonly pipelines: readonly GPUComputePipeline[],
    private readonly hooks: ExecutorHooks,
  ) {}

  /** Make every buffer and bind group of `plan` (checked by the caller: validateManifest). */
  static async create(
    device: GPUDevice,
    plan: Plan,
    pipelines: readonly GPUComputePipeline[],
    hooks: ExecutorHooks,
    init: ExecutorInit = {},
  ): Promise<Executor> {
    const x = new Executor(device, plan, pipelines, hooks);
    const { STORAGE, COPY_DST, COPY_SRC, MAP_READ, UNIFORM } = USAGE;
    const make = (label: string, bytes: number, usage: number) => {
      const b = hooks.createBuffer(label, bytes, usage);
      x.own.push(b);
      return b;
    };
    try {
      await hooks.scope("allocating buffers", () => {
        plan.buffers.forEach((b, i) => {
          const given = init.provided?.get(i);
          const buf = given ?? make(b.label, b.bytes, STORAGE | COPY_DST | COPY_SRC);
          x.buffers.push(buf);
          if (given) return;
          if (b.kind === "state") device.queue.writeBuffer(buf, 0, init.stateData!(b.state!));
          else if (b.kind === "const" && b.data!.length) {
            const T = b.dtype === "f32" ? Float32Array : b.dtype === "i32" ? Int32Array : Uint32Array;
            device.queue.writeBuffer(buf, 0, T.from(b.data!));
          }
        });
        for (const v of plan.values) x.where.set(v.id, { buffer: x.buffers[v.buffer], offset: v.offset });
        for (const k of plan.kernels)
          x.uniforms.push(
            k.uniforms.length ? make(`${k.name} dims`, Math.ceil(k.uniforms.length / 4) * 16, UNIFORM | COPY_DST) : undefined,
          );
        for (const o of plan.outputs) x.staging.set(o.name, make(`out ${o.name}`, numelAt(o.shape, plan.dims) * 4, MAP_READ | COPY_DST));
      });
      const bytes = new Map(plan.values.map((v) => [v.id, valueBytes(v, plan.dims)]));
      await hooks.scope("binding buffers", () => {
        plan.kernels.forEach((k, i) => {
          const entries: GPUBindGroupEntry[] = k.bindings.map((b, j) => {
            const at = x.where.get(b.value)!;
            // Bound at the plan's dims (an empty tensor still binds 4 bytes: a binding may not be empty).
            return { binding: j, resource: { buffer: at.buffer, offset: at.offset, size: bytes.get(b.value)! } };
          });
          if (x.uniforms[i]) entries.push({ binding: k.bindings.length, resource: { buffer: x.uniforms[i]! } });
          x.groups.push(device.createBindGroup({ label: k.name, layout: pipelines[i].getBindGroupLayout(0), entries }));
        });
      });
    } catch (e) {
      x.dispose();
      throw e;
    }
    return x;
  }

  /** The GPU buffer of a state input (plan.state). */
  stateBuffer(name: string): GPUBuffer {
    return this.buffers[this.plan.state.find((s) => s.name === name)!.buffer];
  }

  /** Encode `kernels` (indices into plan.kernels, at the dims of the last run) into one compute
   *  pass and submit it; with `outputs`, then copy them into staging and each state update into
   *  its buffer. Also used alone (no copies) to replay or time kernels one by one. */
  submit(kernels: readonly number[], outputs?: readonly Plan["outputs"][number][], env?: Readonly<Record<string, number>>): void {
    const { device, plan } = this;
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (const i of kernels) {
      const c = this.counts[i];
      if (!c) continue;
      pass.setPipeline(this.pipelines[i]);
      pass.setBindGroup(0, this.groups[i]);
      pass.dispatchWorkgroups(...c);
    }
    pass.end();
    if (outputs) {
      // Outputs first: they are this run's values, even one that is a state input.
      for (const o of outputs) {
        const at = this.where.get(o.value)!;
        const n = numelAt(o.shape, env!) * 4;
        if (n) enc.copyBufferToBuffer(at.buffer, at.offset, this.staging.get(o.name)!, 0, n);
      }
      for (const s of plan.state) {
        if (s.update === null) continue;
        const at = this.where.get(s.update)!;
        const to = this.buffers[s.buffer];
        if (at.buffer !== to) enc.copyBufferToBuffer(at.buffer, at.offset, to, 0, numelAt(s.shape, {}) * 4);
      }
    }
    device.queue.submit([enc.finish()]);
  }

  /** Bind the dims `env` (workgroup counts, the dims uniforms when they changed) and upload
   *  `inputs`: what a run does before its kernels (and what timing them alone needs first). */
  async prepare(env: Readonly<Record<string, number>>, inputs: ReadonlyMap<string, StorageArray>): Promise<void> {
    const { device, plan, hooks } = this;
    const key = JSON.stringify(env);
    if (key !== this.env) {
      this.counts = plan.kernels.map((k) =>
        workgroupCounts(k.dispatch, env, device.limits.maxComputeWorkgroupsPerDimension, `${hooks.prefix}kernel ${k.name}`),
      );
      await hooks.scope("writing the dims", () =>
        plan.kernels.forEach(
          (k, i) =>
            this.uniforms[i] &&
            device.queue.writeBuffer(
              this.uniforms[i]!,
              0,
              Uint32Array.from(k.uniforms, (d) => env[d]),
            ),
        ),
      );
      this.env = key;
    }
    await hooks.scope("uploading inputs", () => {
      for (const [name, data] of inputs) {
        if (!data.length) continue;
        const s = plan.state.find((x) => x.name === name);
        if (s) device.queue.writeBuffer(this.buffers[s.buffer], 0, data);
        const i = plan.inputs.find((x) => x.name === name);
        const at = i?.value == null ? undefined : this.where.get(i.value); // none when no kernel reads it
        if (at) device.queue.writeBuffer(at.buffer, at.offset, data);
      }
    });
  }

  /** One run for the dims `env` (within plan.dims): `inputs` by name in storage form, per-call
   *  ones and state ones to overwrite; returns the outputs named in `wanted`. The caller checked
   *  names, dtypes and lengths; serializing calls is the caller's (Serial). */
  async run(
    env: Readonly<Record<string, number>>,
    inputs: ReadonlyMap<string, StorageArray>,
    wanted: readonly string[],
  ): Promise<Record<string, HostArray>> {
    if (this.disposed) throw new KilnError(`${this.hooks.prefix}run after dispose`);
    const { device, plan, hooks } = this;
    await this.prepare(env, inputs);
    const outputs = wanted.map((name) => plan.outputs.find((o) => o.name === name)!);
    const all = plan.kernels.map((_, i) => i);
    try {
      await hooks.scope("running the graph", () => this.submit(all, outputs, env));
    } catch (e) {
      if (!(e instanceof GpuError)) throw e;
      // Name the kernel: replay them one submission each until one fails. (State updated in
      // place is then as undefined as after any failed step: write it again.)
      for (const i of all)
        await scoped(device, `${hooks.prefix}kernel ${plan.kernels[i].name} (${hooks.describe(i)})`, () => this.submit([i]));
      throw e;
    }
    const bytes = outputs.map((o) => Math.max(4, numelAt(o.shape, env) * 4));
    await waitFor(hooks, Promise.all(outputs.map((o, j) => this.staging.get(o.name)!.mapAsync(USAGE.MAP_READ, 0, bytes[j]))));
    const result: Record<string, HostArray> = {};
    outputs.forEach((o, j) => {
      const st = this.staging.get(o.name)!;
      result[o.name] = fromBits(o.dtype, st.getMappedRange(0, bytes[j]), numelAt(o.shape, env));
      st.unmap();
    });
    return result;
  }

  /** Free what this executor made (the caller's buffers stay). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const b of this.own) this.hooks.destroyBuffer(b);
    this.own.length = 0;
  }
}
