/** `kiln build <model> --out <dir>`: compile a model ahead of time into a standalone bundle
 *  (compiler/bundle/emit.ts describes the layout). The model is a saved-model folder
 *  (TrainedModel.save: model.kir + weights.safetensors, and train.kir + train.json for --train)
 *  or a module default-exporting { graph, state, dims, weights }. The folder is written whole
 *  or not at all: into <dir>.tmp-<pid>, then renamed over <dir>. */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, extname, join, resolve } from "node:path";
import { emitBundle, type BundleFiles } from "../compiler/bundle/emit.ts";
import { compile } from "../compiler/pipeline.ts";
import { CPU_TARGET, GPU_TARGET, withFeatures } from "../compiler/target.ts";
import { withTuning, type Tuning } from "../compiler/tuning.ts";
import { acquireGpu, releaseGpu } from "../runtime/device.ts";
import { asTuning, readTuning } from "../runtime/tuning-cache.ts";
import { inputNodes } from "../src/ir/bind.ts";
import { KilnError } from "../src/ir/errors.ts";
import { parseGraph } from "../src/ir/parse.ts";
import { formatType } from "../src/ir/shape.ts";
import type { Graph } from "../src/ir/types.ts";
import { isOnnxSpec, onnxSpecInput, onnxTrainInput, type FineTuneFlags } from "./fine-tune.ts";
import { importOnnxFile } from "./import.ts";
import { loadModule, type Model as LoadedModel } from "./model-file.ts";
import type { Loss, LossName } from "../src/api/losses.ts";
import { Model, predictGraph, trainStepGraph, type MetricName } from "../src/api/model.ts";
import type { Optimizer } from "../src/api/optimizer.ts";
import { encodeSafetensors, readSafetensors, toSafeDtype, type SafeTensor } from "../formats/safetensors.ts";

export type WeightArray = Float32Array | Int32Array | Uint32Array | Uint8Array;

export interface BuildInput {
  readonly graph: Graph;
  /** Resident state, as CompileOptions.state: input → its update output (null: kept). */
  readonly state: Readonly<Record<string, string | null>>;
  /** A value for every resident input. */
  readonly weights: Readonly<Record<string, WeightArray>>;
  /** Declared bounds of the symbolic dims, e.g. { B: 64 }. */
  readonly dims: Readonly<Record<string, number>>;
}

export interface BuildOptions {
  readonly name: string;
  readonly mode?: "inference" | "train";
  /** Fuse elementwise chains (default true). */
  readonly fuse?: boolean;
  /** Which kernel variants: "gpu" (workgroup-tiled GEMMs, default) or "cpu" (register-blocked,
   *  for software rasterizers such as lavapipe). */
  readonly target?: "gpu" | "cpu";
  /** GEMM configurations tuned for an adapter (runtime/tuning-cache.ts); without, the portable
   *  defaults. Only those for the target's GEMM writer apply. */
  readonly tuning?: Tuning;
  /** "mixed": activations stored as f16 (compiler/precision.ts); the bundle then needs the
   *  device's `shader-f16` (manifest.features). Default "f32". */
  readonly precision?: "f32" | "mixed";
  /** Optional WebGPU features the kernels may use (compiler/target.ts KERNEL_FEATURES, e.g.
   *  ["subgroups"]); the manifest then requires them of the device. Default none: the bundle runs
   *  on any WebGPU device. */
  readonly features?: readonly string[];
}

/** Compile and emit a bundle in memory. */
export function buildBundle(input: BuildInput, opts: BuildOptions): BundleFiles {
  const target = withTuning(withFeatures(opts.target === "cpu" ? CPU_TARGET : GPU_TARGET, opts.features ?? []), opts.tuning);
  const tensors: Record<string, SafeTensor> = {};
  for (const n of inputNodes(input.graph)) {
    const name = n.attrs.name;
    if (!(name in input.state)) continue;
    const data = input.weights[name];
    if (!data) throw new KilnError(`build: no weights for resident input "${name}" ${formatType(n.type)}`);
    const dtype = toSafeDtype(n.type.dtype);
    tensors[name] = {
      dtype,
      shape: n.type.shape as number[],
      data: dtype === "BOOL" && !(data instanceof Uint8Array) ? Uint8Array.from(data) : data,
    };
  }
  const weights = encodeSafetensors(tensors, { format: "kiln-bundle-weights/1" });
  // maxStorageBuffers 8: WebGPU's default limit, so the bundle runs on any device.
  const program = compile(input.graph, {
    state: input.state,
    dims: input.dims,
    fuse: opts.fuse ?? true,
    target,
    maxStorageBuffers: 8,
    precision: opts.precision ?? "f32",
  });
  return emitBundle(program, {
    name: opts.name,
    mode: opts.mode ?? (Object.values(input.state).some((o) => o !== null) ? "train" : "inference"),
    weights,
    target: target.name,
    fuse: opts.fuse ?? true,
  });
}

