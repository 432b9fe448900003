/** The generic part of every bundle's loader: compiler/bundle/loader.ts copies this text (less
 *  its imports) after manifest.ts's into the generated module, so it may use nothing but
 *  WebGPU, fetch/crypto.subtle and, inside fromDirectory only, node:fs. It mirrors
 *  runtime/execute.ts's Executable for one memory plan fixed at build time:
 *    load: check manifest, weights (size, SHA-256, safetensors header) and device limits; make
 *          every buffer, compile every pipeline (asynchronously), build every bind group.
 *    call: check inputs and bind the dims; write the dims uniforms when they changed; upload
 *          inputs; one compute pass, then copies out and state copies, in one submission. */
import {
  validateManifest,
  type BundleDim,
  type BundleDtype,
  type DispatchData,
  type Manifest,
  type SizeData,
} from "../formats/bundle-manifest.ts";

/** Where the bundle's files come from: a folder (fromDirectory), a URL (fromUrl) or your own. */
export interface BundleFiles {
  text(name: string): Promise<string>;
  bytes(name: string): Promise<Uint8Array>;
}

export type HostArray = Float32Array | Int32Array | Uint32Array | Uint8Array;

/** Node: files in `dir` (node:fs is imported only here, so a browser never loads it). */
export function fromDirectory(dir: string): BundleFiles {
  // A computed specifier: type-checks without Node's types and bundlers leave it alone.
  const fs = () => import("node:fs/promises" as string) as Promise<{ readFile(p: string): Promise<Uint8Array> }>;
  const read = async (name: string) => {
    try {
      return new Uint8Array(await (await fs()).readFile(`${dir}/${name}`));
    } catch (e) {
      throw new Error(`kiln bundle: cannot read ${dir}/${name} (${(e as Error).message})`);
    }
  };
  return { bytes: read, text: async (name) => new TextDecoder().decode(await read(name)) };
}

/** Browser (or Node 20's fetch): files under `base`, e.g. "/models/mnist/". */
export function fromUrl(base: string): BundleFiles {
  const get = async (name: string) => {
    // A relative base (a browser's "/models/mnist/") resolves against the page.
    const page = (globalThis as { location?: { href: string } }).location?.href;
    const r = await fetch(new URL(name, new URL(base, page)));
    if (!r.ok) throw new Error(`kiln bundle: fetching ${name} from ${base}: HTTP ${r.status}`);
    return r;
  };
  return { text: async (name) => (await get(name)).text(), bytes: async (name) => new Uint8Array(await (await get(name)).arrayBuffer()) };
}

const ARRAYS = { f32: Float32Array, i32: Int32Array, u32: Uint32Array, bool: Uint8Array } as const;
const SAFE_DTYPES: Record<string, BundleDtype> = { F32: "f32", I32: "i32", U32: "u32", BOOL: "bool" };
const { STORAGE, COPY_DST, COPY_SRC, MAP_READ, UNIFORM } = { STORAGE: 0x80, COPY_DST: 0x8, COPY_SRC: 0x4, MAP_READ: 0x1, UNIFORM: 0x40 };
const fmt = (t: { dtype: string; shape: readonly BundleDim[] }) => `${t.dtype}[${t.shape.join(",")}]`;

