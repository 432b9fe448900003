/** Models: a sequential list of layers or a functional graph of layer calls, and the pure graph
 *  builders the runtime compiles (training/compile-model.ts): the training step (forward, loss, backward
 *  and the optimizer's update as one graph over resident state), evaluation and prediction.
 *      const m = sequential([dense(500, { activation: "relu" }), dense(10)], { inputShape: [784] });
 *      const x = input([784]); const m2 = model({ inputs: x, outputs: dense(10).apply(x) });
 *  Nothing here runs anything: `compile(graph, { state })` (compiler/pipeline.ts) takes the
 *  returned state map as it is. */
import { KilnError } from "../ir/errors.ts";
import { formatType, shapeEq } from "../ir/shape.ts";
import type { DType, Graph, Shape } from "../ir/types.ts";
import { GraphBuilder, type Tensor } from "./builder.ts";
import { grad } from "./grad.ts";
import { ones, type Initializer } from "./initializers.ts";
import { Layer, SymbolicTensor, type Scope } from "./layers.ts";
import { scaledGradients, type LossScaling } from "./loss-scaling.ts";
import { l2Penalty, lossByName, type Loss, type LossName } from "./losses.ts";
import type { Optimizer } from "./optimizer.ts";
import { checkOptions, didYouMean } from "./options.ts";
import { withSite } from "./site.ts";

export interface ParamInfo {
  readonly name: string;
  readonly shape: readonly number[];
  readonly init: Initializer;
  /** Subject to L2 weight decay (kernels). */
  readonly decay: boolean;
  readonly tensor: Tensor;
  /** The initial value for a model seed: each parameter gets its own stream. */
  initial(seed: number): Float32Array;
}

export interface VariableInfo {
  readonly name: string;
  readonly shape: readonly number[];
  readonly init: Initializer;
  readonly tensor: Tensor;
  /** Its value after a training step (undefined: unchanged). */
  next?: Tensor;
  initial(seed: number): Float32Array;
}

export interface BuiltModel {
  readonly outputs: Tensor[];
  readonly params: ParamInfo[];
  readonly variables: VariableInfo[];
  /** Terms the layers added to the loss (activity regularisers). */
  readonly losses: Tensor[];
}

export interface BuildOptions {
  readonly training: boolean;
  /** The step counter (f32 or u32 scalar): keys dropout's noise, so each step draws afresh. */
  readonly step?: Tensor;
}

/** FNV-1a: a stable 32-bit hash of a name, for per-parameter and per-layer seeds. */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

const initialOf = (name: string, shape: readonly number[], init: Initializer) => (seed: number) =>
  init.init(shape, hash(`${seed}:${name}`));

export function input(shape: readonly number[], dtype: DType = "f32", name?: string): SymbolicTensor {
  if (!shape.every((d) => Number.isInteger(d) && d > 0))
    throw new KilnError(`input: shape [${shape.join(",")}] (without the batch dim) must be positive integers`);
  return SymbolicTensor.input({ shape: [...shape], dtype, name });
}

export class Model {
  readonly inputs: readonly { readonly name: string; readonly shape: readonly number[]; readonly dtype: DType }[];
  /** Output types, batch dim "B" included. */
  readonly outputs: readonly { readonly shape: Shape; readonly dtype: DType }[];
  /** In the order they are called. */
  readonly layers: readonly Layer[];
  private readonly order: readonly SymbolicTensor[];

  constructor(
    private readonly ins: readonly SymbolicTensor[],
    private readonly outs: readonly SymbolicTensor[],
  ) {
    if (ins.length === 0 || outs.length === 0) throw new KilnError("model: needs at least one input and one output");
    if (ins.some((t) => !t.spec)) throw new KilnError("model: inputs must be made by input()");
    this.inputs = ins.map((t, i) => ({
      name: t.spec!.name ?? (ins.length === 1 ? "x" : `x_${i}`),
      shape: t.spec!.shape,
      dtype: t.spec!.dtype,
    }));
    if (new Set(this.inputs.map((i) => i.name)).size !== ins.length)
      throw new KilnError(`model: input names repeat (${this.inputs.map((i) => i.name).join(", ")})`);
    this.order = topoOrder(outs, ins);
    this.layers = [...new Set(this.order.flatMap((t) => (t.layer ? [t.layer] : [])))];
    nameLayers(this.layers);
    // A dry build checks every shape now, where the model is defined.
    const g = new GraphBuilder();
    const built = this.build(
      g,
      this.inputs.map((i) => g.input(i.name, i.dtype, ["B", ...i.shape])),
      { training: false },
    );
    this.outputs = built.outputs.map((t) => ({ shape: t.shape, dtype: t.dtype }));
  }