/** Write `files` as the folder `dir`, replacing it whole. */
export function writeBundle(dir: string, files: BundleFiles): void {
  const tmp = `${dir.replace(/\/+$/, "")}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  try {
    for (const [path, data] of files) {
      mkdirSync(dirname(join(tmp, path)), { recursive: true });
      writeFileSync(join(tmp, path), data);
    }
    const old = `${dir.replace(/\/+$/, "")}.old-${process.pid}`;
    if (existsSync(dir)) renameSync(dir, old);
    renameSync(tmp, dir);
    rmSync(old, { recursive: true, force: true });
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** A module exporting a model of the model API (src/api/model.ts), untrained: its weights are
 *  its initialisers' values for `seed` (as compileModel's), so a training bundle starts where
 *  fit would. --train needs the optimizer and loss. */
export interface KerasSpec {
  readonly model: Model;
  readonly optimizer?: Optimizer;
  readonly loss?: LossName | Loss;
  readonly metrics?: readonly MetricName[];
  readonly l2?: number;
  readonly seed?: number;
}

export function fromKerasSpec(file: string, spec: KerasSpec, train: boolean): { input: Omit<BuildInput, "dims"> } {
  const seed = spec.seed ?? 0;
  if (train && (!spec.optimizer || !spec.loss))
    throw new KilnError(`${file}: a training bundle needs { model, optimizer, loss } (got ${Object.keys(spec).join(", ")})`);
  const mg = train
    ? trainStepGraph(spec.model, { optimizer: spec.optimizer!, loss: spec.loss!, metrics: spec.metrics, l2: spec.l2 })
    : predictGraph(spec.model);
  const weights: Record<string, WeightArray> = {};
  for (const p of mg.params) weights[p.name] = p.initial(seed);
  for (const v of mg.variables) weights[v.name] = v.initial(seed);
  for (const s of mg.slots) weights[s.name] = new Float32Array(s.shape.reduce((a, d) => a * d, 1)).fill(s.init);
  return { input: { graph: mg.graph, state: mg.state, weights } };
}

/** A model argument: a saved-model folder, an .onnx file (with --train, fine-tuned as the flags
 *  say: ./fine-tune.ts), a module with { graph, state, dims?, weights }, a module with { model,
 *  optimizer?, loss?, metrics?, seed? } (see KerasSpec), or one with { onnx, loss?, optimizer?,
 *  trainable? } (./fine-tune.ts OnnxSpec). */
async function resolveModel(
  model: string,
  train: boolean,
  flags: FineTuneFlags = {},
): Promise<{ input: Omit<BuildInput, "dims">; dims?: Record<string, number> }> {
  if (existsSync(model) && statSync(model).isDirectory()) {
    const file = readSafetensors(join(model, "weights.safetensors"));
    const weights = Object.fromEntries(Object.entries(file.tensors).map(([k, v]) => [k, v.data]));
    if (train) {
      if (!existsSync(join(model, "train.kir")))
        throw new KilnError(`${model}: no train.kir (saved by an older Kiln?); save the model again to build a training bundle`);
      const graph = parseGraph(readFileSync(join(model, "train.kir"), "utf8"));
      const { state } = JSON.parse(readFileSync(join(model, "train.json"), "utf8")) as { state: Record<string, string | null> };
      return { input: { graph, state, weights } };
    }
    const graph = parseGraph(readFileSync(join(model, "model.kir"), "utf8"));
    const state = Object.fromEntries(
      inputNodes(graph)
        .filter((n) => n.attrs.name in file.tensors)
        .map((n) => [n.attrs.name, null]),
    );
    return { input: { graph, state, weights } };
  }
  if (extname(model) === ".onnx") {
    if (train) return { input: onnxTrainInput(model, flags) };
    const { graph, state, weights } = importOnnxFile(model);
    return { input: { graph, state, weights } };
  }
  if (extname(model) === ".kir")
    throw new KilnError(`${model}: a .kir file has no weights; build a saved-model folder (TrainedModel.save) or a module`);
  const spec = await loadModule(model);
  if (isOnnxSpec(spec)) return { input: onnxSpecInput(model, spec, train) };
  if (typeof spec === "object" && spec !== null && (spec as KerasSpec).model instanceof Model)
    return fromKerasSpec(model, spec as KerasSpec, train);
  const m = spec as Partial<LoadedModel> & { weights?: Record<string, WeightArray> };
  if (typeof m !== "object" || m === null || !m.graph)
    throw new KilnError(
      `${model}: the default export must be { graph, state, dims?, weights } or { model, optimizer?, loss?, metrics?, seed? } (got ${typeof spec})`,
    );
  if (!m.weights)
    throw new KilnError(
      `${model}: no weights; build a saved-model folder (TrainedModel.save), a module exporting { graph, state, dims?, weights }, or one exporting { model, optimizer?, loss? } (initial weights)`,
    );
  if (!m.state) throw new KilnError(`${model}: a module to build must export state (resident inputs → their updates, or null)`);
  return { input: { graph: m.graph, state: m.state, weights: m.weights }, dims: m.dims };
}

/** --tuned: the tuning cache's configurations for this machine's adapter (read even when
 *  KILN_TUNING=off: the flag asks for them), saying when there are none for `target`'s writer. */
async function adapterTuning(target: "gpu" | "cpu"): Promise<Tuning | undefined> {
  try {
    const gpu = await acquireGpu();
    const tuning = asTuning(gpu.adapterId, readTuning(gpu.adapterId));
    const writer = (target === "cpu" ? CPU_TARGET : GPU_TARGET).gemm;
    if (!Object.values(tuning?.configs ?? {}).some((c) => c.writer === writer))
      console.log(
        `--tuned: the tuning cache has no ${writer} configurations for ${gpu.adapter} (kiln tune <model> makes them): portable defaults`,
      );
    return tuning;
  } finally {
    await releaseGpu();
  }
}

/** kiln build: compile a model into a standalone bundle folder. */
export async function build(
  model: string,
  opts: {
    out: string;
    batch?: string;
    train?: boolean;
    fuse: boolean;
    target: string;
    tuned?: boolean;
    precision?: string;
    subgroups?: boolean;
  } & FineTuneFlags,
): Promise<void> {
  if (opts.target !== "gpu" && opts.target !== "cpu") throw new KilnError(`build: --target must be gpu or cpu, got "${opts.target}"`);
  const precision = opts.precision ?? "f32";
  if (precision !== "f32" && precision !== "mixed") throw new KilnError(`build: --precision must be f32 or mixed, got "${precision}"`);
  const batch = opts.batch === undefined ? undefined : Number(opts.batch);
  if (batch !== undefined && !(Number.isSafeInteger(batch) && batch >= 1))
    throw new KilnError(`build: --batch must be a positive integer, got "${opts.batch}"`);
  const flags = { loss: opts.loss, optimizer: opts.optimizer, lr: opts.lr, trainable: opts.trainable };
  const flagged = Object.entries(flags).filter(([, v]) => v !== undefined);
  if (flagged.length && !(opts.train && extname(model) === ".onnx"))
    throw new KilnError(
      `build: --${flagged.map(([k]) => k).join(", --")} fine-tune an ONNX model: they go with a .onnx file and --train (a saved model or module brings its own loss and optimizer)`,
    );
  const { input, dims: declared } = await resolveModel(model, opts.train ?? false, flags);
  const dims = { ...declared, ...(batch !== undefined || !declared?.B ? { B: batch ?? 32 } : {}) };
  const tuning = opts.tuned ? await adapterTuning(opts.target) : undefined;
  const t0 = performance.now();
  const files = buildBundle(
    { ...input, dims },
    {
      name: basename(resolve(model)).replace(/\.[^.]*$/, ""),
      mode: opts.train ? "train" : "inference",
      fuse: opts.fuse,
      target: opts.target,
      tuning,
      precision,
      features: opts.subgroups ? ["subgroups"] : [],
    },
  );
  writeBundle(opts.out, files);
  const kernels = [...files.keys()].filter((f) => f.startsWith("kernels/")).length;
  const bytes = [...files.values()].reduce((a, f) => a + (typeof f === "string" ? Buffer.byteLength(f) : f.length), 0);
  console.log(
    `${opts.out}: ${kernels} kernels, ${files.size} files, ${(bytes / 1024).toFixed(1)} KiB (dims ${JSON.stringify(dims)}, ${(performance.now() - t0).toFixed(0)} ms)`,
  );
}
