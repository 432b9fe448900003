/** Running a compiled Program on the GPU.
 *
 *  load: every pipeline compiled once (asynchronously, cached by WGSL text for the process),
 *        constant data uploaded.
 *  run:  dims bound from the input shapes; for a new binding, buffers, uniforms and bind groups
 *        are made once and kept — with `program.arena`, temporaries and inputs share one arena
 *        (or a few) at the offsets compiler/plan-memory.ts plans for those dims; inputs
 *        uploaded; all kernels recorded into one compute pass and one submission; only the
 *        requested outputs copied back.
 *  state: inputs named in the program's `state` live on the GPU across runs (`write` them once,
 *        `read` them back); after each run's kernels, in the same submission, each takes the
 *        value of its update output — a training step's parameters never leave the GPU. An
 *        update written in place (Kernel.inPlace) already is in the resident buffer: no copy;
 *        reading that output back reads the resident buffer, i.e. the same (new) value. */
import { bindDims, inputNodes } from "../src/ir/bind.ts";
import { describeNode, GpuError, KilnError } from "../src/ir/errors.ts";
import { bindShape, evalSize, formatType, type DimEnv } from "../src/ir/shape.ts";
import type { DType, Graph, Node, ValueId } from "../src/ir/types.ts";
import { compile as compileGraph, type CompileOptions } from "../compiler/pipeline.ts";
import type { HostTensor } from "../src/interpret.ts";
import { inPlaceOutputs, type Dispatch, type Kernel, type Program } from "../compiler/program.ts";
import { arenaKernels, planMemory, type MemoryPlan } from "../compiler/plan-memory.ts";
import { createBuffer, destroyBuffer, fromStorage, toStorage, type HostArray } from "./buffers.ts";
import { acquireGpu, checked, type Gpu } from "./device.ts";

export interface OutputTensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: HostArray;
}

/** Buffers and bind groups for one binding of the symbolic dims. */
interface Arena {
  readonly key: string;
  readonly env: DimEnv;
  readonly buffers: Map<ValueId, GPUBuffer>;
  /** Where each value starts in its buffer (0 unless it is in an arena). */
  readonly offsets: Map<ValueId, number>;
  readonly bytes: Map<ValueId, number>;
  /** The buffers made for this binding: the arenas, or a buffer per value. */
  readonly owned: GPUBuffer[];
  readonly plan?: MemoryPlan;
  readonly uniforms: GPUBuffer[];
  readonly groups: (GPUBindGroup | undefined)[];
  readonly counts: (readonly [number, number, number] | undefined)[];
  /** By output name: two outputs may name one value. */
  readonly staging: Map<string, GPUBuffer>;
}

/** WebGPU's default maxBufferSize: an arena never grows past it, even where the device allows more. */
const MAX_ARENA = 256 * 2 ** 20;

const { STORAGE, COPY_DST, COPY_SRC, MAP_READ, UNIFORM } = { STORAGE: 0x80, COPY_DST: 0x8, COPY_SRC: 0x4, MAP_READ: 0x1, UNIFORM: 0x40 };

interface Resident {
  readonly name: string;
  readonly node: Node<"input">;
  readonly buffer: GPUBuffer;
  readonly bytes: number;
  /** The output whose value replaces it after a run, if any. */
  readonly update?: ValueId;
  written: boolean;
}

export class Executable {
  private arena: Arena | undefined;
  private readonly consts = new Map<ValueId, GPUBuffer>();
  private readonly resident = new Map<string, Resident>();
  private disposed = false;

  private constructor(
    readonly gpu: Gpu,
    readonly program: Program,
    private readonly pipelines: readonly GPUComputePipeline[],
  ) {}

  /** The memory plan of the current binding of the dims (after a run; none without an arena). */
  get memoryPlan(): MemoryPlan | undefined {
    return this.arena?.plan;
  }

  /** Compile `graph` for this process's device — its target (e.g. the register-blocked GEMM on
   *  lavapipe) and its storage-buffer limit — and load it. */
  static async fromGraph(graph: Graph, opts: CompileOptions = {}): Promise<Executable> {
    const gpu = await acquireGpu();
    const program = compileGraph(graph, { target: gpu.target, maxStorageBuffers: gpu.limits.maxStorageBuffersPerShaderStage, ...opts });
    return Executable.load(program, gpu);
  }