  build(g: GraphBuilder, inputs: readonly Tensor[], opts: BuildOptions): BuiltModel {
    if (inputs.length !== this.inputs.length)
      throw new KilnError(`model.build: expects ${this.inputs.length} inputs, got ${inputs.length}`);
    this.inputs.forEach((spec, i) => {
      const t = inputs[i];
      if (t.dtype !== spec.dtype || !shapeEq(t.shape.slice(1), spec.shape) || t.rank !== spec.shape.length + 1) {
        throw new KilnError(
          `model.build: input ${spec.name} should be ${spec.dtype}[B,${spec.shape.join(",")}], got ${formatType(t.type)}`,
        );
      }
    });
    const params = new Map<string, ParamInfo>();
    const variables = new Map<string, VariableInfo>();
    const losses: Tensor[] = [];
    let key: Tensor | undefined;
    const values = new Map<SymbolicTensor, Tensor>(this.ins.map((s, i) => [s, inputs[i]]));

    const scopeFor = (layer: Layer): Scope => {
      let draws = 0;
      const declare = <T extends { shape: readonly number[]; tensor: Tensor }>(
        table: Map<string, T>,
        name: string,
        shape: readonly number[],
        make: (full: string) => T,
      ): Tensor => {
        const full = `${layer.name}/${name}`;
        const had = table.get(full);
        if (had) {
          if (!shapeEq(had.shape, shape))
            throw new KilnError(`${full}: a shared layer asked for [${shape.join(",")}], but it is [${had.shape.join(",")}]`);
          return had.tensor;
        }
        const info = make(full);
        table.set(full, info);
        return info.tensor;
      };
      return {
        training: opts.training,
        param: (name, shape, init, o) =>
          declare(params, name, shape, (full) => ({
            name: full,
            shape: [...shape],
            init,
            decay: o?.decay ?? false,
            tensor: g.input(full, "f32", shape),
            initial: initialOf(full, shape, init),
          })),
        variable: (name, shape, init) =>
          declare(variables, name, shape, (full) => ({
            name: full,
            shape: [...shape],
            init,
            tensor: g.input(full, "f32", shape),
            initial: initialOf(full, shape, init),
          })),
        assign: (variable, next) => {
          const v = [...variables.values()].find((i) => i.tensor.id === variable.id);
          if (!v) throw new KilnError(`${layer.name}: assign needs a variable made by scope.variable`);
          if (!opts.training) throw new KilnError(`${v.name}: variables are assigned only in training`);
          if (!shapeEq(next.shape, v.shape) || next.dtype !== "f32")
            throw new KilnError(`${v.name}: next value ${formatType(next.type)} does not match f32[${v.shape.join(",")}]`);
          v.next = next;
        },
        uniform: (shape) => {
          if (!opts.step) throw new KilnError(`${layer.name}: random noise in training needs the step counter (build opts.step)`);
          key ??= opts.step.dtype === "u32" ? opts.step : opts.step.cast("u32");
          return g.random(shape, hash(`${layer.name}#${draws++}`), key);
        },
        addLoss: (term) => {
          if (term.rank !== 0 || term.dtype !== "f32")
            throw new KilnError(`${layer.name}: an added loss must be an f32 scalar, got ${formatType(term.type)}`);
          losses.push(term);
        },
      };
    };

    for (const s of this.order) {
      if (values.has(s)) continue;
      if (!s.layer) throw new KilnError("model: an input() that is not among the model's inputs is used");
      const layer = s.layer;
      const site = layer.site ? `${layer.site} (${layer.name})` : layer.name;
      values.set(
        s,
        withSite(site, () =>
          layer.call(
            s.args.map((a) => values.get(a)!),
            scopeFor(layer),
          ),
        ),
      );
    }
    return { outputs: this.outs.map((o) => values.get(o)!), params: [...params.values()], variables: [...variables.values()], losses };
  }
}

/** Values in dependency order (post-order DFS from the outputs, iterative). */
function topoOrder(outs: readonly SymbolicTensor[], ins: readonly SymbolicTensor[]): SymbolicTensor[] {
  const order: SymbolicTensor[] = [...ins];
  const done = new Set<SymbolicTensor>(ins);
  const stack: [SymbolicTensor, number][] = outs.map((o) => [o, 0]);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [s, k] = top;
    if (done.has(s)) {
      stack.pop();
      continue;
    }
    if (k < s.args.length) {
      top[1]++;
      stack.push([s.args[k], 0]);
      continue;
    }
    stack.pop();
    done.add(s);
    order.push(s);
  }
  return order;
}

