/** Keras-like training on the GPU: `compileModel(model, { optimizer, loss, metrics })`, then
 *  fit / evaluate / predict / save / load.
 *
 *  One training step is one compiled graph (src/api/model.ts trainStepGraph): forward, loss,
 *  backward and the optimizer's update, run as one submission over resident state — parameters,
 *  optimizer slots, batchNorm statistics and the step counter never leave the GPU. The step also
 *  adds its loss and metric counts into resident scalars, so during an epoch only those few
 *  scalars come back, and only when the progress bar is redrawn (every `logEvery` steps) and at
 *  the epoch's end. Batches upload x and y only; the batch dim is symbolic with the batch size
 *  as its declared bound, so the smaller last batch reuses the same memory plan.
 *
 *  The weights live where they were last changed: on the host (after init, load, or a
 *  restore), or in the training executable. Evaluation and prediction have executables of their
 *  own (inference mode: dropout off, batchNorm on its moving statistics), brought up to date
 *  through the host when they are behind. */
import { AsyncLocalStorage } from "node:async_hooks";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { mulberry32 } from "../src/api/initializers.ts";
import { lossByName, type Loss, type LossName } from "../src/api/losses.ts";
import { evalGraph, metricName, predictGraph, trainStepGraph, type MetricAlias, type Model, type ModelGraph } from "../src/api/model.ts";
import { checkChoice, checkInt, checkOptions, checkRange, didYouMean } from "../src/api/options.ts";
import { callSite } from "../src/api/site.ts";
import type { Optimizer } from "../src/api/optimizer.ts";
import { optimizerByName, type OptimizerName } from "../src/api/optimizers.ts";
import { inputNodes } from "../src/ir/bind.ts";
import { GpuError, KilnError } from "../src/ir/errors.ts";
import { formatType } from "../src/ir/shape.ts";
import { toStorage } from "../runtime/buffers.ts";
import { parseGraph } from "../src/ir/parse.ts";
import { printGraph } from "../src/ir/print.ts";
import type { HostTensor } from "../src/ir/host.ts";
import { Executable, type OutputTensor } from "../runtime/execute.ts";
import { acquireGpu } from "../runtime/device.ts";
import { resolvePrecision, type Precision } from "../compiler/precision.ts";
import { MAX_SCALE, MIN_SCALE, type LossScaling } from "../src/api/loss-scaling.ts";
import { examples, gatherRows, rows, rowSize, shuffle, size } from "./batches.ts";
import { checkpointFile, readCheckpoint, writeCheckpoint } from "./checkpoint.ts";
import { debugNansFromEnv, firstNonFinite } from "./debug-nans.ts";
import { historyPlot } from "./plot.ts";
import { progress, type ProgressStream } from "./progress.ts";
import { checkBatchOptions, checkClassLabels, checkFinite, checkFitOptions, toHostTensor } from "./validate.ts";
import {
  checkAgainst,
  readSafetensors,
  toSafeDtype,
  writeFileAtomic,
  writeSafetensors,
  type SafeSpec,
  type SafeTensor,
} from "../formats/safetensors.ts";

export interface CompileConfig {
  /** An optimizer (src/api/optimizers.ts), or its name with Keras's defaults ("adam"). */
  readonly optimizer: Optimizer | OptimizerName;
  readonly loss: LossName | Loss;
  /** "accuracy" (Keras's "acc" too). */
  readonly metrics?: readonly MetricAlias[];
  /** λ of the L2 weight decay λ/2·Σ‖W‖² over the layers' kernels. */
  readonly l2?: number;
  /** Seeds the initial weights (default 0). */
  readonly seed?: number;
  /** When the loss or a parameter turns NaN or infinite, re-run that step node by node in the
   *  float64 interpreter and name the first node that made it (also KILN_DEBUG_NANS=1). Reads
   *  the step's state before every step: slow, for debugging. */
  readonly debugNans?: boolean;
  /** "mixed": activations stored as f16 on the GPU, arithmetic, accumulation, weights and
   *  optimizer state in f32 (compiler/precision.ts), with dynamic loss scaling; needs the
   *  adapter's `shader-f16`. "auto": mixed on a GPU that has it, else f32. Default "f32". */
  readonly precision?: Precision | "auto";
  /** Dynamic loss scaling (src/api/loss-scaling.ts, as PyTorch's GradScaler): on by default in
   *  mixed precision ({ initial: 65536, growthInterval: 2000 }), off in f32; false turns it off,
   *  an object turns it on with those settings in either precision. fit reports the steps it
   *  skipped and the scale (History.skippedSteps, History.lossScale). */
  readonly lossScaling?: LossScaling | false;
}

const CONFIG_OPTIONS = ["optimizer", "loss", "metrics", "l2", "seed", "debugNans", "precision", "lossScaling"];
type Monitor = "loss" | "val_loss" | "accuracy" | "val_accuracy";
const MONITORS: readonly Monitor[] = ["loss", "val_loss", "accuracy", "val_accuracy"];
/** Keras's and camelCase spellings of what early stopping watches. */
const MONITOR_ALIASES: Readonly<Record<string, Monitor>> = {
  acc: "accuracy",
  val_acc: "val_accuracy",
  valLoss: "val_loss",
  valAccuracy: "val_accuracy",
};