  static async load(program: Program, gpu?: Gpu): Promise<Executable> {
    const g = gpu ?? (await acquireGpu());
    // Arena bindings are declared read_write: a dispatch may not bind one buffer read-only and writable.
    const kernels = program.arena ? arenaKernels(program) : program.kernels;
    const pipelines = await Promise.all(kernels.map((k) => pipeline(g, k)));
    const exe = new Executable(g, program, pipelines);
    await checked(g, "uploading constants", () => {
      for (const b of program.buffers) {
        if (b.role !== "const") continue;
        const n = program.graph.nodes[b.value] as Node<"const">;
        const data = toStorage(b.dtype, n.attrs.value as readonly number[], describeNode(n.op, n.id, n.site));
        // COPY_SRC: constant data may itself be a graph output, copied out like any other.
        const buf = createBuffer(g.device, `v${b.value}`, data.byteLength, STORAGE | COPY_DST | COPY_SRC);
        g.device.queue.writeBuffer(buf, 0, data);
        exe.consts.set(b.value, buf);
      }
      for (const { input, output } of program.state) {
        const node = inputNodes(program.graph).find((n) => n.attrs.name === input)!;
        const update = output === undefined ? undefined : program.graph.outputs.find((o) => o.name === output)!.id;
        const from = update === undefined ? undefined : program.graph.nodes[update];
        if (from?.op === "input" && from.id !== node.id && program.state.some((u) => u.input === (from as Node<"input">).attrs.name)) {
          throw new KilnError(`state: "${input}" would take the value of resident input "${(from as Node<"input">).attrs.name}" as it is being replaced; compute the update from it instead`);
        }
        const bytes = bindShape(node.type.shape, {}).reduce((a, d) => a * d, 4);
        exe.resident.set(input, { name: input, node, buffer: createBuffer(g.device, `state ${input}`, bytes, STORAGE | COPY_DST | COPY_SRC), bytes, update, written: false });
      }
      for (const k of program.kernels) {
        if (k.inPlace === undefined) continue;
        const n = program.graph.nodes[k.inPlace];
        if (n.op !== "input" || !exe.resident.has((n as Node<"input">).attrs.name)) {
          throw new KilnError(`kernel ${k.name} updates %${k.inPlace} in place, which is not a resident input of the program's state`);
        }
      }
    });
    return exe;
  }

  /** Set a resident input's value (before the first run, or to reset it). */
  async write(name: string, t: HostTensor): Promise<void> {
    const r = this.residentOf(name, "write");
    const shape = r.node.type.shape as readonly number[];
    if (t.shape.join() !== shape.join()) throw new KilnError(`write "${name}": shape [${t.shape}] does not match ${formatType(r.node.type)}`);
    const data = toStorage(r.node.type.dtype, t.data, `state "${name}" ${formatType(r.node.type)}`);
    await checked(this.gpu, `writing state "${name}"`, () => this.gpu.device.queue.writeBuffer(r.buffer, 0, data));
    r.written = true;
  }

  /** A resident input's current value. */
  async read(name: string): Promise<OutputTensor> {
    const r = this.residentOf(name, "read");
    const { device } = this.gpu;
    const st = createBuffer(device, `read ${name}`, r.bytes, MAP_READ | COPY_DST);
    try {
      await checked(this.gpu, `reading state "${name}"`, () => {
        const enc = device.createCommandEncoder();
        enc.copyBufferToBuffer(r.buffer, 0, st, 0, r.bytes);
        device.queue.submit([enc.finish()]);
      });
      await st.mapAsync(MAP_READ);
      const data = fromStorage(r.node.type.dtype, st.getMappedRange(), r.bytes / 4);
      st.unmap();
      return { dtype: r.node.type.dtype, shape: r.node.type.shape as number[], data };
    } finally {
      destroyBuffer(st);
    }
  }

  private residentOf(name: string, what: string): Resident {
    if (this.disposed) throw new KilnError(`${what} on a disposed Executable`);
    const r = this.resident.get(name);
    if (!r) throw new KilnError(`${what} "${name}": not a resident input (state: ${[...this.resident.keys()].join(", ") || "none"})`);
    return r;
  }