/** safetensors: [u64 LE header length N][N bytes JSON header][data]; every field is checked. */
export function decodeSafetensors(
  bytes: Uint8Array,
  source: string,
): Map<string, { dtype: BundleDtype; shape: number[]; data: HostArray }> {
  const fail = (m: string): never => {
    throw new Error(`kiln bundle: ${source}: ${m}`);
  };
  if (bytes.length < 8) fail(`${bytes.length} bytes, too short for a safetensors header`);
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (n > bytes.length - 8) fail(`header length ${n} runs past the end of the file (${bytes.length} bytes): truncated?`);
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    return fail(`header is not JSON (${(e as Error).message})`);
  }
  const data = bytes.subarray(8 + n);
  const out = new Map<string, { dtype: BundleDtype; shape: number[]; data: HostArray }>();
  for (const [name, t] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const dtype = SAFE_DTYPES[t?.dtype] ?? fail(`tensor "${name}": unsupported dtype ${JSON.stringify(t?.dtype)}`);
    const count = Array.isArray(t.shape) ? t.shape.reduce((a, d) => a * d, 1) : NaN;
    const [b, e] = Array.isArray(t.data_offsets) ? t.data_offsets : [NaN, NaN];
    const width = dtype === "bool" ? 1 : 4;
    if (!(Number.isSafeInteger(count) && b >= 0 && e - b === count * width))
      fail(`tensor "${name}": ${t.dtype}[${t.shape}] does not fit data_offsets [${b}, ${e}]`);
    if (e > data.length) fail(`tensor "${name}": data_offsets [${b}, ${e}] past the end of the data (${data.length} bytes): truncated`);
    const arr = new ARRAYS[dtype](count);
    new Uint8Array(arr.buffer).set(data.subarray(b, e)); // copied: the offset need not be aligned
    out.set(name, { dtype, shape: t.shape, data: arr });
  }
  return out;
}

const hex = (b: ArrayBuffer) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");

function evalSize(s: SizeData, env: Record<string, number>): number {
  return s.syms.reduce((a, d) => a * env[d], s.k);
}

function numel(shape: readonly BundleDim[], env: Record<string, number>): number {
  return shape.reduce<number>((a, d) => a * (typeof d === "number" ? d : env[d]), 1);
}

/** Workgroup counts of one dispatch, or undefined when there is nothing to do: the rule of
 *  runtime/pipelines.ts `workgroups`, restated because a bundle imports nothing of Kiln. */
function counts(d: DispatchData, env: Record<string, number>, maxDim: number, kernel: string): [number, number, number] | undefined {
  let c: [number, number, number];
  if (d.kind === "linear") {
    const groups = Math.ceil(evalSize(d.total, env) / d.perGroup);
    const x = Math.min(groups, maxDim);
    c = [x, x ? Math.ceil(groups / x) : 0, 1];
  } else {
    c = [d.x, d.y, d.z].map((a) => Math.ceil(evalSize(a.size, env) / a.per)) as [number, number, number];
  }
  if (c.some((k) => k === 0)) return undefined;
  if (c.some((k) => k > maxDim))
    throw new Error(`kiln bundle: kernel ${kernel}: ${c.join("×")} workgroups exceed the device's ${maxDim} per dimension`);
  return c;
}

async function scoped<T>(device: GPUDevice, what: string, fn: () => T | Promise<T>): Promise<T> {
  device.pushErrorScope("validation");
  device.pushErrorScope("out-of-memory");
  let result: T;
  try {
    result = await fn();
  } finally {
    const errors = [await device.popErrorScope(), await device.popErrorScope()].filter((e) => e);
    if (errors.length) throw new Error(`kiln bundle: ${what}: ${errors.map((e) => e!.message).join("; ")}`);
  }
  return result;
}

/** A loaded bundle: its buffers, pipelines and bind groups, made once. */
export class Bundle {
  private env: Record<string, number> | undefined;
  private counts: ([number, number, number] | undefined)[] = [];
  private readonly values: Map<number, Manifest["values"][number]>;
  private disposed = false;

  private constructor(
    readonly device: GPUDevice,
    readonly manifest: Manifest,
    private readonly buffers: GPUBuffer[],
    private readonly pipelines: GPUComputePipeline[],
    private readonly groups: GPUBindGroup[],
    private readonly uniforms: (GPUBuffer | undefined)[],
    private readonly staging: GPUBuffer[],
  ) {
    this.values = new Map(manifest.values.map((v) => [v.id, v]));
  }