export interface EarlyStopping {
  /** "val_loss" (default when there is validation data, else "loss"), "loss", "val_accuracy", "accuracy". */
  readonly monitor?: Monitor | "acc" | "val_acc" | "valLoss" | "valAccuracy";
  /** Epochs without improvement before stopping (default 3). */
  readonly patience?: number;
  /** An improvement smaller than this does not count (default 0). */
  readonly minDelta?: number;
  /** Put back the weights of the best epoch when training ends (default true). */
  readonly restoreBestWeights?: boolean;
}

export interface FitOptions {
  readonly epochs: number;
  readonly batchSize?: number;
  /** Shuffle the training examples each epoch (default true), from `seed`. */
  readonly shuffle?: boolean;
  readonly seed?: number;
  /** Hold out this fraction of the examples, taken from the end before shuffling (as Keras). */
  readonly validationSplit?: number;
  readonly validationData?: readonly [HostTensor, HostTensor];
  readonly earlyStopping?: EarlyStopping;
  /** 0 silent, 1 a progress bar on a terminal (a line per epoch elsewhere), 2 a line per epoch. */
  readonly verbose?: 0 | 1 | 2;
  readonly stream?: ProgressStream;
  /** Steps between reads of the running loss for the progress bar (default 25). */
  readonly logEvery?: number;
  /** Write the loss / accuracy curves here (SVG) when training ends. */
  readonly plot?: string;
  /** Called (and awaited) after every epoch with its figures. */
  readonly onEpoch?: (epoch: number, logs: EpochLogs) => void | Promise<void>;
  /** Write a checkpoint (weights, optimizer state, step counter, epochs done, history) to `dir`
   *  every `every` epochs (default 1), atomically (./checkpoint.ts). */
  readonly checkpoint?: { readonly dir: string; readonly every?: number };
  /** Continue from a checkpoint written by `checkpoint`: the same trajectory as a run that was
   *  never stopped, when the data and options are the same; `epochs` counts the epochs done. */
  readonly resumeFrom?: string;
}

export interface EpochLogs {
  readonly loss: number;
  readonly accuracy?: number;
  readonly valLoss?: number;
  readonly valAccuracy?: number;
}

export interface History {
  readonly loss: number[];
  readonly accuracy?: number[];
  readonly valLoss?: number[];
  readonly valAccuracy?: number[];
  /** Epochs run, and the best epoch (1-based) when early stopping watched. */
  epochs: number;
  bestEpoch?: number;
  stoppedEarly: boolean;
  readonly ms: number[];
  /** With loss scaling: per epoch, the steps skipped for a non-finite gradient, and the scale S
   *  at the epoch's end (src/api/loss-scaling.ts). */
  readonly skippedSteps?: number[];
  readonly lossScale?: number[];
  /** Why the `plot` file could not be written (training and the history are kept). */
  plotError?: string;
}

export interface Evaluation {
  readonly loss: number;
  readonly accuracy?: number;
}

/** A part of a model's graphs and the executable compiled from it. */
interface Compiled {
  readonly mg: ModelGraph;
  readonly exe: Executable;
  /** The weights version it holds. */
  version: number;
  readonly batch: number;
}

const FORMAT = "kiln-weights/1";

export async function compileModel(model: Model, config: CompileConfig): Promise<TrainedModel> {
  const site = callSite();
  checkOptions("compileModel", config, CONFIG_OPTIONS);
  if (!config) throw new KilnError('compileModel: needs a config such as { optimizer: "adam", loss: "sparseCategoricalCrossEntropy" }');
  if (config.optimizer === undefined) throw new KilnError('compileModel: optimizer is missing (e.g. optimizer: "adam")');
  if (config.loss === undefined) throw new KilnError('compileModel: loss is missing (e.g. loss: "categoricalCrossEntropy")');
  if (config.l2 !== undefined) checkRange("compileModel", "l2 (the weight decay λ)", config.l2, 0, Infinity);
  if (config.seed !== undefined) checkInt("compileModel", "seed", config.seed, 0);
  if (config.metrics !== undefined && !Array.isArray(config.metrics))
    throw new KilnError(`compileModel: metrics must be a list such as ["accuracy"], got ${JSON.stringify(config.metrics)}`);
  const metrics = config.metrics?.map(metricName);
  const chosen = checkChoice("compileModel", "precision", config.precision ?? "f32", ["f32", "mixed", "auto"] as const);
  const precision = chosen === "auto" ? resolvePrecision("auto", await acquireGpu()) : chosen;
  const ls = config.lossScaling;
  if (ls !== undefined && ls !== false) {
    checkOptions("compileModel lossScaling", ls, ["initial", "growthInterval"]);
    if (ls.initial !== undefined) checkRange("compileModel", "lossScaling.initial", ls.initial, MIN_SCALE, MAX_SCALE);
    if (ls.growthInterval !== undefined) checkInt("compileModel", "lossScaling.growthInterval", ls.growthInterval, 1);
  }
  const lossScaling = ls === false ? undefined : (ls ?? (precision === "mixed" ? {} : undefined));
  return new TrainedModel(model, {
    ...config,
    precision,
    lossScaling,
    ...(metrics ? { metrics } : {}),
    optimizer: optimizerByName(config.optimizer),
    site,
    debugNans: config.debugNans ?? debugNansFromEnv(),
  });
}