/** "dense_1", "dense_2", … per kind, skipping names taken; explicit names must be unique. */
function nameLayers(layers: readonly Layer[]): void {
  const taken = new Set<string>();
  for (const l of layers) {
    if (!l.named) continue;
    if (taken.has(l.name)) throw new KilnError(`model: two layers are named "${l.name}"`);
    taken.add(l.name);
  }
  const next = new Map<string, number>();
  for (const l of layers) {
    if (l.named) continue;
    let n = next.get(l.kind) ?? 1;
    while (taken.has(`${l.kind}_${n}`)) n++;
    l.nameAs(`${l.kind}_${n}`);
    taken.add(l.name);
    next.set(l.kind, n + 1);
  }
}

export function sequential(layers: readonly Layer[], opts: { inputShape: readonly number[]; inputDtype?: DType; name?: string }): Model {
  if (!Array.isArray(layers) || layers.some((l) => !(l instanceof Layer)))
    throw new KilnError("sequential: the first argument must be an array of layers, e.g. sequential([dense(10)], { inputShape: [784] })");
  checkOptions("sequential", opts, ["inputShape", "inputDtype", "name"]);
  if (!opts?.inputShape)
    throw new KilnError(
      "sequential: needs inputShape, the shape of one example without the batch dim: sequential(layers, { inputShape: [784] }) (or [28, 28, 1] for images)",
    );
  if (!Array.isArray(opts.inputShape))
    throw new KilnError(`sequential: inputShape must be an array of dims such as [784], got ${JSON.stringify(opts.inputShape)}`);
  const x = input(opts.inputShape, opts.inputDtype ?? "f32", opts.name);
  return new Model([x], [layers.reduce((h, l) => l.apply(h), x)]);
}

export function model(opts: {
  inputs: SymbolicTensor | readonly SymbolicTensor[];
  outputs: SymbolicTensor | readonly SymbolicTensor[];
}): Model {
  const list = (v: SymbolicTensor | readonly SymbolicTensor[]) => (v instanceof SymbolicTensor ? [v] : [...v]);
  return new Model(list(opts.inputs), list(opts.outputs));
}

// ---- graphs for the runtime ----

export type MetricName = "accuracy";
/** Keras's spellings of the metrics: "acc" is "accuracy". */
export type MetricAlias = MetricName | "acc";

/** The one spelling of a metric name ("acc" → "accuracy"), or an error naming the known ones. */
export function metricName(given: string): MetricName {
  if (given === "accuracy" || given === "acc") return "accuracy";
  throw new KilnError(`unknown metric "${given}"${didYouMean(given, ["accuracy"])}; the metrics are accuracy (or Keras's "acc")`);
}

export interface SlotInfo {
  readonly name: string;
  readonly param: string;
  readonly shape: readonly number[];
  readonly init: number;
}

export interface ModelGraph {
  readonly graph: Graph;
  /** For compile(graph, { state }): resident input → the output that replaces it (null: kept). */
  readonly state: Record<string, string | null>;
  readonly params: ParamInfo[];
  readonly slots: SlotInfo[];
  /** Non-trainable state; in the training step also the counter "step/t" (starts at 1). */
  readonly variables: VariableInfo[];
  /** Metric → its output: "accuracy" → "correct", the number right in the batch. */
  readonly metrics: Record<string, string>;
}

interface LossOptions {
  readonly loss: LossName | Loss;
  /** Also sum the loss (× batch size), the metric counts and the examples seen into resident
   *  f32 scalars "metrics/loss_sum", "metrics/<output>_sum" and "metrics/seen" (start them at 0),
   *  so a training loop reads a few scalars when it wants them instead of every step. */
  readonly accumulate?: boolean;
  readonly metrics?: readonly MetricAlias[];
  /** Where the user compiled the model: the loss's nodes and errors carry it. */
  readonly site?: string;
  /** λ of the L2 weight decay λ/2·Σ‖W‖² over the kernels (./losses.ts l2Penalty). */
  readonly l2?: number;
}

const METRIC_OUTPUT: Record<MetricName, string> = { accuracy: "correct" };

