/** The generic part of every bundle's loader: compiler/bundle/loader.ts copies this text (less
 *  its imports) after the other shipped files (the error classes, the safetensors codec, the
 *  manifest and its validator, the executor core) into the generated module, so it may use
 *  nothing but WebGPU, fetch/crypto.subtle and, inside fromDirectory only, node:fs.
 *    open: everything is checked before the device sees anything — the manifest (structure and
 *          consistency against the device's limits: validateManifest), the loader's signature,
 *          the weights (size, SHA-256, the one safetensors decoder, names and types) and the
 *          integrity hash over the whole bundle (manifest, kernels, weights) that the loader was
 *          generated with; then pipelines compile and runtime/executor.ts makes every buffer and
 *          bind group of the memory planned at build time.
 *    call: check inputs and bind the dims, then the executor's run (one submission); calls on
 *          one bundle are queued, never interleaved on its buffers. */
import { KilnError } from "../src/ir/kiln-error.ts";
import { decodeSafetensors, fromSafeDtype, type SafeTensor } from "../formats/safetensors-codec.ts";
import { integrityFiles, integrityInput, validateManifest, type BundleDim, type Manifest } from "../formats/bundle-manifest.ts";
import {
  compileKernel,
  deviceHooks,
  Executor,
  numelAt,
  readBack,
  Serial,
  type ExecutorHooks,
  type HostArray,
  type StorageArray,
} from "./executor.ts";

/** Where the bundle's files come from: a folder (fromDirectory), a URL (fromUrl) or your own. */
export interface BundleFiles {
  text(name: string): Promise<string>;
  bytes(name: string): Promise<Uint8Array>;
}