/** The model whose call is running in this async context (see TrainedModel.exclusive). */
const INSIDE = new AsyncLocalStorage<TrainedModel>();

export class TrainedModel {
  /** Current values of parameters, variables, slots and the step counter, when `hostVersion`
   *  is the latest; else the training executable holds newer ones. */
  private host = new Map<string, Float32Array>();
  private version = 0;
  private hostVersion = 0;
  private train?: Compiled;
  private evaluator?: Compiled;
  private predictor?: Compiled;
  /** Names and shapes of everything saved: parameters, variables (model), slots and "step/t" (optimizer). */
  private readonly specs: ModelGraph;
  /** With a sparse loss: the number of classes the labels index. */
  private readonly classes?: number;
  /** The calls so far, one after another: fit, evaluate, predict and the weights' readers never
   *  interleave on the executables' shared buffers. */
  private queue: Promise<unknown> = Promise.resolve();
  private disposed = false;

  constructor(
    readonly model: Model,
    readonly config: CompileConfig & {
      readonly optimizer: Optimizer;
      readonly site?: string;
      readonly precision: Precision;
      readonly lossScaling: LossScaling | undefined;
    },
  ) {
    this.specs = trainStepGraph(model, { ...config, accumulate: false });
    const loss = lossByName(config.loss);
    const out = model.outputs[0].shape;
    const classes = out[out.length - 1];
    if (/^sparse/i.test(loss.name) && typeof classes === "number") this.classes = classes;
    const seed = config.seed ?? 0;
    for (const p of this.specs.params) this.host.set(p.name, p.initial(seed));
    for (const v of this.specs.variables) this.host.set(v.name, v.initial(seed));
    for (const s of this.specs.slots) this.host.set(s.name, new Float32Array(size(s.shape)).fill(s.init));
  }

  /** Every parameter and variable (slots and the step counter too with `optimizer`), copied. */
  getWeights(opts: { optimizer?: boolean } = {}): Promise<Record<string, Float32Array>> {
    return this.exclusive("getWeights", async () => {
      await this.syncHost();
      const keep = new Set(this.modelNames(opts.optimizer ?? false));
      return Object.fromEntries([...this.host].filter(([k]) => keep.has(k)).map(([k, v]) => [k, v.slice()]));
    });
  }

  /** Replace weights by name; every name must exist and every size match, or nothing changes. */
  setWeights(values: Readonly<Record<string, Float32Array>>): Promise<void> {
    return this.exclusive("setWeights", async () => {
      await this.syncHost();
      for (const [k, v] of Object.entries(values)) {
        const cur = this.host.get(k);
        if (!cur)
          throw new KilnError(
            `setWeights: no weight "${k}"${didYouMean(k, this.modelNames(true))} (weights: ${this.modelNames(true).join(", ")})`,
          );
        if (cur.length !== v.length) throw new KilnError(`setWeights: "${k}" has ${cur.length} values, got ${v.length}`);
      }
      for (const [k, v] of Object.entries(values)) this.host.set(k, Float32Array.from(v));
      this.hostVersion = ++this.version;
    });
  }

  /** Train on examples x and labels y, each `{ shape, data }`, a typed array or a nested array. */
  async fit(x: unknown, y: unknown, opts: FitOptions): Promise<History> {
    checkFitOptions(opts);
    return this.exclusive("fit", () => this.fitNow(x, y, opts));
  }

  /** Loss and metrics in inference mode, over all examples (the mean over examples). */
  async evaluate(x: unknown, y: unknown, opts: { batchSize?: number } = {}): Promise<Evaluation> {
    checkBatchOptions("evaluate", opts);
    return this.exclusive("evaluate", () => this.evaluateNow(x, y, opts.batchSize ?? 32));
  }

  /** The model's output for every example, in batches. */
  async predict(x: unknown, opts: { batchSize?: number } = {}): Promise<OutputTensor> {
    checkBatchOptions("predict", opts);
    return this.exclusive("predict", () => this.predictNow(x, opts.batchSize ?? 32));
  }

  /** `dir`/weights.safetensors (parameters, variables, optimizer slots, step counter) and, beside
   *  them, `dir`/model.kir: the inference graph in text IR (loadPredictor runs it without the
   *  model's code), and train.kir + train.json: the training step and its state map (`kiln
   *  build --train`). Each file is written whole or not at all. */
  save(dir: string): Promise<void> {
    return this.exclusive("save", async () => {
      await this.syncHost();
      mkdirSync(dir, { recursive: true });
      const tensors: Record<string, SafeTensor> = {};
      for (const [name, spec] of Object.entries(this.expected())) tensors[name] = { ...spec, data: this.host.get(name)! };
      writeFileAtomic(join(dir, "model.kir"), printGraph(predictGraph(this.model).graph) + "\n");
      // The training step too, with its state map, for `kiln build --train` (cli/build.ts).
      writeFileAtomic(join(dir, "train.kir"), printGraph(this.specs.graph) + "\n");
      writeFileAtomic(join(dir, "train.json"), JSON.stringify({ state: this.specs.state }, null, 2) + "\n");
      writeSafetensors(join(dir, "weights.safetensors"), tensors, {
        format: FORMAT,
        optimizer: this.config.optimizer.name,
        step: String(this.host.get("step/t")?.[0] ?? 1),
      });
    });
  }

