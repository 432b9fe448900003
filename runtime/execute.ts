/** Running a compiled Program on the GPU.
 *
 *  load: every pipeline compiled once (asynchronously, cached by WGSL text for the process),
 *        constant data uploaded.
 *  run:  dims bound from the input shapes; memory is planned and allocated once for every
 *        binding up to some dims — the program's declared bounds (Program.dims; a binding past
 *        one is an error), else the largest binding seen so far (it grows, then stays) — with
 *        `program.arena`, temporaries and inputs share one arena (or a few) at the offsets
 *        compiler/plan-memory.ts plans for those dims. Sizes only grow with each dim, so ranges
 *        planned disjoint at the bound stay disjoint for any smaller binding; staging and
 *        uniform buffers are sized for it too. Per binding only what depends on the dims is
 *        made, and cached (a few: a training loop alternates a full and a last batch): binding
 *        sizes, bind groups, workgroup counts and the uniform values, written when the binding
 *        changes. Inputs uploaded; all kernels recorded into one compute pass and one
 *        submission; only the requested outputs (their current sizes) copied back.
 *  state: inputs named in the program's `state` live on the GPU across runs (`write` them once,
 *        `read` them back); after each run's kernels, in the same submission, each takes the
 *        value of its update output — a training step's parameters never leave the GPU. An
 *        update written in place (Kernel.inPlace) already is in the resident buffer: no copy;
 *        reading that output back reads the resident buffer, i.e. the same (new) value. */
import { bindDims, inputNodes } from "../src/ir/bind.ts";
import { describeNode, GpuError, KilnError } from "../src/ir/errors.ts";
import { bindShape, formatType, type DimEnv } from "../src/ir/shape.ts";
import type { DType, Graph, Node, Shape, ValueId } from "../src/ir/types.ts";
import { compile as compileGraph, type CompileOptions } from "../compiler/pipeline.ts";
import type { HostTensor } from "../src/ir/host.ts";
import { inPlaceOutputs, type Program } from "../compiler/program.ts";
import { checkLimits, limitsOf } from "../compiler/limits.ts";
import { planFor, type MemoryPlan } from "../compiler/plan-memory.ts";
import { createBuffer, destroyBuffer, fromStorage, toStorage, type HostArray } from "./buffers.ts";
import { acquireGpu, checked, type Gpu } from "./device.ts";
import { pipeline, workgroups } from "./pipelines.ts";

export interface OutputTensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: HostArray;
}

/** Buffers for every binding of the dims up to `env`: the arenas (or a buffer per value), a
 *  staging buffer per output and a dims uniform per kernel that has symbolic dims. */
interface Memory {
  readonly env: DimEnv;
  readonly buffers: Map<ValueId, GPUBuffer>;
  /** Where each value starts in its buffer (0 unless it is in an arena). */
  readonly offsets: Map<ValueId, number>;
  /** The buffers made for it. */
  readonly owned: GPUBuffer[];
  readonly plan?: MemoryPlan;
  /** By output name: two outputs may name one value. */
  readonly staging: Map<string, GPUBuffer>;
  readonly uniforms: (GPUBuffer | undefined)[];
}

/** What one binding of the dims adds (cached per binding, no buffers of its own): sizes, bind
 *  groups over the memory, workgroup counts, and the uniform values, written on a switch. */
interface Bound {
  readonly key: string;
  readonly env: DimEnv;
  readonly bytes: Map<ValueId, number>;
  readonly groups: (GPUBindGroup | undefined)[];
  readonly counts: (readonly [number, number, number] | undefined)[];
  readonly dims: (Uint32Array | undefined)[];
}

type Arena = Memory & Bound;

