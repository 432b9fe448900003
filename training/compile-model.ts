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
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { mulberry32 } from "../src/api/initializers.ts";
import type { Loss, LossName } from "../src/api/losses.ts";
import { evalGraph, predictGraph, trainStepGraph, type MetricName, type Model, type ModelGraph } from "../src/api/model.ts";
import type { Optimizer } from "../src/api/optimizer.ts";
import { optimizerByName, type OptimizerName } from "../src/api/optimizers.ts";
import { inputNodes } from "../src/ir/bind.ts";
import { KilnError } from "../src/ir/errors.ts";
import { formatType } from "../src/ir/shape.ts";
import { toStorage } from "../runtime/buffers.ts";
import { parseGraph } from "../src/ir/parse.ts";
import { printGraph } from "../src/ir/print.ts";
import type { HostTensor } from "../src/ir/host.ts";
import { Executable, type OutputTensor } from "../runtime/execute.ts";
import { examples, gatherRows, rows, rowSize, shuffle, size } from "./batches.ts";
import { historyPlot } from "./plot.ts";
import { progress, type ProgressStream } from "./progress.ts";
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
  readonly metrics?: readonly MetricName[];
  /** λ of the L2 weight decay λ/2·Σ‖W‖² over the layers' kernels. */
  readonly l2?: number;
  /** Seeds the initial weights (default 0). */
  readonly seed?: number;
}

export interface EarlyStopping {
  /** "val_loss" (default when there is validation data, else "loss"), "loss", "val_accuracy", "accuracy". */
  readonly monitor?: "loss" | "val_loss" | "accuracy" | "val_accuracy";
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
}

export interface EpochLogs {
  readonly loss: number;
  readonly accuracy?: number;
  readonly valLoss?: number;
  readonly valAccuracy?: number;
}