  static async open(device: GPUDevice, files: BundleFiles): Promise<Bundle> {
    let raw: unknown;
    try {
      raw = JSON.parse(await files.text("manifest.json"));
    } catch (e) {
      throw new Error(`kiln bundle: manifest.json is not valid JSON (${(e as Error).message})`);
    }
    const m = validateManifest(raw);
    const bytes = await files.bytes(m.weights.file);
    if (bytes.length !== m.weights.bytes)
      throw new Error(
        `kiln bundle: ${m.weights.file} is ${bytes.length} bytes, the manifest says ${m.weights.bytes}: truncated or replaced`,
      );
    const sha = hex(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
    if (sha !== m.weights.sha256)
      throw new Error(`kiln bundle: ${m.weights.file} has SHA-256 ${sha}, the manifest says ${m.weights.sha256}: the weights were altered`);
    const weights = decodeSafetensors(bytes, m.weights.file);
    for (const s of m.state) {
      const w = weights.get(s.name);
      if (!w) throw new Error(`kiln bundle: ${m.weights.file} lacks "${s.name}" ${fmt(s)}`);
      if (w.dtype !== s.dtype || w.shape.join() !== s.shape.join())
        throw new Error(`kiln bundle: ${m.weights.file}: "${s.name}" is ${fmt(w)}, the manifest says ${fmt(s)}`);
    }
    const lim = device.limits;
    for (const k of m.kernels) {
      if (k.bindings.length > lim.maxStorageBuffersPerShaderStage)
        throw new Error(
          `kiln bundle: kernel ${k.name} binds ${k.bindings.length} storage buffers; the device allows ${lim.maxStorageBuffersPerShaderStage}`,
        );
    }
    for (const b of m.buffers)
      if (b.bytes > lim.maxBufferSize)
        throw new Error(`kiln bundle: buffer ${b.label} is ${b.bytes} bytes; the device allows ${lim.maxBufferSize}`);
    const bound = (v: { shape: readonly BundleDim[] }) => Math.max(4, numel(v.shape, m.dims) * 4);

    const made: GPUBuffer[] = [];
    const create = (label: string, bytes: number, usage: number) => {
      const b = device.createBuffer({ label, size: Math.max(4, Math.ceil(bytes / 4) * 4), usage });
      made.push(b);
      return b;
    };
    try {
      const buffers = await scoped(device, "creating buffers", () =>
        m.buffers.map((b) => {
          const buf = create(b.label, b.bytes, STORAGE | COPY_DST | COPY_SRC);
          if (b.kind === "state") {
            const d = weights.get(b.state!)!.data;
            device.queue.writeBuffer(buf, 0, d instanceof Uint8Array ? Uint32Array.from(d) : d); // bool is stored as u32
          } else if (b.kind === "const") {
            const T = b.dtype === "i32" ? Int32Array : b.dtype === "f32" ? Float32Array : Uint32Array;
            if (b.data!.length) device.queue.writeBuffer(buf, 0, T.from(b.data!));
          }
          return buf;
        }),
      );
      // Pipelines compile concurrently; one module per distinct WGSL text.
      const modules = new Map<string, Promise<GPUComputePipeline>>();
      const pipelines = await Promise.all(
        m.kernels.map(async (k) => {
          const code = await files.text(k.file);
          let p = modules.get(code);
          if (!p) modules.set(code, (p = compilePipeline(device, k, code)));
          return p;
        }),
      );
      const values = new Map(m.values.map((v) => [v.id, v]));
      const uniforms = m.kernels.map((k) =>
        k.uniforms.length ? create(`${k.name} dims`, Math.ceil(k.uniforms.length / 4) * 16, UNIFORM | COPY_DST) : undefined,
      );
      const groups = await scoped(device, "building bind groups", () =>
        m.kernels.map((k, i) => {
          const entries: GPUBindGroupEntry[] = k.bindings.map((b, j) => {
            const v = values.get(b.value)!;
            return { binding: j, resource: { buffer: buffers[v.buffer], offset: v.offset, size: bound(v) } };
          });
          if (uniforms[i]) entries.push({ binding: k.bindings.length, resource: { buffer: uniforms[i]! } });
          return device.createBindGroup({ label: k.name, layout: pipelines[i].getBindGroupLayout(0), entries });
        }),
      );
      const staging = m.outputs.map((o) => create(`out ${o.name}`, bound(o), MAP_READ | COPY_DST));
      return new Bundle(device, m, buffers, pipelines, groups, uniforms, staging);
    } catch (e) {
      made.forEach((b) => b.destroy());
      throw e;
    }
  }

  /** Run once: `inputs` by name; symbolic dims are solved from the input lengths unless given. */
  async call(inputs: Readonly<Record<string, HostArray>>, dims: Readonly<Record<string, number>> = {}): Promise<Record<string, HostArray>> {
    if (this.disposed) throw new Error("kiln bundle: the model was disposed");
    const { device, manifest: m } = this;
    const env = this.bind(inputs, dims);
    const key = JSON.stringify(env);
    if (key !== JSON.stringify(this.env)) {
      m.kernels.forEach(
        (k, i) =>
          this.uniforms[i] &&
          device.queue.writeBuffer(
            this.uniforms[i]!,
            0,
            Uint32Array.from(k.uniforms, (d) => env[d]),
          ),
      );
      this.counts = m.kernels.map((k) => counts(k.dispatch, env, device.limits.maxComputeWorkgroupsPerDimension, k.name));
      this.env = env;
    }
    const { values } = this;
    await scoped(device, "running", () => {
      for (const i of m.inputs) {
        const d = inputs[i.name];
        if (i.value === null || d.length === 0) continue;
        const v = values.get(i.value)!;
        device.queue.writeBuffer(this.buffers[v.buffer], v.offset, d instanceof Uint8Array ? Uint32Array.from(d) : d);
      }
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      m.kernels.forEach((_, i) => {
        const c = this.counts[i];
        if (!c) return;
        pass.setPipeline(this.pipelines[i]);
        pass.setBindGroup(0, this.groups[i]);
        pass.dispatchWorkgroups(...c);
      });
      pass.end();
      // Outputs first: this call's values, even one that is a state update written in place.
      m.outputs.forEach((o, i) => {
        const v = values.get(o.value)!;
        const n = numel(o.shape, env) * 4;
        if (n) enc.copyBufferToBuffer(this.buffers[v.buffer], v.offset, this.staging[i], 0, n);
      });
      for (const s of m.state) {
        if (s.update === null) continue;
        const v = values.get(s.update)!;
        if (v.buffer !== s.buffer)
          enc.copyBufferToBuffer(this.buffers[v.buffer], v.offset, this.buffers[s.buffer], 0, numel(s.shape, {}) * 4);
      }
      device.queue.submit([enc.finish()]);
    });
    const out: Record<string, HostArray> = {};
    await Promise.all(
      m.outputs.map(async (o, i) => {
        const n = numel(o.shape, env);
        const st = this.staging[i];
        await st.mapAsync(MAP_READ, 0, Math.max(4, n * 4));
        const bits = new Uint32Array(st.getMappedRange(0, Math.max(4, n * 4)).slice(0), 0, n);
        st.unmap();
        out[o.name] = o.dtype === "bool" ? Uint8Array.from(bits) : new ARRAYS[o.dtype](bits.buffer, 0, n);
      }),
    );
    return out;
  }

  /** Check every input's presence, type and length, and solve the symbolic dims. */
  private bind(inputs: Readonly<Record<string, HostArray>>, given: Readonly<Record<string, number>>): Record<string, number> {
    const m = this.manifest;
    const env: Record<string, number> = { ...given };
    for (const i of m.inputs) {
      const d = inputs[i.name];
      if (d === undefined)
        throw new Error(`kiln bundle: input "${i.name}" ${fmt(i)} is missing (inputs: ${m.inputs.map((x) => x.name).join(", ")})`);
      const T = ARRAYS[i.dtype];
      if (!(d instanceof T))
        throw new Error(
          `kiln bundle: input "${i.name}" ${fmt(i)} must be a ${T.name}, got ${(d as object)?.constructor?.name ?? typeof d}`,
        );
    }
    for (const name of Object.keys(inputs))
      if (!m.inputs.some((i) => i.name === name))
        throw new Error(`kiln bundle: unknown input "${name}" (inputs: ${m.inputs.map((x) => x.name).join(", ")})`);
    // Solve a dim from an input whose shape has it as its only unknown.
    for (let changed = true; changed; ) {
      changed = false;
      for (const i of m.inputs) {
        const open = i.shape.filter((d): d is string => typeof d === "string" && env[d] === undefined);
        if (open.length !== 1 || i.shape.filter((d) => d === open[0]).length !== 1) continue;
        const rest = numel(
          i.shape.filter((d) => d !== open[0]),
          env,
        );
        const len = inputs[i.name].length;
        if (rest === 0 || len % rest !== 0)
          throw new Error(`kiln bundle: input "${i.name}" ${fmt(i)} has ${len} values, not a multiple of ${rest}`);
        env[open[0]] = len / rest;
        changed = true;
      }
    }
    for (const [d, b] of Object.entries(m.dims)) {
      const v = env[d];
      if (v === undefined) throw new Error(`kiln bundle: dim ${d} is not bound by any input; pass it: run(inputs, { ${d}: n })`);
      if (!Number.isSafeInteger(v) || v < 1) throw new Error(`kiln bundle: dim ${d} = ${v} must be a positive integer`);
      if (v > b) throw new Error(`kiln bundle: dim ${d} = ${v} exceeds the bundle's bound ${b} (rebuild with a larger --batch)`);
    }
    for (const i of m.inputs) {
      const want = numel(i.shape, env);
      if (inputs[i.name].length !== want)
        throw new Error(
          `kiln bundle: input "${i.name}" ${fmt(i)} with ${JSON.stringify(env)} needs ${want} values, got ${inputs[i.name].length}`,
        );
    }
    return env;
  }

  /** The current values of the resident inputs (weights, optimizer state). */
  async readState(): Promise<Record<string, HostArray>> {
    if (this.disposed) throw new Error("kiln bundle: the model was disposed");
    const out: Record<string, HostArray> = {};
    for (const s of this.manifest.state) {
      const bytes = Math.max(4, numel(s.shape, {}) * 4);
      const st = this.device.createBuffer({ label: `read ${s.name}`, size: bytes, usage: MAP_READ | COPY_DST });
      const enc = this.device.createCommandEncoder();
      enc.copyBufferToBuffer(this.buffers[s.buffer], 0, st, 0, bytes);
      this.device.queue.submit([enc.finish()]);
      await st.mapAsync(MAP_READ);
      const bits = new Uint32Array(st.getMappedRange().slice(0), 0, numel(s.shape, {}));
      st.destroy();
      out[s.name] = s.dtype === "bool" ? Uint8Array.from(bits) : new ARRAYS[s.dtype](bits.buffer, 0, bits.length);
    }
    return out;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const b of [...this.buffers, ...this.staging, ...this.uniforms]) b?.destroy();
  }
}

async function compilePipeline(device: GPUDevice, k: Manifest["kernels"][number], code: string): Promise<GPUComputePipeline> {
  return scoped(device, `compiling kernel ${k.name} (${k.file})`, async () => {
    const module = device.createShaderModule({ label: k.name, code });
    const errors = (await module.getCompilationInfo()).messages.filter((x) => x.type === "error");
    if (errors.length)
      throw new Error(
        `kiln bundle: ${k.file} does not compile:\n${errors.map((e) => `  ${e.lineNum}:${e.linePos}: ${e.message}`).join("\n")}`,
      );
    const entries: GPUBindGroupLayoutEntry[] = k.bindings.map((b, i) => ({
      binding: i,
      visibility: 4 /* COMPUTE */,
      buffer: { type: b.access === "read" ? "read-only-storage" : "storage" },
    }));
    if (k.uniforms.length) entries.push({ binding: k.bindings.length, visibility: 4, buffer: { type: "uniform" } });
    const layout = device.createPipelineLayout({ bindGroupLayouts: [device.createBindGroupLayout({ entries })] });
    return device.createComputePipelineAsync({ label: k.name, layout, compute: { module, entryPoint: "main" } });
  });
}