function lossGraph(m: Model, opts: LossOptions, training: boolean, step?: Tensor) {
  if (m.outputs.length !== 1) throw new KilnError(`model: training and evaluation need one output, this model has ${m.outputs.length}`);
  if (m.inputs.some((i) => i.name === "y")) throw new KilnError(`model: the input name "y" is reserved for the labels`);
  const g = step?.builder ?? new GraphBuilder();
  const xs = m.inputs.map((i) => g.input(i.name, i.dtype, ["B", ...i.shape]));
  const built = m.build(g, xs, { training, step });
  const loss = lossByName(opts.loss);
  const pred = built.outputs[0];
  const lt = loss.labels(pred.shape);
  const y = g.input("y", lt.dtype, lt.shape);
  const site = opts.site ? `${opts.site} (loss ${loss.name})` : `loss ${loss.name}`;
  const terms = [withSite(site, () => withPrefix(site, () => loss.compute(pred, y))), ...built.losses];
  const decayed = built.params.filter((p) => p.decay).map((p) => p.tensor);
  if (opts.l2 && decayed.length) terms.push(l2Penalty(decayed, opts.l2));
  const outputs: Record<string, Tensor> = { loss: terms.slice(1).reduce((a, t) => a.add(t), terms[0]) };
  const metrics: Record<string, string> = {};
  for (const name of (opts.metrics ?? []).map(metricName)) {
    if (!loss.correct) throw new KilnError(`metric ${name}: the loss ${loss.name} has no notion of a correct prediction`);
    metrics[name] = METRIC_OUTPUT[name];
    outputs[metrics[name]] = withSite(site, () => loss.correct!(pred, y));
  }
  return { g, built, outputs, metrics, y };
}

/** Errors thrown by `fn` that do not already name a site start with `site`. */
function withPrefix<T>(site: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof KilnError && !e.message.includes(" @ ")) {
      const wrapped = new KilnError(`${site}: ${e.message}`);
      wrapped.name = e.name;
      throw wrapped;
    }
    throw e;
  }
}

const kept = (infos: readonly { name: string }[]): Record<string, null> => Object.fromEntries(infos.map((i) => [i.name, null]));

/** One training step: inputs x (the model's inputs) and y; outputs "loss" (the batch mean plus
 *  added terms and L2), the metric counts, and "<name>_next" for every parameter, slot
 *  ("<param>/<slot>") and assigned variable, which the state map makes resident updates. With
 *  `lossScaling` the gradients are those of S·loss divided by S, and a step with a non-finite
 *  gradient is skipped (./loss-scaling.ts); its state "amp/…" joins the variables. */
export function trainStepGraph(
  m: Model,
  opts: LossOptions & { readonly optimizer: Optimizer; readonly lossScaling?: LossScaling | false },
): ModelGraph {
  const g = new GraphBuilder();
  const t = g.input("step/t", "f32", []);
  const { built, outputs, metrics, y } = lossGraph(m, opts, true, t);
  const state: Record<string, string | null> = {};
  if (opts.accumulate) accumulate(y, outputs, state);
  const resident = (name: string, next: Tensor | undefined) => {
    state[name] = next ? `${name}_next` : null;
    if (next) outputs[`${name}_next`] = next;
  };
  const wrt = built.params.map((p) => p.tensor);
  const scaling = opts.lossScaling ? scaledGradients(outputs.loss, wrt, opts.lossScaling) : undefined;
  const grads = scaling?.grads ?? grad(outputs.loss, wrt);
  // With loss scaling a step whose gradients are not all finite leaves parameters and slots as they were.
  const update = scaling ? (name: string, next: Tensor, current: Tensor) => resident(name, scaling.keep(next, current)) : resident;
  const slots = optimizerUpdates(opts.optimizer, built.params, grads, t, update);
  for (const v of built.variables) resident(v.name, v.next);
  for (const v of scaling?.variables ?? []) resident(v.name, v.next);
  if (opts.accumulate)
    watchFinite(
      t,
      outputs.loss,
      built.params.map((p) => outputs[`${p.name}_next`]),
      outputs,
      state,
    );
  const counter: VariableInfo = {
    name: "step/t",
    shape: [],
    init: ones(),
    tensor: t,
    next: t.add(1),
    initial: () => new Float32Array([1]),
  };
  resident(counter.name, counter.next);
  return {
    graph: g.build(outputs),
    state,
    params: built.params,
    slots,
    variables: [...built.variables, ...(scaling?.variables ?? []), counter],
    metrics,
  };
}

/** The optimizer's update of each parameter from its gradient, at step `t`: declares its slots
 *  ("<param>/<slot>", f32 inputs of the parameter's shape) and hands each new value — the
 *  parameter's, then its slots' — to `resident(name, next)`. Shared by trainStepGraph and the
 *  fine-tuning of an imported graph (./fine-tune.ts). */