  /** Weights saved by `save`: names, shapes and dtypes must match this model exactly (the
   *  optimizer's slots may be absent: they are then reset), or it fails and nothing changes. */
  load(dir: string): Promise<void> {
    return this.exclusive("load", async () => {
      const path = join(dir, "weights.safetensors");
      if (!existsSync(path)) throw new KilnError(`load: no such file ${path} (a folder written by save)`);
      const file = readSafetensors(path);
      if (file.metadata.format !== FORMAT)
        throw new KilnError(`${path}: not Kiln weights (format "${file.metadata.format ?? "none"}", want "${FORMAT}")`);
      // The loss scaler's state ("amp/…") is the precision's, not the model's: a file from the other
      // precision loads, and the scale starts afresh when the file has none.
      const amp = (k: string) => k.startsWith("amp/");
      const expected = Object.fromEntries(Object.entries(this.expected()).filter(([k]) => !amp(k)));
      const withoutOptimizer = Object.fromEntries(Object.entries(expected).filter(([k]) => this.modelNames(false).includes(k)));
      const got = Object.fromEntries(
        Object.entries(file.tensors)
          .filter(([k]) => !amp(k))
          .map(([k, v]) => [k, { dtype: v.dtype, shape: v.shape }]),
      );
      checkAgainst(Object.keys(got).length === Object.keys(withoutOptimizer).length ? withoutOptimizer : expected, got, path);
      await this.syncHost();
      for (const s of this.specs.slots) this.host.set(s.name, new Float32Array(size(s.shape)).fill(s.init));
      this.host.set("step/t", new Float32Array([1]));
      for (const v of this.specs.variables) if (v.name.startsWith("amp/")) this.host.set(v.name, v.initial(0));
      for (const [k, v] of Object.entries(file.tensors))
        if (!amp(k) || this.host.has(k)) this.host.set(k, Float32Array.from(v.data as Float32Array));
      this.hostVersion = ++this.version;
    });
  }