/** A name a bundle may hold: manifest.json, weights.safetensors, kernels/<name>.wgsl. */
const BUNDLE_FILE = /^(kernels\/)?[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

function confined(name: string): string {
  if (!BUNDLE_FILE.test(name) || name.includes(".."))
    throw new KilnError(`kiln bundle: ${JSON.stringify(name)} is not a file of the bundle (no "..", no other folders, no absolute paths)`);
  return name;
}

/** Node: files in `dir` (node:fs is imported only here, so a browser never loads it); only names
 *  inside it are read. */
export function fromDirectory(dir: string): BundleFiles {
  // A computed specifier: type-checks without Node's types and bundlers leave it alone.
  const fs = () => import("node:fs/promises" as string) as Promise<{ readFile(p: string): Promise<Uint8Array> }>;
  const read = async (name: string) => {
    confined(name);
    try {
      return new Uint8Array(await (await fs()).readFile(`${dir}/${name}`));
    } catch (e) {
      throw new KilnError(`kiln bundle: cannot read ${dir}/${name} (${(e as Error).message})`);
    }
  };
  return { bytes: read, text: async (name) => new TextDecoder().decode(await read(name)) };
}

/** Browser (or Node 20's fetch): files under `base`, e.g. "/models/mnist/"; only URLs under it are fetched. */
export function fromUrl(base: string): BundleFiles {
  const get = async (name: string) => {
    // A relative base (a browser's "/models/mnist/") resolves against the page.
    const page = (globalThis as { location?: { href: string } }).location?.href;
    const root = new URL(base, page);
    const url = new URL(confined(name), root);
    if (!url.href.startsWith(root.href)) throw new KilnError(`kiln bundle: ${name} resolves outside ${root.href}`);
    const r = await fetch(url);
    if (!r.ok) throw new KilnError(`kiln bundle: fetching ${name} from ${base}: HTTP ${r.status}`);
    return r;
  };
  return { text: async (name) => (await get(name)).text(), bytes: async (name) => new Uint8Array(await (await get(name)).arrayBuffer()) };
}

const ARRAYS = { f32: Float32Array, i32: Int32Array, u32: Uint32Array, bool: Uint8Array } as const;
const fmt = (t: { dtype: string; shape: readonly BundleDim[] }) => `${t.dtype}[${t.shape.join(",")}]`;
const hex = (b: ArrayBuffer) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");
const sha256 = async (bytes: Uint8Array) => hex(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
/** Host data in storage form: bool as u32. */
const toBits = (d: HostArray): StorageArray => (d instanceof Uint8Array ? Uint32Array.from(d) : d);

/** What a generated loader checks a bundle against: the model it was generated for. */
export interface BundleSignature {
  readonly name: string;
  readonly mode: string;
  readonly inputs: readonly { readonly name: string; readonly dtype: string; readonly shape: readonly BundleDim[] }[];
  readonly outputs: readonly { readonly name: string; readonly dtype: string; readonly shape: readonly BundleDim[] }[];
}

const signatureOf = (m: Manifest): BundleSignature => ({
  name: m.name,
  mode: m.mode,
  inputs: m.inputs.map(({ name, dtype, shape }) => ({ name, dtype, shape })),
  outputs: m.outputs.map(({ name, dtype, shape }) => ({ name, dtype, shape })),
});

export interface OpenOptions {
  /** The model the loader was generated for: a manifest of another is refused. */
  readonly signature?: BundleSignature;
  /** SHA-256 (hex) over the whole bundle (integrityInput): any other file is refused. */
  readonly integrity?: string;
}

/** The weights file decoded (formats/safetensors-codec.ts) and held to the manifest's state:
 *  every state input present with its type, nothing else. */
export function bundleWeights(m: Pick<Manifest, "state" | "weights">, bytes: Uint8Array): Map<string, SafeTensor> {
  let tensors: Record<string, SafeTensor>;
  try {
    tensors = decodeSafetensors(bytes, m.weights.file).tensors;
  } catch (e) {
    throw new KilnError(`kiln bundle: ${(e as Error).message}`);
  }
  for (const s of m.state) {
    const w = Object.hasOwn(tensors, s.name) ? tensors[s.name] : undefined;
    if (!w) throw new KilnError(`kiln bundle: ${m.weights.file} lacks "${s.name}" ${fmt(s)}`);
    const t = { dtype: fromSafeDtype(w.dtype), shape: w.shape };
    if (t.dtype !== s.dtype || t.shape.join() !== s.shape.join())
      throw new KilnError(`kiln bundle: ${m.weights.file}: "${s.name}" is ${fmt(t)}, the manifest says ${fmt(s)}`);
  }
  for (const name of Object.keys(tensors))
    if (!m.state.some((s) => s.name === name))
      throw new KilnError(
        `kiln bundle: ${m.weights.file} holds "${name}", which is no state input of the manifest (${m.state.map((s) => s.name).join(", ")})`,
      );
  return new Map(Object.entries(tensors));
}

/** A loaded bundle: its buffers, pipelines and bind groups, made once. */
export class Bundle {
  private disposed = false;
  private readonly serial = new Serial();
  private pending = 0;

  private constructor(
    readonly device: GPUDevice,
    readonly manifest: Manifest,
    private readonly core: Executor,
    private readonly hooks: ExecutorHooks,
  ) {}

  static async open(device: GPUDevice, files: BundleFiles, opts: OpenOptions = {}): Promise<Bundle> {
    const manifestBytes = await files.bytes("manifest.json");
    let raw: unknown;
    try {
      raw = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(manifestBytes));
    } catch (e) {
      throw new KilnError(`kiln bundle: manifest.json is not valid JSON (${(e as Error).message})`);
    }
    const m = validateManifest(raw, "manifest.json", device.limits, device.features);
    const sig = opts.signature;
    if (sig && JSON.stringify(signatureOf(m)) !== JSON.stringify(sig))
      throw new KilnError(
        `kiln bundle: manifest.json describes "${m.name}" (${m.mode}) with other inputs or outputs than this loader was generated for ("${sig.name}")`,
      );
    const bytes = await files.bytes(m.weights.file);
    if (bytes.length !== m.weights.bytes)
      throw new KilnError(
        `kiln bundle: ${m.weights.file} is ${bytes.length} bytes, the manifest says ${m.weights.bytes}: truncated or replaced`,
      );
    const sha = await sha256(bytes);
    if (sha !== m.weights.sha256)
      throw new KilnError(
        `kiln bundle: ${m.weights.file} has SHA-256 ${sha}, the manifest says ${m.weights.sha256}: the weights were altered`,
      );
    const weights = bundleWeights(m, bytes);
    const kernelFiles = integrityFiles(m).slice(1, -1);
    const kernelBytes = await Promise.all(kernelFiles.map((f) => files.bytes(f)));
    if (opts.integrity !== undefined) {
      const parts = [["manifest.json", manifestBytes], ...kernelFiles.map((f, i) => [f, kernelBytes[i]]), [m.weights.file, bytes]] as const;
      const got = await sha256(integrityInput(parts as readonly (readonly [string, Uint8Array])[]));
      if (got !== opts.integrity)
        throw new KilnError(
          `kiln bundle: the bundle's files (manifest.json, kernels, ${m.weights.file}) have SHA-256 ${got}, not ${opts.integrity} as built with this loader: altered or mixed with another build`,
        );
    }
    const code = new Map<string, string>();
    kernelFiles.forEach((f, i) => {
      try {
        code.set(f, new TextDecoder("utf-8", { fatal: true }).decode(kernelBytes[i]));
      } catch {
        throw new KilnError(`kiln bundle: ${f} is not UTF-8 text`);
      }
    });
    // Only now the device: pipelines compile concurrently, one module per distinct WGSL text.
    const modules = new Map<string, Promise<GPUComputePipeline>>();
    const pipelines = await Promise.all(
      m.kernels.map((k) => {
        const text = code.get(k.file)!;
        let p = modules.get(text);
        if (!p) modules.set(text, (p = compileKernel(device, k, text, `kiln bundle: compiling kernel ${k.name} (${k.file})`)));
        return p;
      }),
    );
    const hooks = deviceHooks(device, "kiln bundle: ", (i) => m.kernels[i].file);
    const core = await Executor.create(device, m, pipelines, hooks, { stateData: (name) => toBits(weights.get(name)!.data) });
    return new Bundle(device, m, core, hooks);
  }

  /** Queued behind every earlier call; refused once disposed. */
  private queued<T>(fn: () => Promise<T>): Promise<T> {
    if (this.disposed) return Promise.reject(new KilnError("kiln bundle: the model was disposed"));
    this.pending++;
    return this.serial.run(async () => {
      try {
        if (this.disposed) throw new KilnError("kiln bundle: the model was disposed");
        return await fn();
      } finally {
        if (--this.pending === 0 && this.disposed) this.core.dispose();
      }
    });
  }

  /** Run once: `inputs` by name; symbolic dims are solved from the input lengths unless given.
   *  Overlapping calls run one after another. */
  call(inputs: Readonly<Record<string, HostArray>>, dims: Readonly<Record<string, number>> = {}): Promise<Record<string, HostArray>> {
    return this.queued(async () => {
      const env = this.bind(inputs, dims);
      const uploads = new Map(this.manifest.inputs.map((i) => [i.name, toBits(inputs[i.name])] as const));
      return this.core.run(
        env,
        uploads,
        this.manifest.outputs.map((o) => o.name),
      );
    });
  }

  /** Check every input's presence, type and length, and solve the symbolic dims. */
  private bind(inputs: Readonly<Record<string, HostArray>>, given: Readonly<Record<string, number>>): Record<string, number> {
    const m = this.manifest;
    const env: Record<string, number> = { ...given };
    for (const i of m.inputs) {
      const d = inputs[i.name];
      if (d === undefined)
        throw new KilnError(`kiln bundle: input "${i.name}" ${fmt(i)} is missing (inputs: ${m.inputs.map((x) => x.name).join(", ")})`);
      const T = ARRAYS[i.dtype];
      if (!(d instanceof T))
        throw new KilnError(
          `kiln bundle: input "${i.name}" ${fmt(i)} must be a ${T.name}, got ${(d as object)?.constructor?.name ?? typeof d}`,
        );
    }
    for (const name of Object.keys(inputs))
      if (!m.inputs.some((i) => i.name === name))
        throw new KilnError(`kiln bundle: unknown input "${name}" (inputs: ${m.inputs.map((x) => x.name).join(", ")})`);
    // Solve a dim from an input whose shape has it as its only unknown.
    for (let changed = true; changed; ) {
      changed = false;
      for (const i of m.inputs) {
        const open = i.shape.filter((d): d is string => typeof d === "string" && env[d] === undefined);
        if (open.length !== 1 || i.shape.filter((d) => d === open[0]).length !== 1) continue;
        const rest = numelAt(
          i.shape.filter((d) => d !== open[0]),
          env,
        );
        const len = inputs[i.name].length;
        if (rest === 0 || len % rest !== 0)
          throw new KilnError(`kiln bundle: input "${i.name}" ${fmt(i)} has ${len} values, not a multiple of ${rest}`);
        env[open[0]] = len / rest;
        changed = true;
      }
    }
    for (const [d, b] of Object.entries(m.dims)) {
      const v = env[d];
      if (v === undefined) throw new KilnError(`kiln bundle: dim ${d} is not bound by any input; pass it: run(inputs, { ${d}: n })`);
      if (!Number.isSafeInteger(v) || v < 1) throw new KilnError(`kiln bundle: dim ${d} = ${v} must be a positive integer`);
      if (v > b) throw new KilnError(`kiln bundle: dim ${d} = ${v} exceeds the bundle's bound ${b} (rebuild with a larger --batch)`);
    }
    for (const i of m.inputs) {
      const want = numelAt(i.shape, env);
      if (inputs[i.name].length !== want)
        throw new KilnError(
          `kiln bundle: input "${i.name}" ${fmt(i)} with ${JSON.stringify(env)} needs ${want} values, got ${inputs[i.name].length}`,
        );
    }
    return env;
  }

  /** The current values of the resident inputs (weights, optimizer state). */
  readState(): Promise<Record<string, HostArray>> {
    return this.queued(async () => {
      const out: Record<string, HostArray> = {};
      for (const s of this.manifest.state)
        out[s.name] = await readBack(this.device, this.hooks, s.name, this.core.stateBuffer(s.name), numelAt(s.shape, {}) * 4, s.dtype);
      return out;
    });
  }

  /** Free the GPU buffers (after the calls already queued). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.pending === 0) this.core.dispose();
  }
}