export function optimizerUpdates(
  optimizer: Optimizer,
  params: readonly { readonly name: string; readonly shape: readonly number[]; readonly tensor: Tensor }[],
  grads: readonly Tensor[],
  t: Tensor,
  resident: (name: string, next: Tensor, current: Tensor) => void,
): SlotInfo[] {
  const g = t.builder;
  const lr = optimizer.schedule(t);
  const slots: SlotInfo[] = [];
  params.forEach((p, k) => {
    const current: Record<string, Tensor> = {};
    for (const s of optimizer.slots) {
      const name = `${p.name}/${s.name}`;
      current[s.name] = g.input(name, "f32", p.shape);
      slots.push({ name, param: p.name, shape: p.shape, init: s.init });
    }
    const up = optimizer.update(p.tensor, grads[k], current, { t, lr });
    resident(p.name, up.param, p.tensor);
    for (const s of optimizer.slots) {
      const next = up.slots[s.name];
      if (!next) throw new KilnError(`optimizer ${optimizer.name}: update gave no value for slot "${s.name}" of ${p.name}`);
      resident(`${p.name}/${s.name}`, next, current[s.name]);
    }
  });
  return slots;
}

const F32_MAX = 3.4028234663852886e38;

/** The first step (the counter t) whose loss, and the first whose updated parameters, hold a NaN
 *  or an infinity, as resident scalars "metrics/first_bad_loss" and "metrics/first_bad_param"
 *  (0: none yet): an all-finite reduction on the GPU that fit reads with the loss sums, so it
 *  costs no extra synchronisation and still names the step. */
function watchFinite(
  t: Tensor,
  loss: Tensor,
  params: readonly Tensor[],
  outputs: Record<string, Tensor>,
  state: Record<string, string | null>,
): void {
  const g = t.builder;
  const nonFinite = (x: Tensor) => x.abs().le(F32_MAX).select(0, 1).sum();
  const first = (key: string, bad: Tensor) => {
    const cur = g.input(key, "f32", []);
    outputs[`${key}_next`] = cur.eq(0).and(bad.gt(0)).select(t, cur);
    state[key] = `${key}_next`;
  };
  first("metrics/first_bad_loss", nonFinite(loss));
  if (params.length)
    first(
      "metrics/first_bad_param",
      params.map(nonFinite).reduce((a, b) => a.add(b)),
    );
}

/** Loss and metrics in inference mode (dropout off, batchNorm on its moving statistics). */
export function evalGraph(m: Model, opts: LossOptions): ModelGraph {
  const { g, built, outputs, metrics, y } = lossGraph(m, opts, false);
  const state: Record<string, string | null> = { ...kept(built.params), ...kept(built.variables) };
  if (opts.accumulate) accumulate(y, outputs, state);
  return { graph: g.build(outputs), state, params: built.params, slots: [], variables: built.variables, metrics };
}

/** The running sums of `loss` (a batch mean, so × the batch size) and of each metric count, and
 *  the examples seen, as resident scalars updated by the step (see LossOptions.accumulate). */
function accumulate(y: Tensor, outputs: Record<string, Tensor>, state: Record<string, string | null>): void {
  const g = y.builder;
  const n = g.constant(1).expand([y.shape[0]]).sum();
  const sums: Record<string, Tensor> = { loss: outputs.loss.mul(n), seen: n };
  for (const [name, t] of Object.entries(outputs)) if (name !== "loss") sums[name] = t;
  for (const [name, t] of Object.entries(sums)) {
    const key = name === "seen" ? "metrics/seen" : `metrics/${name}_sum`;
    outputs[`${key}_next`] = g.input(key, "f32", []).add(t);
    state[key] = `${key}_next`;
  }
}

/** The forward pass in inference mode: output "y" ("y_0", "y_1", … for several outputs). */
export function predictGraph(m: Model): ModelGraph {
  const g = new GraphBuilder();
  const built = m.build(
    g,
    m.inputs.map((i) => g.input(i.name, i.dtype, ["B", ...i.shape])),
    { training: false },
  );
  const outputs = Object.fromEntries(built.outputs.map((t, i) => [built.outputs.length === 1 ? "y" : `y_${i}`, t]));
  return {
    graph: g.build(outputs),
    state: { ...kept(built.params), ...kept(built.variables) },
    params: built.params,
    slots: [],
    variables: built.variables,
    metrics: {},
  };
}