/** Bindings whose bind groups are kept (a training loop alternates between two or so). */
const MAX_BINDINGS = 8;

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
  private memory: Memory | undefined;
  private readonly bound = new Map<string, Bound>();
  /** The binding whose dims the uniform buffers hold. */
  private dimsIn: string | undefined;
  private allocated = 0;
  private readonly consts = new Map<ValueId, GPUBuffer>();
  private readonly resident = new Map<string, Resident>();
  private disposed = false;

  private constructor(
    readonly gpu: Gpu,
    readonly program: Program,
    private readonly pipelines: readonly GPUComputePipeline[],
  ) {}

  /** The memory plan in use (after a run; none without an arena): made for the declared bounds,
   *  or for the largest binding seen so far, and serving the current binding. */
  get memoryPlan(): MemoryPlan | undefined {
    return this.memory?.plan;
  }

  /** How many times memory was planned and allocated (tests count reallocations). */
  get allocations(): number {
    return this.allocated;
  }

  /** Compile `graph` for this process's device — its target (e.g. the register-blocked GEMM on
   *  lavapipe) and its storage-buffer limit — and load it. */
  static async fromGraph(graph: Graph, opts: CompileOptions = {}): Promise<Executable> {
    const gpu = await acquireGpu();
    const program = compileGraph(graph, {
      target: gpu.target,
      maxStorageBuffers: gpu.limits.maxStorageBuffersPerShaderStage,
      limits: limitsOf(gpu.limits),
      ...opts,
    });
    return Executable.load(program, gpu);
  }

  static async load(program: Program, gpu?: Gpu): Promise<Executable> {
    const g = gpu ?? (await acquireGpu());
    const pipelines = await Promise.all(program.kernels.map((k) => pipeline(g, k)));
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
          throw new KilnError(
            `state: "${input}" would take the value of resident input "${(from as Node<"input">).attrs.name}" as it is being replaced; compute the update from it instead`,
          );
        }
        const bytes = bindShape(node.type.shape, {}).reduce((a, d) => a * d, 4);
        exe.resident.set(input, {
          name: input,
          node,
          buffer: createBuffer(g.device, `state ${input}`, bytes, STORAGE | COPY_DST | COPY_SRC),
          bytes,
          update,
          written: false,
        });
      }
      for (const k of program.kernels) {
        if (k.inPlace === undefined) continue;
        const n = program.graph.nodes[k.inPlace];
        const r = n.op === "input" ? exe.resident.get((n as Node<"input">).attrs.name) : undefined;
        // Over a resident input only as its update; never over constant data (uploaded once).
        if (r ? r.update !== k.output : n.op === "const") {
          throw new KilnError(
            `kernel ${k.name} writes %${k.output} in place over %${k.inPlace}, which must keep its value (${r ? "resident state" : "constant data"})`,
          );
        }
      }
    });
    return exe;
  }

  /** Set a resident input's value (before the first run, or to reset it). */
  async write(name: string, t: HostTensor): Promise<void> {
    const r = this.residentOf(name, "write");
    const shape = r.node.type.shape as readonly number[];
    if (t.shape.join() !== shape.join())
      throw new KilnError(`write "${name}": shape [${t.shape}] does not match ${formatType(r.node.type)}`);
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
    for (const [d, bound] of Object.entries(this.program.dims ?? {})) {
      if (env[d] !== undefined && env[d] > bound)
        throw new KilnError(`dim ${d} = ${env[d]} exceeds its declared bound ${bound} (compile(graph, { dims: { ${d}: ${bound} } }))`);
    }
    for (const r of this.resident.values()) {
      if (!r.written && !inputs[r.name])
        throw new KilnError(`resident input "${r.name}" ${formatType(r.node.type)} has no value yet: write it, or pass it to run`);
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
        const data = toStorage(
          n.type.dtype,
          inputs[name].data,
          `input "${name}" ${formatType({ dtype: n.type.dtype, shape: inputs[name].shape })}`,
        );
        const want = bindShape(n.type.shape, env).reduce((a, d) => a * d, 1);
        if (data.length !== want)
          throw new KilnError(`input "${name}": ${data.length} values for shape [${inputs[name].shape}] (${want} elements)`);
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
        for (const o of wanted)
          enc.copyBufferToBuffer(arena.buffers.get(o.id)!, arena.offsets.get(o.id)!, arena.staging.get(o.name)!, 0, arena.bytes.get(o.id)!);
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
      for (const i of all)
        await checked(this.gpu, `kernel ${this.program.kernels[i].name} (${this.describe(i)})`, () => submit([i], false));
      throw e;
    }

    const result: Record<string, OutputTensor> = {};
    await Promise.all(
      wanted.map(async (o) => {
        const st = arena.staging.get(o.name)!;
        await st.mapAsync(MAP_READ);
        const n = graph.nodes[o.id];
        const shape = bindShape(n.type.shape, env);
        result[o.name] = { dtype: n.type.dtype, shape, data: fromStorage(n.type.dtype, st.getMappedRange(), arena.bytes.get(o.id)! / 4) };
        st.unmap();
      }),
    );
    return result;
  }

  private describe(i: number): string {
    const k = this.program.kernels[i];
    const n = this.program.graph.nodes[k.output];
    return describeNode(n.op, n.id, n.site);
  }

  /** Memory covering `env` (planned at the declared bounds, else grown to the largest binding
   *  seen), and this binding's sizes, bind groups and uniform values over it. */
  private async arenaFor(env: DimEnv): Promise<Arena> {
    const key = JSON.stringify(env);
    const mem = this.memory && Object.entries(env).every(([d, n]) => n <= this.memory!.env[d]) ? this.memory : await this.allocate(env);
    let b = this.bound.get(key);
    if (!b || this.dimsIn !== key) {
      await checked(this.gpu, "binding buffers", () => {
        if (!b) {
          if (this.bound.size >= MAX_BINDINGS) this.bound.delete(this.bound.keys().next().value!);
          this.bound.set(key, (b = this.bind(key, env, mem)));
        }
        b.dims.forEach((d, i) => d && this.gpu.device.queue.writeBuffer(mem.uniforms[i]!, 0, d));
        this.dimsIn = key;
      });
    }
    return { ...mem, ...b! };
  }

  /** Plan and allocate for the declared bounds and the largest binding seen (with `env`). */
  private async allocate(env: DimEnv): Promise<Memory> {
    const at: Record<string, number> = {};
    for (const [d, n] of Object.entries(env)) at[d] = this.program.dims?.[d] ?? Math.max(n, this.memory?.env[d] ?? 0);
    this.freeMemory();
    const { device, limits } = this.gpu;
    const { graph, kernels } = this.program;
    // What the compiler checked at the declared dims, for the dims met here (the same messages).
    checkLimits(this.program, at, limits);
    const plan = this.program.arena
      ? planFor(this.program, at, { alignment: limits.minStorageBufferOffsetAlignment, maxBufferSize: limits.maxBufferSize })
      : undefined;
    const inPlace = inPlaceOutputs(this.program);
    const mem: Memory = { env: at, buffers: new Map(), offsets: new Map(), owned: [], plan, staging: new Map(), uniforms: [] };
    const bytesAt = (s: Shape) => bindShape(s, at).reduce((a, d) => a * d, 4);
    await checked(this.gpu, "allocating buffers", () => {
      const made = (label: string, bytes: number, usage: number): GPUBuffer => {
        const buf = createBuffer(device, label, bytes, usage);
        mem.owned.push(buf);
        return buf;
      };
      const arenas = (plan?.arenas ?? []).map((bytes, i) => made(`arena ${i}`, bytes, STORAGE | COPY_DST | COPY_SRC));
      for (const p of plan?.placements ?? []) {
        mem.buffers.set(p.value, arenas[p.arena]);
        mem.offsets.set(p.value, p.offset);
      }
      for (const b of this.program.buffers) {
        const n = graph.nodes[b.value];
        const bytes = bytesAt(b.shape);
        if (mem.buffers.has(b.value)) continue;
        // Written in place: the memory of the input it is stored into (a smaller id: seen already).
        const into = inPlace.get(b.value);
        const of = into === undefined ? n : graph.nodes[into];
        const resident = of.op === "input" ? this.resident.get((of as Node<"input">).attrs.name)?.buffer : undefined;
        const shared = resident ?? (into === undefined ? undefined : mem.buffers.get(into));
        mem.buffers.set(b.value, shared ?? this.consts.get(b.value) ?? made(`v${b.value}`, bytes, STORAGE | COPY_DST | COPY_SRC));
        mem.offsets.set(b.value, !resident && shared ? mem.offsets.get(into!)! : 0);
      }
      for (const o of graph.outputs)
        mem.staging.set(o.name, made(`out ${o.name}`, bytesAt(graph.nodes[o.id].type.shape), MAP_READ | COPY_DST));
      for (const k of kernels)
        mem.uniforms.push(
          k.uniforms.length ? made(`${k.name} dims`, Math.ceil(k.uniforms.length / 4) * 16, UNIFORM | COPY_DST) : undefined,
        );
    }).catch((e) => {
      mem.owned.forEach(destroyBuffer);
      throw e;
    });
    this.allocated++;
    return (this.memory = mem);
  }

  /** One binding's sizes, workgroup counts, bind groups and uniform values over `mem`. */
  private bind(key: string, env: DimEnv, mem: Memory): Bound {
    const { device, limits } = this.gpu;
    const b: Bound = { key, env, bytes: new Map(), groups: [], counts: [], dims: [] };
    for (const s of this.program.buffers)
      b.bytes.set(
        s.value,
        bindShape(s.shape, env).reduce((a, d) => a * d, 4),
      );
    this.program.kernels.forEach((k, i) => {
      b.counts.push(workgroups(k, env, limits.maxComputeWorkgroupsPerDimension));
      const entries: GPUBindGroupEntry[] = k.bindings.map((x, j) => ({
        binding: j,
        // An empty tensor still binds 4 bytes: a binding may not be empty.
        resource: { buffer: mem.buffers.get(x.value)!, offset: mem.offsets.get(x.value)!, size: Math.max(4, b.bytes.get(x.value)!) },
      }));
      const u = mem.uniforms[i];
      if (u) entries.push({ binding: k.bindings.length, resource: { buffer: u } });
      b.dims.push(u && Uint32Array.from(k.uniforms, (s) => env[s]));
      b.groups.push(device.createBindGroup({ label: k.name, layout: this.pipelines[i].getBindGroupLayout(0), entries }));
    });
    return b;
  }

  /** Free the memory; the bindings over it go with it. */
  private freeMemory(): void {
    for (const x of this.memory?.owned ?? []) destroyBuffer(x);
    this.bound.clear();
    this.dimsIn = undefined;
    this.memory = undefined;
  }

  /** Free every GPU buffer this executable made (pipelines stay cached in the process). */
  dispose(): void {
    this.freeMemory();
    for (const b of this.consts.values()) destroyBuffer(b);
    this.consts.clear();
    for (const r of this.resident.values()) destroyBuffer(r.buffer);
    this.resident.clear();
    this.disposed = true;
  }
}