  /** Releases the GPU memory once the calls already made have finished; later calls are refused
   *  (read the weights with getWeights or save before). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const release = () => {
      for (const c of [this.train, this.evaluator, this.predictor]) c?.exe.dispose();
      this.train = this.evaluator = this.predictor = undefined;
    };
    this.queue = this.queue.then(release, release);
  }

  // ---- the calls, run one at a time ----

  private exclusive<T>(what: string, fn: () => Promise<T>): Promise<T> {
    // A call made from inside a running one (fit's onEpoch reading the weights) runs at once:
    // it is part of that call, and waiting for it would never end.
    if (INSIDE.getStore() === this) return fn();
    if (this.disposed)
      return Promise.reject(
        new KilnError(
          `${what}: this model was disposed, which released its GPU memory and weights; call getWeights() or save() before dispose(), or compileModel again`,
        ),
      );
    const run = this.queue.then(() => INSIDE.run(this, fn));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async fitNow(x0: unknown, y0: unknown, opts: FitOptions): Promise<History> {
    const batchSize = opts.batchSize ?? 32;
    const stream = opts.stream ?? process.stdout;
    const verbose = opts.verbose ?? 1;
    const say = (line: string) => verbose !== 0 && stream.write(`${line}\n`);
    const { x, y } = this.conform({ x: x0, y: y0 }, "fit");
    checkFinite("fit: x", x);
    checkFinite("fit: y", y);
    const n = examples(x, y, "fit");
    let [train, val] = [{ x, y, n }, undefined as { x: HostTensor; y: HostTensor; n: number } | undefined];
    if (opts.validationData) {
      const { x: vx, y: vy } = this.conform({ x: opts.validationData[0], y: opts.validationData[1] }, "fit validationData");
      checkFinite("fit validationData: x", vx);
      checkFinite("fit validationData: y", vy);
      val = { x: vx, y: vy, n: examples(vx, vy, "fit validationData") };
    } else if (opts.validationSplit) {
      const split = opts.validationSplit;
      const k = n - Math.round(n * split);
      if (k < 1 || k === n) throw new KilnError(`fit: validationSplit ${split} of ${n} examples leaves an empty side`);
      train = { x: rows(x, 0, k), y: rows(y, 0, k), n: k };
      val = { x: rows(x, k, n), y: rows(y, k, n), n: n - k };
    }
    const es = opts.earlyStopping;
    const monitor = monitorName(es?.monitor ?? (val ? "val_loss" : "loss"));
    const accuracy = "accuracy" in this.specs.metrics;
    if (es && monitor.startsWith("val_") && !val)
      throw new KilnError(
        `fit: early stopping monitors ${monitor} but there is no validation data (give validationSplit or validationData)`,
      );
    if (es && monitor.endsWith("accuracy") && !accuracy)
      throw new KilnError(`fit: early stopping monitors ${monitor} but the model was compiled without metrics: ["accuracy"]`);
    let history: History = {
      loss: [],
      ...(accuracy ? { accuracy: [] } : {}),
      ...(val ? { valLoss: [], ...(accuracy ? { valAccuracy: [] } : {}) } : {}),
      epochs: 0,
      stoppedEarly: false,
      ms: [],
      ...(this.config.lossScaling ? { skippedSteps: [], lossScale: [] } : {}),
    };
    let best = { value: Infinity, epoch: 0, weights: undefined as Map<string, Float32Array> | undefined };
    const seed = opts.seed ?? this.config.seed ?? 0;
    let first = 1;
    if (opts.resumeFrom) {
      const ck = readCheckpoint(opts.resumeFrom, new Map([...this.host].map(([k, v]) => [k, v.length])));
      if (ck.state.seed !== seed)
        throw new KilnError(`fit resumeFrom: the checkpoint was written with seed ${ck.state.seed}, this fit has ${seed}`);
      await this.syncHost();
      this.host = ck.weights;
      this.hostVersion = ++this.version;
      history = ck.state.history as History;
      best = { ...ck.state.best, weights: ck.best };
      first = ck.state.epoch + 1;
    }
    const t = await this.trainer(batchSize, say);
    await this.syncHost();
    const t0 = this.host.get("step/t")![0];
    const order = Int32Array.from({ length: train.n }, (_, i) => i);
    // The shuffles' generator; a resumed fit replays the epochs done (the checkpoint's counter),
    // so its orders are those of a run that never stopped.
    const random = mulberry32(seed);
    if (opts.shuffle ?? true) for (let e = 1; e < first; e++) shuffle(order, random);
    const xRow = rowSize(train.x),
      yRow = rowSize(train.y);
    const bx = new (train.x.data.constructor as Float32ArrayConstructor)(batchSize * xRow);
    const by = new (train.y.data.constructor as Float32ArrayConstructor)(batchSize * yRow);
    const steps = Math.ceil(train.n / batchSize);
    const logEvery = opts.logEvery ?? 25;
    const debug = this.config.debugNans ?? false;
    let saved = first - 1;
    const ckDir = opts.checkpoint?.dir;
    const every = opts.checkpoint?.every ?? 1;

    try {
      for (let epoch = first; epoch <= opts.epochs; epoch++) {
        const started = performance.now();
        if (opts.shuffle ?? true) shuffle(order, random);
        await this.push(t);
        for (const name of Object.keys(t.mg.state).filter((s) => s.startsWith("metrics/")))
          await t.exe.write(name, { shape: [], data: [0] });
        const skipped0 = history.skippedSteps ? (await t.exe.read("amp/skipped")).data[0] : 0;
        const bar = progress({
          total: steps,
          label: `epoch ${epoch}/${opts.epochs}`,
          verbose,
          ...(opts.stream ? { stream: opts.stream } : {}),
        });
        for (let s = 0; s < steps; s++) {
          const lo = s * batchSize,
            b = Math.min(batchSize, train.n - lo);
          gatherRows(train.x.data, order, lo, b, xRow, bx);
          gatherRows(train.y.data, order, lo, b, yRow, by);
          const batch = {
            x: { shape: [b, ...train.x.shape.slice(1)], data: bx.subarray(0, b * xRow) },
            y: { shape: [b, ...train.y.shape.slice(1)], data: by.subarray(0, b * yRow) },
          };
          const before = debug ? await this.stateOf(t) : undefined;
          await t.exe.run(batch, []);
          t.version = ++this.version;
          if (before) {
            const bad = await this.badStep(t);
            if (bad) this.nanError(bad, t0, first, steps, bar, this.firstBad(t, { ...before, ...batch }));
          }
          if ((s + 1) % logEvery === 0 && s + 1 < steps) {
            const m = await this.sums(t);
            const bad = await this.badStep(t);
            if (bad) this.nanError(bad, t0, first, steps, bar);
            bar.update(s + 1, { loss: m.loss, ...(m.accuracy !== undefined ? { accuracy: m.accuracy } : {}) });
          }
        }
        const m = await this.sums(t);
        bar.update(steps);
        const bad = await this.badStep(t);
        if (bad || !Number.isFinite(m.loss)) this.nanError(bad ?? { what: "loss", step: NaN }, t0, first, steps, bar);
        history.loss.push(m.loss);
        if (m.accuracy !== undefined) history.accuracy!.push(m.accuracy);
        if (history.skippedSteps) {
          history.skippedSteps.push((await t.exe.read("amp/skipped")).data[0] - skipped0);
          history.lossScale!.push((await t.exe.read("amp/scale")).data[0]);
        }
        let logs: EpochLogs = { loss: m.loss, ...(m.accuracy !== undefined ? { accuracy: m.accuracy } : {}) };
        if (val) {
          const v = await this.evaluateNow(val.x, val.y, batchSize, say);
          history.valLoss!.push(v.loss);
          if (v.accuracy !== undefined) history.valAccuracy!.push(v.accuracy);
          logs = { ...logs, valLoss: v.loss, ...(v.accuracy !== undefined ? { valAccuracy: v.accuracy } : {}) };
        }
        bar.end(logs);
        history.ms.push(performance.now() - started);
        history.epochs = epoch;
        await opts.onEpoch?.(epoch, logs);
        let stop = false;
        if (es) {
          const value = {
            loss: logs.loss,
            val_loss: logs.valLoss,
            accuracy: -(logs.accuracy ?? NaN),
            val_accuracy: -(logs.valAccuracy ?? NaN),
          }[monitor]!;
          if (value < best.value - (es.minDelta ?? 0)) {
            best = { value, epoch, weights: (es.restoreBestWeights ?? true) ? await this.snapshot() : undefined };
          } else if (epoch - best.epoch >= (es.patience ?? 3)) {
            history.stoppedEarly = stop = true;
          }
        }
        if (ckDir && (epoch % every === 0 || epoch === opts.epochs || stop)) {
          await this.syncHost();
          writeCheckpoint(ckDir, this.host, { epoch, history, best: { value: best.value, epoch: best.epoch }, seed }, best.weights);
          saved = epoch;
        }
        if (stop) break;
      }
    } catch (e) {
      if (ckDir && !(e instanceof KilnError && !(e instanceof GpuError))) {
        const how =
          saved >= first || opts.resumeFrom
            ? `the checkpoint after epoch ${saved} is intact in ${checkpointFile(ckDir)}; resume with fit(x, y, { ...the same options, resumeFrom: ${JSON.stringify(ckDir)} })`
            : "no checkpoint was written yet";
        const wrapped = new (e instanceof GpuError ? GpuError : KilnError)(`${(e as Error).message}\nfit stopped in training: ${how}`);
        throw wrapped;
      }
      throw e;
    }
    if (es) {
      history.bestEpoch = best.epoch;
      const restored = best.weights && best.epoch !== history.epochs;
      if (restored) {
        this.host = best.weights!;
        this.hostVersion = ++this.version;
      }
      if (history.stoppedEarly)
        say(
          `early stopping: ${monitor} did not improve for ${es.patience ?? 3} epochs; stopped after epoch ${history.epochs} of ${opts.epochs}, ` +
            (best.weights
              ? `restored the weights of epoch ${best.epoch}`
              : `kept the weights of epoch ${history.epochs} (best was epoch ${best.epoch})`),
        );
    }
    if (opts.plot) {
      try {
        mkdirSync(dirname(opts.plot), { recursive: true });
        historyPlot(history, opts.plot);
      } catch (e) {
        // Training is done: the history and the weights stay; only the picture is missing.
        history.plotError = `could not write the plot ${opts.plot}: ${(e as Error).message}`;
        (opts.stream ?? process.stderr).write(`fit: ${history.plotError} (the history and the trained weights are kept)\n`);
      }
    }
    return history;
  }

  private async evaluateNow(x0: unknown, y0: unknown, batch: number, say?: (line: string) => void): Promise<Evaluation> {
    const { x, y } = this.conform({ x: x0, y: y0 }, "evaluate");
    const n = examples(x, y, "evaluate");
    if (!this.evaluator || this.evaluator.batch < batch)
      this.evaluator = await this.compileFor(evalGraph(this.model, this.lossOptions()), batch, this.evaluator, "evaluation", say);
    const e = this.evaluator;
    await this.push(e);
    for (const name of Object.keys(e.mg.state).filter((s) => s.startsWith("metrics/"))) await e.exe.write(name, { shape: [], data: [0] });
    for (let lo = 0; lo < n; lo += batch) {
      const hi = Math.min(n, lo + batch);
      await e.exe.run({ x: rows(x, lo, hi), y: rows(y, lo, hi) }, []);
    }
    return this.sums(e);
  }

  private async predictNow(x0: unknown, batch: number): Promise<OutputTensor> {
    const { x } = this.conform({ x: x0 }, "predict");
    const n = x.shape[0];
    if (!this.predictor || this.predictor.batch < batch)
      this.predictor = await this.compileFor(predictGraph(this.model), batch, this.predictor, "prediction");
    const p = this.predictor;
    await this.push(p);
    const parts: OutputTensor[] = [];
    for (let lo = 0; lo < n; lo += batch) parts.push((await p.exe.run({ x: rows(x, lo, Math.min(n, lo + batch)) }, ["y"])).y);
    const [first] = parts;
    if (!first) throw new KilnError(`predict: no examples (x has shape [${x.shape}])`);
    const data = new (first.data.constructor as Float32ArrayConstructor)(parts.reduce((s, q) => s + q.data.length, 0));
    let at = 0;
    for (const q of parts) data.set(q.data as Float32Array, at), (at += q.data.length);
    return { dtype: first.dtype, shape: [n, ...first.shape.slice(1)], data };
  }

  /** The step counter of the first step whose loss / parameters went non-finite, if any. */
  private async badStep(c: Compiled): Promise<{ what: "loss" | "parameter"; step: number } | undefined> {
    const param = c.mg.state["metrics/first_bad_param"] ? (await c.exe.read("metrics/first_bad_param")).data[0] : 0;
    const loss = (await c.exe.read("metrics/first_bad_loss")).data[0];
    if (!param && !loss) return undefined;
    return param && (!loss || param < loss) ? { what: "parameter", step: param } : { what: "loss", step: loss };
  }