  /** Run with `inputs` by name (resident ones may be left out: they keep their value); returns
   *  the graph's outputs (or those named in `outputs`; by default all but the state updates). */
  async run(inputs: Readonly<Record<string, HostTensor>>, outputs?: readonly string[]): Promise<Record<string, OutputTensor>> {
    if (this.disposed) throw new KilnError("run on a disposed Executable");
    const { graph } = this.program;
    const shapes = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, v.shape]));
    for (const r of this.resident.values()) shapes[r.name] ??= r.node.type.shape as number[];
    const env = bindDims(graph, shapes);
    for (const r of this.resident.values()) {
      if (!r.written && !inputs[r.name]) throw new KilnError(`resident input "${r.name}" ${formatType(r.node.type)} has no value yet: write it, or pass it to run`);
    }
    const updates = new Set(this.program.state.flatMap((u) => u.output ?? []));
    const wanted = outputs ? graph.outputs.filter((o) => outputs.includes(o.name)) : graph.outputs.filter((o) => !updates.has(o.name));
    for (const name of outputs ?? []) if (!graph.outputs.some((o) => o.name === name)) throw new KilnError(`unknown output "${name}"`);
    const arena = await this.arenaFor(env);
    const { device } = this.gpu;

    await checked(this.gpu, "uploading inputs", () => {
      for (const n of graph.nodes) {
        if (n.op !== "input") continue;
        const { name } = (n as Node<"input">).attrs;
        if (this.resident.has(name) && !inputs[name]) continue;
        const data = toStorage(n.type.dtype, inputs[name].data, `input "${name}" ${formatType({ dtype: n.type.dtype, shape: inputs[name].shape })}`);
        const want = bindShape(n.type.shape, env).reduce((a, d) => a * d, 1);
        if (data.length !== want) throw new KilnError(`input "${name}": ${data.length} values for shape [${inputs[name].shape}] (${want} elements)`);
        const buf = this.resident.get(name)?.buffer ?? arena.buffers.get(n.id); // none when no output depends on this input
        if (buf && data.length) device.queue.writeBuffer(buf, this.resident.has(name) ? 0 : arena.offsets.get(n.id)!, data);
        const r = this.resident.get(name);
        if (r) r.written = true;
      }
    });

    const submit = (kernels: readonly number[], copyOut: boolean) => {
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      for (const i of kernels) {
        const c = arena.counts[i];
        if (!c) continue;
        pass.setPipeline(this.pipelines[i]);
        pass.setBindGroup(0, arena.groups[i]!);
        pass.dispatchWorkgroups(...c);
      }
      pass.end();
      if (copyOut) {
        // Outputs first: they are this run's values, even one that is a resident input.
        for (const o of wanted) enc.copyBufferToBuffer(arena.buffers.get(o.id)!, arena.offsets.get(o.id)!, arena.staging.get(o.name)!, 0, arena.bytes.get(o.id)!);
        for (const r of this.resident.values()) {
          if (r.update === undefined) continue;
          const src = arena.buffers.get(r.update)!;
          if (src !== r.buffer) enc.copyBufferToBuffer(src, arena.offsets.get(r.update)!, r.buffer, 0, r.bytes);
        }
      }
      device.queue.submit([enc.finish()]);
    };
    const all = this.program.kernels.map((_, i) => i);
    try {
      await checked(this.gpu, "running the graph", () => submit(all, true));
    } catch (e) {
      if (!(e instanceof GpuError)) throw e;
      // Name the kernel: replay them one submission each until one fails. (Resident state
      // updated in place is then as undefined as after any failed step: write it again.)
      for (const i of all) await checked(this.gpu, `kernel ${this.program.kernels[i].name} (${this.describe(i)})`, () => submit([i], false));
      throw e;
    }

    const result: Record<string, OutputTensor> = {};
    await Promise.all(wanted.map(async (o) => {
      const st = arena.staging.get(o.name)!;
      await st.mapAsync(MAP_READ);
      const n = graph.nodes[o.id];
      const shape = bindShape(n.type.shape, env);
      result[o.name] = { dtype: n.type.dtype, shape, data: fromStorage(n.type.dtype, st.getMappedRange(), arena.bytes.get(o.id)! / 4) };
      st.unmap();
    }));
    return result;
  }

  private describe(i: number): string {
    const k = this.program.kernels[i];
    const n = this.program.graph.nodes[k.output];
    return describeNode(n.op, n.id, n.site);
  }

  private async arenaFor(env: DimEnv): Promise<Arena> {
    const key = JSON.stringify(env);
    if (this.arena?.key === key) return this.arena;
    this.freeArena();
    const { device, limits } = this.gpu;
    const { graph, kernels } = this.program;
    const plan = this.program.arena
      ? planMemory(this.program, env, { alignment: limits.minStorageBufferOffsetAlignment, maxBufferSize: Math.min(MAX_ARENA, limits.maxBufferSize) })
      : undefined;
    const inPlace = inPlaceOutputs(this.program);
    const arena: Arena = { key, env, buffers: new Map(), offsets: new Map(), bytes: new Map(), owned: [], plan, uniforms: [], groups: [], counts: [], staging: new Map() };
    this.arena = arena;
    await checked(this.gpu, "allocating buffers", () => {
      const arenas = (plan?.arenas ?? []).map((bytes, i) => createBuffer(device, `arena ${i}`, bytes, STORAGE | COPY_DST | COPY_SRC));
      arena.owned.push(...arenas);
      for (const p of plan?.placements ?? []) {
        arena.buffers.set(p.value, arenas[p.arena]);
        arena.offsets.set(p.value, p.offset);
      }
      for (const b of this.program.buffers) {
        const n = graph.nodes[b.value];
        const elems = bindShape(b.shape, env).reduce((a, d) => a * d, 1);
        const bytes = elems * 4;
        if (bytes > limits.maxStorageBufferBindingSize) {
          throw new KilnError(`${describeNode(n.op, n.id, n.site)}: ${formatType(n.type)} with ${JSON.stringify(env)} is ${bytes} bytes; the device binds at most ${limits.maxStorageBufferBindingSize}`);
        }
        arena.bytes.set(b.value, bytes);
        if (arena.buffers.has(b.value)) continue;
        arena.offsets.set(b.value, 0);
        const into = inPlace.get(b.value);
        const of = into === undefined ? n : graph.nodes[into];
        const resident = of.op === "input" ? this.resident.get((of as Node<"input">).attrs.name)?.buffer : undefined;
        let buf = resident ?? this.consts.get(b.value);
        if (!buf) arena.owned.push((buf = createBuffer(device, `v${b.value}`, bytes, STORAGE | COPY_DST | COPY_SRC)));
        arena.buffers.set(b.value, buf);
      }
      for (const o of graph.outputs) {
        arena.staging.set(o.name, createBuffer(device, `out ${o.name}`, arena.bytes.get(o.id)!, MAP_READ | COPY_DST));
      }
      kernels.forEach((k, i) => {
        arena.counts.push(workgroups(k, env, limits.maxComputeWorkgroupsPerDimension));
        const entries: GPUBindGroupEntry[] = k.bindings.map((b, j) => ({
          binding: j,
          // An empty tensor still binds 4 bytes: a binding may not be empty.
          resource: { buffer: arena.buffers.get(b.value)!, offset: arena.offsets.get(b.value)!, size: Math.max(4, arena.bytes.get(b.value)!) },
        }));
        if (k.uniforms.length) {
          const u = createBuffer(device, `${k.name} dims`, Math.ceil(k.uniforms.length / 4) * 16, UNIFORM | COPY_DST);
          device.queue.writeBuffer(u, 0, Uint32Array.from(k.uniforms, (s) => env[s]));
          arena.uniforms.push(u);
          entries.push({ binding: k.bindings.length, resource: { buffer: u } });
        }
        arena.groups.push(device.createBindGroup({ label: k.name, layout: this.pipelines[i].getBindGroupLayout(0), entries }));
      });
    });
    return arena;
  }

  private freeArena(): void {
    const a = this.arena;
    if (!a) return;
    for (const b of [...a.owned, ...a.uniforms, ...a.staging.values()]) destroyBuffer(b);
    this.arena = undefined;
  }

  /** Free every GPU buffer this executable made (pipelines stay cached in the process). */
  dispose(): void {
    this.freeArena();
    for (const b of this.consts.values()) destroyBuffer(b);
    this.consts.clear();
    for (const r of this.resident.values()) destroyBuffer(r.buffer);
    this.resident.clear();
    this.disposed = true;
  }
}

/** Workgroup counts for a dispatch; undefined when there is nothing to do (an empty tensor). */
function workgroups(k: Kernel, env: DimEnv, maxDim: number): readonly [number, number, number] | undefined {
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
  if (c.some((n) => n > maxDim)) throw new KilnError(`kernel ${k.name}: ${c.join("×")} workgroups with ${JSON.stringify(env)} exceed the device's ${maxDim} per dimension`);
  return c;
}

/** Compile (or find) the pipeline of a kernel; WGSL errors name the kernel and the line. */
async function pipeline(gpu: Gpu, k: Kernel): Promise<GPUComputePipeline> {
  let p = gpu.pipelines.get(k.wgsl);
  if (!p) {
    p = compile(gpu, k);
    gpu.pipelines.set(k.wgsl, p);
    p.catch(() => gpu.pipelines.delete(k.wgsl));
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
      throw new GpuError(`${title}: WGSL does not compile:\n${errors.map((m) => `  ${m.lineNum}:${m.linePos}: ${m.message}\n    ${lines[m.lineNum - 1] ?? ""}`).join("\n")}`);
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
