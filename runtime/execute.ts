/** Running a compiled Program on the GPU: a bundle held in memory. The Program is described as
 *  the executor's Plan (compiler/bundle/plan.ts, the description a bundle's manifest holds) and
 *  run by runtime/executor.ts, the core every bundle's loader ships too.
 *
 *  load: every pipeline compiled once (asynchronously, cached by WGSL text for the process, held
 *        until dispose), constant data uploaded, resident buffers made.
 *  run:  dims bound from the input shapes; memory is planned and allocated once for every
 *        binding up to some dims — the program's declared bounds (Program.dims; a binding past
 *        one is an error), else the largest binding seen so far (it grows, then stays) — with
 *        `program.arena`, temporaries and inputs share one arena (or a few) at the offsets
 *        compiler/plan-memory.ts plans for those dims. Sizes only grow with each dim, so ranges
 *        planned disjoint at the bound stay disjoint for any smaller binding; bind groups cover
 *        the planned sizes and a smaller binding only rewrites the dims uniforms. Inputs
 *        uploaded; all kernels recorded into one compute pass and one submission; only the
 *        requested outputs (their current sizes) copied back.
 *  state: inputs named in the program's `state` live on the GPU across runs (`write` them once,
 *        `read` them back); after each run's kernels, in the same submission, each takes the
 *        value of its update output — a training step's parameters never leave the GPU. An
 *        update written in place (Kernel.inPlace) already is in the resident buffer: no copy;
 *        reading that output back reads the resident buffer, i.e. the same (new) value.
 *  Calls overlap safely: run, write and read are queued and run one at a time, in call order. */
import { bindDims, inputNodes } from "../src/ir/bind.ts";
import { describeNode, KilnError } from "../src/ir/errors.ts";
import { bindShape, formatType, type DimEnv } from "../src/ir/shape.ts";
import type { DType, Graph, Node, ValueId } from "../src/ir/types.ts";
import { compile as compileGraph, type CompileOptions } from "../compiler/pipeline.ts";
import type { HostTensor } from "../src/ir/host.ts";
import { requiredFeatures, type Kernel, type Program } from "../compiler/program.ts";
import { checkLimits, limitsOf } from "../compiler/limits.ts";
import { planFor, type MemoryPlan } from "../compiler/plan-memory.ts";
import { programPlan } from "../compiler/bundle/plan.ts";
import { createBuffer, destroyBuffer, toStorage, type HostArray } from "./buffers.ts";
import { acquireGpu, assertFeatures, checked, requireFeatures, settle, type Gpu } from "./device.ts";
import { resolvePrecision, type Precision } from "../compiler/precision.ts";
import { Executor, readBack, Serial, USAGE, type ExecutorHooks, type StorageArray } from "./executor.ts";
import { warmJit, type WarmResult } from "./jit-warm.ts";
import { pipeline, release } from "./pipelines.ts";
import { tuneProgram } from "./autotune.ts";
import { tuningMode } from "./tuning-cache.ts";

export interface OutputTensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: HostArray;
}

const { STORAGE, COPY_DST, COPY_SRC } = USAGE;

interface Resident {
  readonly name: string;
  readonly node: Node<"input">;
  readonly buffer: GPUBuffer;
  readonly bytes: number;
  /** The output whose value replaces it after a run, if any. */
  readonly update?: ValueId;
  written: boolean;
}

/** Compile options, with precision "auto": mixed where the device has f16 and is a GPU
 *  (compiler/precision.ts resolvePrecision). */
export type FromGraphOptions = Omit<CompileOptions, "precision"> & { readonly precision?: Precision | "auto" };

export class Executable {
  /** The executor over the memory planned for `env`. */
  private memory: { readonly env: DimEnv; readonly plan?: MemoryPlan; readonly core: Executor } | undefined;
  private allocated = 0;
  private readonly consts = new Map<ValueId, GPUBuffer>();
  private readonly resident = new Map<string, Resident>();
  private disposed = false;
  private released = false;
  private readonly serial = new Serial();
  /** Calls queued or running: dispose waits for them before freeing their buffers. */
  private pending = 0;
  private readonly hooks: ExecutorHooks;
  /** Kernels whose pipelines this load created and no run has dispatched yet: the first run
   *  has a helper device compile them beside it (jit-warm.ts). */
  private unrun: readonly Kernel[] = [];
  /** How far the first run's helper got (tests and test/bench/profile.ts read it). */
  warmed: Promise<WarmResult> | undefined;