  private nanError(
    bad: { what: "loss" | "parameter"; step: number },
    t0: number,
    first: number,
    steps: number,
    bar: { end(v?: object): void },
    node?: string,
  ): never {
    bar.end();
    const k = bad.step - t0;
    const where = Number.isFinite(k)
      ? `at step ${(k % steps) + 1} of epoch ${first + Math.floor(k / steps)} (training step ${bad.step})`
      : "";
    const what =
      bad.what === "loss" ? "the training loss became NaN or infinite" : "a parameter became NaN or infinite (the loss was still finite)";
    const hint = node
      ? `\nthe first non-finite value in that step (re-run node by node in float64 on the same batch and weights): ${node}`
      : this.config.debugNans
        ? ""
        : "\nto find the node that made it, compile with compileModel(model, { ..., debugNans: true }) or set KILN_DEBUG_NANS=1";
    throw new KilnError(
      `fit: ${what} ${where}; lower the learning rate or check the data (the weights now hold that step's values)${this.config.precision === "mixed" ? `; in mixed precision an activation or gradient past f16's largest value, 65504, is stored as inf` : ""}${hint}`,
    );
  }

  /** The NaN debugger's finding for a step of `c` on `inputs`: in mixed precision over the
   *  compiled graph, whose values stored as f16 it knows (training/debug-nans.ts). */
  private firstBad(c: Compiled, inputs: Record<string, HostTensor>): string | undefined {
    const { half, graph } = c.exe.program;
    return half?.length ? firstNonFinite(graph, inputs, new Set(half)) : firstNonFinite(c.mg.graph, inputs);
  }