export interface History {
  readonly loss: number[];
  readonly acc?: number[];
  readonly valLoss?: number[];
  readonly valAcc?: number[];
  /** Epochs run, and the best epoch (1-based) when early stopping watched. */
  epochs: number;
  bestEpoch?: number;
  stoppedEarly: boolean;
  readonly ms: number[];
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
  return new TrainedModel(model, { ...config, optimizer: optimizerByName(config.optimizer) });
}

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

  constructor(
    readonly model: Model,
    readonly config: CompileConfig & { readonly optimizer: Optimizer },
  ) {
    this.specs = trainStepGraph(model, { ...config, accumulate: false });
    const seed = config.seed ?? 0;
    for (const p of this.specs.params) this.host.set(p.name, p.initial(seed));
    for (const v of this.specs.variables) this.host.set(v.name, v.initial(seed));
    for (const s of this.specs.slots) this.host.set(s.name, new Float32Array(size(s.shape)).fill(s.init));
  }

  /** Every parameter and variable (slots and the step counter too with `optimizer`), copied. */
  async getWeights(opts: { optimizer?: boolean } = {}): Promise<Record<string, Float32Array>> {
    await this.syncHost();
    const keep = new Set(this.modelNames(opts.optimizer ?? false));
    return Object.fromEntries([...this.host].filter(([k]) => keep.has(k)).map(([k, v]) => [k, v.slice()]));
  }

  /** Replace weights by name; every name must exist and every size match, or nothing changes. */
  async setWeights(values: Readonly<Record<string, Float32Array>>): Promise<void> {
    await this.syncHost();
    for (const [k, v] of Object.entries(values)) {
      const cur = this.host.get(k);
      if (!cur) throw new KilnError(`setWeights: no weight "${k}" (weights: ${this.modelNames(true).join(", ")})`);
      if (cur.length !== v.length) throw new KilnError(`setWeights: "${k}" has ${cur.length} values, got ${v.length}`);
    }
    for (const [k, v] of Object.entries(values)) this.host.set(k, Float32Array.from(v));
    this.hostVersion = ++this.version;
  }

  async fit(x0: HostTensor, y0: HostTensor, opts: FitOptions): Promise<History> {
    const batchSize = opts.batchSize ?? 32;
    const { x, y } = this.conform({ x: x0, y: y0 }, "fit");
    const n = examples(x, y, "fit");
    let [train, val] = [{ x, y, n }, undefined as { x: HostTensor; y: HostTensor; n: number } | undefined];
    if (opts.validationData) {
      const { x: vx, y: vy } = this.conform({ x: opts.validationData[0], y: opts.validationData[1] }, "fit validationData");
      val = { x: vx, y: vy, n: examples(vx, vy, "fit validationData") };
    } else if (opts.validationSplit) {
      const split = opts.validationSplit;
      if (!(split > 0 && split < 1)) throw new KilnError(`fit: validationSplit must be in (0, 1), got ${split}`);
      const k = n - Math.round(n * split);
      if (k < 1 || k === n) throw new KilnError(`fit: validationSplit ${split} of ${n} examples leaves an empty side`);
      train = { x: rows(x, 0, k), y: rows(y, 0, k), n: k };
      val = { x: rows(x, k, n), y: rows(y, k, n), n: n - k };
    }
    const t = await this.trainer(batchSize);
    const accuracy = "accuracy" in t.mg.metrics;
    const history: History = {
      loss: [],
      ...(accuracy ? { acc: [] } : {}),
      ...(val ? { valLoss: [], ...(accuracy ? { valAcc: [] } : {}) } : {}),
      epochs: 0,
      stoppedEarly: false,
      ms: [],
    };
    const es = opts.earlyStopping;
    const monitor = es?.monitor ?? (val ? "val_loss" : "loss");
    if (es && monitor.startsWith("val_") && !val)
      throw new KilnError(`fit: early stopping monitors ${monitor} but there is no validation data`);
    if (es && monitor.endsWith("accuracy") && !accuracy)
      throw new KilnError(`fit: early stopping monitors ${monitor} but the model was compiled without metrics: ["accuracy"]`);
    let best = { value: Infinity, epoch: 0, weights: undefined as Map<string, Float32Array> | undefined };
    const random = mulberry32(opts.seed ?? this.config.seed ?? 0);
    const order = Int32Array.from({ length: train.n }, (_, i) => i);
    const xRow = rowSize(train.x),
      yRow = rowSize(train.y);
    const bx = new (train.x.data.constructor as Float32ArrayConstructor)(batchSize * xRow);
    const by = new (train.y.data.constructor as Float32ArrayConstructor)(batchSize * yRow);
    const steps = Math.ceil(train.n / batchSize);
    const logEvery = opts.logEvery ?? 25;

    for (let epoch = 1; epoch <= opts.epochs; epoch++) {
      const t0 = performance.now();
      if (opts.shuffle ?? true) shuffle(order, random);
      await this.push(t);
      for (const name of Object.keys(t.mg.state).filter((s) => s.startsWith("metrics/"))) await t.exe.write(name, { shape: [], data: [0] });
      const bar = progress({
        total: steps,
        label: `epoch ${epoch}/${opts.epochs}`,
        verbose: opts.verbose ?? 1,
        ...(opts.stream ? { stream: opts.stream } : {}),
      });
      for (let s = 0; s < steps; s++) {
        const lo = s * batchSize,
          b = Math.min(batchSize, train.n - lo);
        gatherRows(train.x.data, order, lo, b, xRow, bx);
        gatherRows(train.y.data, order, lo, b, yRow, by);
        await t.exe.run(
          {
            x: { shape: [b, ...train.x.shape.slice(1)], data: bx.subarray(0, b * xRow) },
            y: { shape: [b, ...train.y.shape.slice(1)], data: by.subarray(0, b * yRow) },
          },
          [],
        );
        t.version = ++this.version;
        if ((s + 1) % logEvery === 0 && s + 1 < steps) {
          const m = await this.sums(t);
          bar.update(s + 1, { loss: m.loss, ...(m.accuracy !== undefined ? { acc: m.accuracy } : {}) });
        }
      }
      const m = await this.sums(t);
      bar.update(steps);
      if (!Number.isFinite(m.loss)) {
        bar.end({ loss: m.loss });
        throw new KilnError(
          `fit: the training loss became ${m.loss} in epoch ${epoch}; lower the learning rate or check the data (the weights are left as they were after that epoch)`,
        );
      }
      history.loss.push(m.loss);
      if (m.accuracy !== undefined) history.acc!.push(m.accuracy);
      let logs: EpochLogs = { loss: m.loss, ...(m.accuracy !== undefined ? { accuracy: m.accuracy } : {}) };
      if (val) {
        const v = await this.evaluate(val.x, val.y, { batchSize });
        history.valLoss!.push(v.loss);
        if (v.accuracy !== undefined) history.valAcc!.push(v.accuracy);
        logs = { ...logs, valLoss: v.loss, ...(v.accuracy !== undefined ? { valAccuracy: v.accuracy } : {}) };
      }
      bar.end({ loss: logs.loss, acc: logs.accuracy, valLoss: logs.valLoss, valAcc: logs.valAccuracy });
      history.ms.push(performance.now() - t0);
      history.epochs = epoch;
      await opts.onEpoch?.(epoch, logs);
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
          history.stoppedEarly = true;
          break;
        }
      }
    }
    if (es) {
      history.bestEpoch = best.epoch;
      if (best.weights && best.epoch !== history.epochs) {
        this.host = best.weights;
        this.hostVersion = ++this.version;
      }
    }
    if (opts.plot) historyPlot(history, opts.plot);
    return history;
  }

  /** Loss and metrics in inference mode, over all examples (the mean over examples). */
  async evaluate(x0: HostTensor, y0: HostTensor, opts: { batchSize?: number } = {}): Promise<Evaluation> {
    const { x, y } = this.conform({ x: x0, y: y0 }, "evaluate");
    const n = examples(x, y, "evaluate");
    const batch = opts.batchSize ?? 32;
    if (!this.evaluator || this.evaluator.batch < batch)
      this.evaluator = await this.compileFor(evalGraph(this.model, { ...this.config, accumulate: true }), batch, this.evaluator);
    const e = this.evaluator;
    await this.push(e);
    for (const name of Object.keys(e.mg.state).filter((s) => s.startsWith("metrics/"))) await e.exe.write(name, { shape: [], data: [0] });
    for (let lo = 0; lo < n; lo += batch) {
      const hi = Math.min(n, lo + batch);
      await e.exe.run({ x: rows(x, lo, hi), y: rows(y, lo, hi) }, []);
    }
    return this.sums(e);
  }

  /** The model's output for every example, in batches. */
  async predict(x0: HostTensor, opts: { batchSize?: number } = {}): Promise<OutputTensor> {
    const { x } = this.conform({ x: x0 }, "predict");
    const n = x.shape[0];
    const batch = opts.batchSize ?? 32;
    if (!this.predictor || this.predictor.batch < batch)
      this.predictor = await this.compileFor(predictGraph(this.model), batch, this.predictor);
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

  /** `dir`/weights.safetensors (parameters, variables, optimizer slots, step counter) and, beside
   *  them, `dir`/model.kir: the inference graph in text IR (loadPredictor runs it without the
   *  model's code), and train.kir + train.json: the training step and its state map (`kiln
   *  build --train`). Each file is written whole or not at all. */
  async save(dir: string): Promise<void> {
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
  }

  /** Weights saved by `save`: names, shapes and dtypes must match this model exactly (the
   *  optimizer's slots may be absent: they are then reset), or it fails and nothing changes. */
  async load(dir: string): Promise<void> {
    const path = join(dir, "weights.safetensors");
    const file = readSafetensors(path);
    if (file.metadata.format !== FORMAT)
      throw new KilnError(`${path}: not Kiln weights (format "${file.metadata.format ?? "none"}", want "${FORMAT}")`);
    const expected = this.expected();
    const withoutOptimizer = Object.fromEntries(Object.entries(expected).filter(([k]) => this.modelNames(false).includes(k)));
    const got = Object.fromEntries(Object.entries(file.tensors).map(([k, v]) => [k, { dtype: v.dtype, shape: v.shape }]));
    checkAgainst(Object.keys(got).length === Object.keys(withoutOptimizer).length ? withoutOptimizer : expected, got, path);
    await this.syncHost();
    for (const s of this.specs.slots) this.host.set(s.name, new Float32Array(size(s.shape)).fill(s.init));
    this.host.set("step/t", new Float32Array([1]));
    for (const [k, v] of Object.entries(file.tensors)) this.host.set(k, Float32Array.from(v.data as Float32Array));
    this.hostVersion = ++this.version;
  }

  dispose(): void {
    for (const c of [this.train, this.evaluator, this.predictor]) c?.exe.dispose();
    this.train = this.evaluator = this.predictor = undefined;
  }

  // ---- internals ----

  /** The data checked against the model's inputs ("x", and the labels "y") — example shape and
   *  values of the dtype — and as typed arrays of it, before anything is compiled or run. */
  private conform<K extends string>(data: Record<K, HostTensor>, what: string): Record<K, HostTensor> {
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
      const t = data[name];
      const want = node.type.shape.slice(1);
      if (t.shape.length !== want.length + 1 || want.some((d, i) => d !== t.shape[i + 1])) {
        throw new KilnError(
          `${what}: ${name} has shape [${t.shape}]; the model wants [N,${want}] (${name === "y" ? "labels" : "examples"} of ${formatType({ dtype: node.type.dtype, shape: want })})`,
        );
      }
      out[name] = { shape: t.shape, data: toStorage(node.type.dtype, t.data, `${what}: ${name}`) };
    }
    return out;
  }

  private modelNames(optimizer: boolean): string[] {
    const names = [...this.specs.params.map((p) => p.name), ...this.specs.variables.map((v) => v.name).filter((v) => v !== "step/t")];
    return optimizer ? [...names, ...this.specs.slots.map((s) => s.name), "step/t"] : names;
  }

  private expected(): Record<string, SafeSpec> {
    const spec = (shape: readonly number[]): SafeSpec => ({ dtype: toSafeDtype("f32"), shape });
    const out: Record<string, SafeSpec> = {};
    for (const p of this.specs.params) out[p.name] = spec(p.shape);
    for (const v of this.specs.variables) out[v.name] = spec(v.shape);
    for (const s of this.specs.slots) out[s.name] = spec(s.shape);
    return out;
  }

  private async trainer(batch: number): Promise<Compiled> {
    if (!this.train || this.train.batch < batch) {
      this.train = await this.compileFor(trainStepGraph(this.model, { ...this.config, accumulate: true }), batch, this.train);
    }
    return this.train;
  }

  private async compileFor(mg: ModelGraph, batch: number, old: Compiled | undefined): Promise<Compiled> {
    if (old) {
      await this.syncHost();
      old.exe.dispose();
    }
    const exe = await Executable.fromGraph(mg.graph, { state: mg.state, dims: { B: batch } });
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

/** A saved model's inference graph and weights, run without the model's code. */
export async function loadPredictor(
  dir: string,
  opts: { batchSize?: number } = {},
): Promise<{ predict(x: HostTensor): Promise<OutputTensor>; dispose(): void }> {
  const graph = parseGraph(readFileSync(join(dir, "model.kir"), "utf8"));
  const file = readSafetensors(join(dir, "weights.safetensors"));
  const inputs = graph.nodes.filter((n) => n.op === "input").map((n) => n as typeof n & { attrs: { name: string } });
  const state = Object.fromEntries(inputs.filter((n) => n.attrs.name in file.tensors).map((n) => [n.attrs.name, null]));
  const missing = inputs.filter((n) => n.attrs.name !== "x" && !(n.attrs.name in file.tensors)).map((n) => n.attrs.name);
  if (missing.length) throw new KilnError(`${dir}: weights.safetensors lacks ${missing.join(", ")} that model.kir reads`);
  const exe = await Executable.fromGraph(graph, { state, dims: { B: opts.batchSize ?? 32 } });
  for (const n of inputs)
    if (n.attrs.name in state)
      await exe.write(n.attrs.name, { shape: n.type.shape as number[], data: file.tensors[n.attrs.name].data as Float32Array });
  return {
    predict: async (x) => (await exe.run({ x }, ["y"])).y,
    dispose: () => exe.dispose(),
  };
}