  private constructor(
    readonly gpu: Gpu,
    readonly program: Program,
    /** The kernels as they run (arena bindings declared read_write). */
    private readonly kernels: readonly Kernel[],
    private readonly pipelines: readonly GPUComputePipeline[],
  ) {
    this.hooks = {
      prefix: "",
      createBuffer: (label, bytes, usage) => createBuffer(gpu.device, label, bytes, usage),
      destroyBuffer,
      scope: (what, fn) => checked(gpu, what, fn),
      wait: settle,
      describe: (i) => {
        const n = program.graph.nodes[program.kernels[i].output];
        return describeNode(n.op, n.id, n.site);
      },
    };
  }

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
   *  lavapipe, with the configurations tuned for it: ./tuning-cache.ts) and its storage-buffer
   *  limit — and load it. With `tune` (default: KILN_TUNING=auto) the GEMM classes the tuning
   *  cache lacks are tuned first (./autotune.ts), at the declared dims; opt-in, since a search
   *  takes seconds a class. `precision: "auto"` is mixed where the target and device suit it
   *  (compiler/precision.ts). */
  static async fromGraph(graph: Graph, opts: FromGraphOptions & { readonly tune?: boolean } = {}): Promise<Executable> {
    const gpu = await acquireGpu();
    const { tune = tuningMode() === "auto", ...rest } = opts;
    const compileHere = () =>
      compileGraph(graph, {
        target: gpu.target,
        maxStorageBuffers: gpu.limits.maxStorageBuffersPerShaderStage,
        limits: limitsOf(gpu.limits),
        ...rest,
        precision: resolvePrecision(rest.precision ?? "f32", { target: rest.target ?? gpu.target, features: gpu.features }),
      });
    let program = compileHere();
    if (tune && opts.target === undefined && program.kernels.some((k) => k.gemm?.source === "default")) {
      await tuneProgram(gpu, program, { skipUnbound: true, log: (l) => console.error(`kiln tune: ${l}`) });
      program = compileHere();
    }
    return Executable.load(program, gpu);
  }

  static async load(program: Program, gpu?: Gpu): Promise<Executable> {
    const g = gpu ?? (await acquireGpu());
    requireFeatures(
      g,
      requiredFeatures(program),
      program.half?.length ? `a program in mixed precision (${program.half.length} values stored as f16)` : "this program",
    );
    const { kernels } = program;
    assertFeatures(g.device, kernels, "loading the program");
    const fresh = kernels.filter((k) => !g.pipelines.has(k.key));
    const compiling = kernels.map((k) => pipeline(g, k));
    const pipelines = await settle(Promise.all(compiling)).catch((e) => {
      release(g, kernels);
      throw e;
    });
    const exe = new Executable(g, program, kernels, pipelines);
    exe.unrun = fresh;
    try {
      await checked(g, "uploading constants", () => exe.upload());
    } catch (e) {
      exe.dispose();
      throw e;
    }
    return exe;
  }

  /** Constant data into buffers of their own, and a buffer per resident input. */
  private upload(): void {
    const { program, gpu } = this;
    for (const b of program.buffers) {
      if (b.role !== "const") continue;
      const n = program.graph.nodes[b.value] as Node<"const">;
      const data = toStorage(b.dtype, n.attrs.value as readonly number[], describeNode(n.op, n.id, n.site));
      // COPY_SRC: constant data may itself be a graph output, copied out like any other.
      const buf = createBuffer(gpu.device, `v${b.value}`, data.byteLength, STORAGE | COPY_DST | COPY_SRC);
      gpu.device.queue.writeBuffer(buf, 0, data);
      this.consts.set(b.value, buf);
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
      this.resident.set(input, {
        name: input,
        node,
        buffer: createBuffer(gpu.device, `state ${input}`, bytes, STORAGE | COPY_DST | COPY_SRC),
        bytes,
        update,
        written: false,
      });
    }
    for (const k of program.kernels) {
      if (k.inPlace === undefined) continue;
      const n = program.graph.nodes[k.inPlace];
      const r = n.op === "input" ? this.resident.get((n as Node<"input">).attrs.name) : undefined;
      // Over a resident input only as its update; never over constant data (uploaded once).
      if (r ? r.update !== k.output : n.op === "const") {
        throw new KilnError(
          `kernel ${k.name} writes %${k.output} in place over %${k.inPlace}, which must keep its value (${r ? "resident state" : "constant data"})`,
        );
      }
    }
  }

  /** Queued behind every earlier call; refused once disposed. */
  private queued<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.disposed) return Promise.reject(new KilnError(`${what} on a disposed Executable`));
    this.pending++;
    return this.serial.run(async () => {
      try {
        if (this.disposed) throw new KilnError(`${what} on a disposed Executable`);
        return await fn();
      } finally {
        if (--this.pending === 0 && this.disposed) this.free();
      }
    });
  }

  /** Set a resident input's value (before the first run, or to reset it): exactly its shape and element count. */
  write(name: string, t: HostTensor): Promise<void> {
    return this.queued("write", async () => {
      const r = this.residentOf(name, "write");
      const shape = r.node.type.shape as readonly number[];
      if (t.shape.join() !== shape.join())
        throw new KilnError(`write "${name}": shape [${t.shape}] does not match ${formatType(r.node.type)}`);
      const want = r.bytes / 4;
      if (t.data.length !== want)
        throw new KilnError(`write "${name}": ${t.data.length} values for ${formatType(r.node.type)} (${want} elements)`);
      const data = toStorage(r.node.type.dtype, t.data, `state "${name}" ${formatType(r.node.type)}`);
      await checked(this.gpu, `writing state "${name}"`, () => this.gpu.device.queue.writeBuffer(r.buffer, 0, data));
      r.written = true;
    });
  }

  /** A resident input's current value. */
  read(name: string): Promise<OutputTensor> {
    return this.queued("read", async () => {
      const r = this.residentOf(name, "read");
      const data = await readBack(this.gpu.device, this.hooks, `state "${name}"`, r.buffer, r.bytes, r.node.type.dtype);
      return { dtype: r.node.type.dtype, shape: r.node.type.shape as number[], data };
    });
  }

  private residentOf(name: string, what: string): Resident {
    const r = this.resident.get(name);
    if (!r) throw new KilnError(`${what} "${name}": not a resident input (state: ${[...this.resident.keys()].join(", ") || "none"})`);
    return r;
  }

  /** Run with `inputs` by name (resident ones may be left out: they keep their value); returns
   *  the graph's outputs (or those named in `outputs`; by default all but the state updates).
   *  Overlapping calls are queued: each sees the state the previous one left. */
  run(inputs: Readonly<Record<string, HostTensor>>, outputs?: readonly string[]): Promise<Record<string, OutputTensor>> {
    return this.queued("run", () => this.runNow(inputs, outputs));
  }

  private async runNow(inputs: Readonly<Record<string, HostTensor>>, outputs?: readonly string[]): Promise<Record<string, OutputTensor>> {
    const { env, uploads, wanted } = this.bind(inputs, outputs);
    const core = await this.coreFor(env);
    const warming = warmJit(this.gpu, this.unrun);
    this.unrun = [];
    this.warmed = warming?.done ?? this.warmed;
    const out = await core
      .run(
        env,
        uploads,
        wanted.map((o) => o.name),
      )
      .finally(() => warming?.stop());
    for (const name of uploads.keys()) {
      const r = this.resident.get(name);
      if (r) r.written = true;
    }
    const result: Record<string, OutputTensor> = {};
    for (const o of wanted) {
      const n = this.program.graph.nodes[o.id];
      result[o.name] = { dtype: n.type.dtype, shape: bindShape(n.type.shape, env), data: out[o.name] };
    }
    return result;
  }

  /** Time each kernel alone, `rounds` times, with `inputs` as run takes them: a submission of
   *  one kernel's dispatch, waited for; then all of them in one submission, as a run dispatches
   *  them (test/bench/profile.ts). A kernel's first round includes what the driver compiles at
   *  first use (llvmpipe's JIT) unless its pipeline ran before. `clock` (ms) is wall time unless
   *  given, e.g. the process's CPU time: lavapipe's threads are this process's. Resident state is
   *  changed as by the kernels run, not as by a step: write it again. */
  timeKernels(
    inputs: Readonly<Record<string, HostTensor>>,
    rounds: number,
    clock: () => number = () => performance.now(),
  ): Promise<{ kernels: number[][]; all: number[] }> {
    return this.queued("timeKernels", async () => {
      const { env, uploads } = this.bind(inputs);
      const core = await this.coreFor(env);
      await core.prepare(env, uploads);
      this.unrun = [];
      const { queue } = this.gpu.device;
      await settle(queue.onSubmittedWorkDone());
      const time = async (kernels: number[]) => {
        const t = clock();
        core.submit(kernels);
        await settle(queue.onSubmittedWorkDone());
        return clock() - t;
      };
      const every = this.program.kernels.map((_, i) => i);
      const result = { kernels: every.map((): number[] => []), all: [] as number[] };
      await checked(this.gpu, "timing kernels", async () => {
        for (let r = 0; r < rounds; r++) for (const i of every) result.kernels[i].push(await time([i]));
        for (let r = 0; r < rounds; r++) result.all.push(await time(every));
      });
      return result;
    });
  }

  /** The dims of `inputs` (with the resident ones), their storage form, and the outputs wanted. */
  private bind(
    inputs: Readonly<Record<string, HostTensor>>,
    outputs?: readonly string[],
  ): { env: DimEnv; uploads: Map<string, StorageArray>; wanted: Graph["outputs"] } {
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
    const uploads = new Map<string, StorageArray>();
    for (const n of inputNodes(graph)) {
      const { name } = n.attrs;
      if (this.resident.has(name) && !inputs[name]) continue;
      const what = `input "${name}" ${formatType({ dtype: n.type.dtype, shape: inputs[name].shape })}`;
      const data = toStorage(n.type.dtype, inputs[name].data, what);
      const want = bindShape(n.type.shape, env).reduce((a, d) => a * d, 1);
      if (data.length !== want)
        throw new KilnError(`input "${name}": ${data.length} values for shape [${inputs[name].shape}] (${want} elements)`);
      uploads.set(name, data);
    }
    return { env, uploads, wanted };
  }

  /** The executor whose memory covers `env`: planned at the declared bounds, else at the largest
   *  binding seen (with `env`); resident and constant buffers are this executable's, kept across. */
  private async coreFor(env: DimEnv): Promise<Executor> {
    const mem = this.memory;
    if (mem && Object.entries(env).every(([d, n]) => n <= mem.env[d])) return mem.core;
    const at: Record<string, number> = {};
    for (const [d, n] of Object.entries(env)) at[d] = this.program.dims?.[d] ?? Math.max(n, mem?.env[d] ?? 0);
    this.freeMemory();
    const { limits } = this.gpu;
    // What the compiler checked at the declared dims, for the dims met here (the same messages).
    checkLimits(this.program, at, limits);
    const plan = this.program.arena
      ? planFor(this.program, at, { alignment: limits.minStorageBufferOffsetAlignment, maxBufferSize: limits.maxBufferSize })
      : undefined;
    const description = programPlan(this.program, { kernels: this.kernels, memory: plan, dims: at, outputs: "all", constData: false });
    const provided = new Map<number, GPUBuffer>();
    for (const v of description.values) if (this.consts.has(v.id)) provided.set(v.buffer, this.consts.get(v.id)!);
    for (const s of description.state) provided.set(s.buffer, this.resident.get(s.name)!.buffer);
    const core = await Executor.create(this.gpu.device, description, this.pipelines, this.hooks, { provided });
    this.allocated++;
    this.memory = { env: at, plan, core };
    return core;
  }

  private freeMemory(): void {
    this.memory?.core.dispose();
    this.memory = undefined;
  }

  /** Free every GPU buffer this executable made and let go of its pipelines (after the calls
   *  already queued); later calls are refused. */
  dispose(): void {
    this.disposed = true;
    if (this.pending === 0) this.free();
  }

  private free(): void {
    this.freeMemory();
    for (const b of this.consts.values()) destroyBuffer(b);
    this.consts.clear();
    for (const r of this.resident.values()) destroyBuffer(r.buffer);
    this.resident.clear();
    if (!this.released) release(this.gpu, this.kernels);
    this.released = true;
  }
}