  /** Every resident input of `c` as host tensors (for the NaN debugger). */
  private async stateOf(c: Compiled): Promise<Record<string, HostTensor>> {
    const out: Record<string, HostTensor> = {};
    for (const n of inputNodes(c.mg.graph)) {
      const name = n.attrs.name;
      if (name === "x" || name === "y") continue;
      out[name] = { shape: n.type.shape as number[], data: (await c.exe.read(name)).data };
    }
    return out;
  }

  // ---- internals ----

  /** The data checked against the model's inputs ("x", and the labels "y") — example shape and
   *  values of the dtype — and as typed arrays of it, before anything is compiled or run. */
  private conform<K extends string>(data: Record<K, unknown>, what: string): Record<K, HostTensor> {
    const inputs = inputNodes(this.specs.graph);
    const out = {} as Record<K, HostTensor>;
    for (const name of Object.keys(data) as K[]) {
      const node = inputs.find((n) => n.attrs.name === name);
      if (!node)
        throw new KilnError(
          `${what}: the model takes inputs ${inputs
            .filter((n) => !n.attrs.name.includes("/"))
            .map((n) => n.attrs.name)
            .join(", ")}; fit, evaluate and predict feed one input x (and labels y)`,
        );
      const want = node.type.shape.slice(1);
      const t = toHostTensor(`${what}: ${name}`, data[name], want as number[]);
      if (t.shape.length !== want.length + 1 || want.some((d, i) => d !== t.shape[i + 1])) {
        throw new KilnError(
          `${what}: ${name} has shape [${t.shape}]; the model wants [N,${want}] (${name === "y" ? "labels" : "examples"} of ${formatType({ dtype: node.type.dtype, shape: want })})`,
        );
      }
      out[name] = { shape: t.shape, data: toStorage(node.type.dtype, t.data, `${what}: ${name}`) };
      if (name === "y" && this.classes !== undefined) checkClassLabels(`${what}: y`, out[name], this.classes);
    }
    return out;
  }

  private modelNames(optimizer: boolean): string[] {
    const own = (v: string) => v === "step/t" || v.startsWith("amp/");
    const names = [...this.specs.params.map((p) => p.name), ...this.specs.variables.map((v) => v.name).filter((v) => !own(v))];
    const amp = this.specs.variables.map((v) => v.name).filter((v) => v.startsWith("amp/"));
    return optimizer ? [...names, ...this.specs.slots.map((s) => s.name), ...amp, "step/t"] : names;
  }

  private expected(): Record<string, SafeSpec> {
    const spec = (shape: readonly number[]): SafeSpec => ({ dtype: toSafeDtype("f32"), shape });
    const out: Record<string, SafeSpec> = {};
    for (const p of this.specs.params) out[p.name] = spec(p.shape);
    for (const v of this.specs.variables) out[v.name] = spec(v.shape);
    for (const s of this.specs.slots) out[s.name] = spec(s.shape);
    return out;
  }

  private async trainer(batch: number, say?: (line: string) => void): Promise<Compiled> {
    if (!this.train || this.train.batch < batch) {
      this.train = await this.compileFor(trainStepGraph(this.model, this.lossOptions()), batch, this.train, "the training step", say);
    }
    return this.train;
  }

  private lossOptions() {
    return { ...this.config, accumulate: true };
  }

  /** Compiles a graph; `say` tells the user, as shader compilation of a first run can take a while. */
  private async compileFor(
    mg: ModelGraph,
    batch: number,
    old: Compiled | undefined,
    what: string,
    say?: (line: string) => void,
  ): Promise<Compiled> {
    if (old) {
      await this.syncHost();
      old.exe.dispose();
    }
    const t0 = performance.now();
    say?.(`compiling ${what} (batch ${batch}) into GPU kernels…`);
    const exe = await Executable.fromGraph(mg.graph, { state: mg.state, dims: { B: batch }, precision: this.config.precision });
    say?.(`compiled ${what}: ${exe.program.kernels.length} kernels in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
    return { mg, exe, version: -1, batch };
  }

  /** Bring the host copy up to date from the training executable. */
  private async syncHost(): Promise<void> {
    if (this.hostVersion === this.version) return;
    const t = this.train!;
    for (const name of this.host.keys()) this.host.set(name, (await t.exe.read(name)).data as Float32Array);
    this.hostVersion = this.version;
  }

  /** Bring an executable's resident weights up to date. */
  private async push(c: Compiled): Promise<void> {
    if (c.version === this.version) return;
    await this.syncHost();
    for (const name of Object.keys(c.mg.state)) {
      const v = this.host.get(name);
      if (v)
        await c.exe.write(name, {
          shape: c.mg.graph.nodes.find((n) => n.op === "input" && (n.attrs as { name: string }).name === name)!.type.shape as number[],
          data: v,
        });
    }
    c.version = this.version;
  }

  private async snapshot(): Promise<Map<string, Float32Array>> {
    await this.syncHost();
    return new Map([...this.host].map(([k, v]) => [k, v.slice()]));
  }

  /** The accumulated means: loss per example, accuracy = correct / seen. */
  private async sums(c: Compiled): Promise<Evaluation> {
    const read = async (name: string) => (await c.exe.read(name)).data[0] as number;
    const seen = await read("metrics/seen");
    const loss = (await read("metrics/loss_sum")) / seen;
    const correct = c.mg.metrics.accuracy;
    return correct ? { loss, accuracy: (await read(`metrics/${correct}_sum`)) / seen } : { loss };
  }
}

function monitorName(given: string): Monitor {
  const m = MONITOR_ALIASES[given] ?? given;
  return checkChoice("fit earlyStopping", "monitor", m, MONITORS);
}

/** A saved model's inference graph and weights, run without the model's code. */
export async function loadPredictor(
  dir: string,
  opts: { batchSize?: number } = {},
): Promise<{ predict(x: HostTensor): Promise<OutputTensor>; dispose(): void }> {
  checkBatchOptions("loadPredictor", opts);
  for (const f of ["model.kir", "weights.safetensors"])
    if (!existsSync(join(dir, f))) throw new KilnError(`loadPredictor: no such file ${join(dir, f)} (a folder written by save)`);
  const graph = parseGraph(readFileSync(join(dir, "model.kir"), "utf8"));
  const file = readSafetensors(join(dir, "weights.safetensors"));
  const inputs = graph.nodes.filter((n) => n.op === "input").map((n) => n as typeof n & { attrs: { name: string } });
  const state = Object.fromEntries(inputs.filter((n) => n.attrs.name in file.tensors).map((n) => [n.attrs.name, null]));
  const missing = inputs.filter((n) => n.attrs.name !== "x" && !(n.attrs.name in file.tensors)).map((n) => n.attrs.name);
  if (missing.length) throw new KilnError(`${dir}: weights.safetensors lacks ${missing.join(", ")} that model.kir reads`);
  for (const n of inputs) {
    const t = file.tensors[n.attrs.name];
    if (!t) continue;
    const want = n.type.shape;
    if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i]))
      throw new KilnError(
        `${dir}: weights.safetensors holds ${n.attrs.name} as [${t.shape}], but model.kir reads it as ${formatType(n.type)}: the weights belong to another model`,
      );
  }
  const exe = await Executable.fromGraph(graph, { state, dims: { B: opts.batchSize ?? 32 } });
  for (const n of inputs)
    if (n.attrs.name in state)
      await exe.write(n.attrs.name, { shape: n.type.shape as number[], data: file.tensors[n.attrs.name].data as Float32Array });
  const xNode = inputs.find((n) => n.attrs.name === "x");
  // One call at a time: the executable's input and staging buffers are shared.
  let queue: Promise<unknown> = Promise.resolve();
  return {
    predict: (x) => {
      const t = toHostTensor("predict: x", x, (xNode?.type.shape.slice(1) ?? []) as number[]);
      const run = queue.then(async () => (await exe.run({ x: t }, ["y"])).y);
      queue = run.catch(() => undefined);
      return run;
    },
    dispose: () => exe.dispose(),
  };
}
