/** Layers, as Keras names them, over the graph builder. A layer is a recipe: `call` adds its
 *  nodes to a graph when the model is built, asking its Scope for parameters, so the same model
 *  builds a training graph and an inference graph. Inputs are batch-major with a symbolic batch
 *  "B": dense [B, in], conv NHWC [B, H, W, C], sequences [B, T, F] (T static).
 *  Recurrent layers are in ./recurrent.ts. */
import { KilnError } from "../ir/errors.ts";
import { formatType } from "../ir/shape.ts";
import type { DType, Shape, ValueId } from "../ir/types.ts";
import type { GraphBuilder, Tensor } from "./builder.ts";
import { batchNormalization, leakyRelu, maxout as maxoutOf, softmax } from "./composites.ts";
import { glorotUniform, ones, uniform, zeros, type Initializer } from "./initializers.ts";
import { checkChoice, checkInt, checkOptions, checkRange } from "./options.ts";
import { callSite } from "./site.ts";

export interface Scope {
  readonly training: boolean;
  /** A trainable parameter: a graph input named `${layer.name}/${name}` (e.g. "dense_1/kernel"),
   *  created with `init` the first time the model is built. `decay`: subject to L2 weight decay
   *  (kernels; not biases, nor batchNorm's gamma/beta). */
  param(name: string, shape: readonly number[], init: Initializer, opts?: { decay?: boolean }): Tensor;
  /** A non-trainable variable (batchNorm's moving statistics): its current value. */
  variable(name: string, shape: readonly number[], init: Initializer): Tensor;
  /** In training, the variable's value after this step (stored by the step graph's state map). */
  assign(variable: Tensor, next: Tensor): void;
  /** Uniform [0, 1) noise of `shape`, different at every step and for every layer. */
  uniform(shape: Shape): Tensor;
  /** An extra loss term (an activity regulariser such as the KL sparsity penalty). */
  addLoss(term: Tensor): void;
}

// ---- activations ----

export type ActivationName = "sigmoid" | "tanh" | "relu" | "leakyRelu" | "softmax" | "linear";
export const ACTIVATIONS: readonly ActivationName[] = ["sigmoid", "tanh", "relu", "leakyRelu", "softmax", "linear"];

/** Outputs made by softmax or sigmoid remember their logits (per graph), so a loss from
 *  probabilities can be computed from the logits instead: stable for any logit (./losses.ts). */
const preActivations = new WeakMap<GraphBuilder, Map<ValueId, { activation: "softmax" | "sigmoid"; logits: Tensor }>>();

export function logitsOf(t: Tensor): { activation: "softmax" | "sigmoid"; logits: Tensor } | undefined {
  return preActivations.get(t.builder)?.get(t.id);
}

/** `alpha`: leaky ReLU's slope below 0 (default 0.01). */
export function activate(x: Tensor, name: ActivationName | undefined, alpha?: number): Tensor {
  switch (name ?? "linear") {
    case "linear":
      return x;
    case "relu":
      return x.relu();
    case "tanh":
      return x.tanh();
    case "leakyRelu":
      return leakyRelu(x, alpha);
    case "sigmoid":
    case "softmax": {
      const act = name as "softmax" | "sigmoid";
      const y = act === "softmax" ? softmax(x) : x.sigmoid();
      let m = preActivations.get(x.builder);
      if (!m) preActivations.set(x.builder, (m = new Map()));
      m.set(y.id, { activation: act, logits: x });
      return y;
    }
    default:
      throw new KilnError(`unknown activation "${name}" (sigmoid, tanh, relu, leakyRelu, softmax, linear)`);
  }
}

// ---- the symbolic graph of layer calls (functional models) ----

export interface InputSpec {
  readonly name?: string;
  /** Without the batch dim. */
  readonly shape: readonly number[];
  readonly dtype: DType;
}

/** A value in a model definition: a model input, or a layer applied to other such values. */
export class SymbolicTensor {
  private constructor(
    readonly spec: InputSpec | undefined,
    readonly layer: Layer | undefined,
    readonly args: readonly SymbolicTensor[],
  ) {}
  static input(spec: InputSpec): SymbolicTensor {
    return new SymbolicTensor(spec, undefined, []);
  }
  static call(layer: Layer, args: readonly SymbolicTensor[]): SymbolicTensor {
    return new SymbolicTensor(undefined, layer, args);
  }
}

export abstract class Layer {
  /** The stem of automatic names: "dense" → "dense_1", "dense_2", … within a model. */
  abstract readonly kind: string;
  private given: string | undefined;
  /** Where the layer was made (src/api/site.ts): its nodes carry it, with its name. */
  readonly site: string = callSite();
  constructor(name?: string) {
    this.given = name;
  }

  get name(): string {
    if (this.given === undefined) throw new KilnError(`a ${this.kind} layer has no name until it is part of a model`);
    return this.given;
  }
  get named(): boolean {
    return this.given !== undefined;
  }
  /** For errors: "conv2d_1 @ lenet.ts:14". */
  protected get where(): string {
    return `${this.given ?? this.kind}${this.site ? ` @ ${this.site}` : ""}`;
  }
  /** Set once, by the first model that holds the layer: parameter names must not change. */
  nameAs(name: string): void {
    this.given ??= name;
  }

  abstract call(inputs: readonly Tensor[], scope: Scope): Tensor;

  /** The functional API: this layer applied to model values. */
  apply(...inputs: SymbolicTensor[]): SymbolicTensor {
    if (inputs.length === 0) throw new KilnError(`${this.kind}.apply needs an input`);
    return SymbolicTensor.call(this, inputs);
  }

  protected one(inputs: readonly Tensor[], rank?: number): Tensor {
    if (inputs.length !== 1) throw new KilnError(`${this.where}: takes one input, got ${inputs.length}`);
    const x = inputs[0];
    if (rank !== undefined && x.rank !== rank) throw new KilnError(`${this.where}: expects rank ${rank}, got ${formatType(x.type)}`);
    if (x.dtype !== "f32") throw new KilnError(`${this.where}: expects f32, got ${formatType(x.type)}`);
    return x;
  }

  protected staticDim(x: Tensor, axis: number): number {
    const d = x.shape[axis < 0 ? x.rank + axis : axis];
    if (typeof d !== "number") throw new KilnError(`${this.where}: axis ${axis} of ${formatType(x.type)} must be static`);
    return d;
  }
}

// ---- dense and convolution ----

export interface DenseOptions {
  readonly activation?: ActivationName;
  /** With activation "leakyRelu": the slope below 0 (default 0.01). */
  readonly alpha?: number;
  readonly useBias?: boolean;
  readonly kernelInitializer?: Initializer;
  readonly biasInitializer?: Initializer;
  readonly name?: string;
}

class Dense extends Layer {
  readonly kind = "dense";
  constructor(
    readonly units: number,
    readonly opts: DenseOptions,
  ) {
    super(opts?.name);
    checkOptions(this.where, opts, DENSE_OPTIONS);
    checkInt(this.where, "units (the output size)", units, 1);
    checkActivation(this.where, opts);
  }
  call(inputs: readonly Tensor[], scope: Scope): Tensor {
    const x = this.one(inputs);
    if (x.rank === 4)
      throw new KilnError(
        `${this.where}: its input is an image ${formatType(x.type)}; dense acts on the last axis only — put flatten() before it (or use conv2d)`,
      );
    const w = scope.param("kernel", [this.staticDim(x, -1), this.units], this.opts.kernelInitializer ?? glorotUniform(), { decay: true });
    let y = x.matmul(w);
    if (this.opts.useBias ?? true) y = y.add(scope.param("bias", [this.units], this.opts.biasInitializer ?? zeros()));
    return activate(y, this.opts.activation, this.opts.alpha);
  }
}

const DENSE_OPTIONS = ["activation", "alpha", "useBias", "kernelInitializer", "biasInitializer", "name"];

function checkActivation(what: string, opts: DenseOptions): void {
  if (opts.activation !== undefined) checkChoice(what, "activation", opts.activation, ACTIVATIONS);
  if (opts.alpha !== undefined) {
    if (opts.activation !== "leakyRelu") throw new KilnError(`${what}: alpha is leaky ReLU's slope; it needs activation: "leakyRelu"`);
    checkRange(what, "alpha", opts.alpha, 0, Infinity);
  }
}

/** [..., in] → [..., units]: x·W + b, then the activation. */
export const dense = (units: number, opts: DenseOptions = {}): Layer => new Dense(units, opts);

type Pair = readonly [number, number];
const pair = (v: number | Pair): Pair => (typeof v === "number" ? [v, v] : v);

/** TF's padding: "valid" none; "same" makes the output ceil(in / stride) and splits the padding
 *  total (the smaller half on top/left). [top, bottom, left, right]. */
export function padding2d(mode: "same" | "valid", inHW: Pair, kernel: Pair, strides: Pair): [number, number, number, number] {
  if (mode === "valid") return [0, 0, 0, 0];
  const split = (n: number, k: number, s: number): [number, number] => {
    const total = Math.max((Math.ceil(n / s) - 1) * s + k - n, 0);
    return [Math.floor(total / 2), total - Math.floor(total / 2)];
  };
  return [...split(inHW[0], kernel[0], strides[0]), ...split(inHW[1], kernel[1], strides[1])];
}

export interface Conv2dOptions extends DenseOptions {
  readonly strides?: number | Pair;
  readonly padding?: "same" | "valid";
}

class Conv2d extends Layer {
  readonly kind = "conv2d";
  constructor(
    readonly filters: number,
    readonly kernel: Pair,
    readonly opts: Conv2dOptions,
  ) {
    super(opts?.name);
    checkOptions(this.where, opts, [...DENSE_OPTIONS, "strides", "padding"]);
    checkInt(this.where, "filters", filters, 1);
    for (const k of kernel) checkInt(this.where, "kernel size", k, 1);
    for (const s of pair(opts.strides ?? 1)) checkInt(this.where, "strides", s, 1);
    if (opts.padding !== undefined) checkChoice(this.where, "padding", opts.padding, ["same", "valid"]);
    checkActivation(this.where, opts);
  }
  call(inputs: readonly Tensor[], scope: Scope): Tensor {
    const x = this.one(inputs, 4);
    const strides = pair(this.opts.strides ?? 1);
    const [h, w, ci] = [1, 2, 3].map((a) => this.staticDim(x, a));
    const f = scope.param("kernel", [...this.kernel, ci, this.filters], this.opts.kernelInitializer ?? glorotUniform(), { decay: true });
    let y = x.conv2d(f, { strides, padding: padding2d(this.opts.padding ?? "valid", [h, w], this.kernel, strides) });
    if (this.opts.useBias ?? true) y = y.add(scope.param("bias", [this.filters], this.opts.biasInitializer ?? zeros()));
    return activate(y, this.opts.activation, this.opts.alpha);
  }
}

/** NHWC [B, H, W, Ci] → [B, H', W', filters] with an HWIO kernel [kh, kw, Ci, filters]. */
export const conv2d = (filters: number, kernel: number | Pair, opts: Conv2dOptions = {}): Layer => new Conv2d(filters, pair(kernel), opts);

class Pool2d extends Layer {
  constructor(
    readonly kind: "max_pool2d" | "avg_pool2d",
    readonly pool: Pair,
    readonly strides: Pair,
    name?: string,
  ) {
    super(name);
    for (const p of pool) checkInt(this.where, "pool size", p, 1);
    for (const s of strides) checkInt(this.where, "strides", s, 1);
  }
  call(inputs: readonly Tensor[]): Tensor {
    const x = this.one(inputs, 4);
    return this.kind === "max_pool2d" ? x.maxPool2d(this.pool, this.strides) : x.avgPool2d(this.pool, this.strides);
  }
}

/** "valid" pooling windows; strides default to the window, as in Keras. */
export const maxPool2d = (pool: number | Pair = 2, strides?: number | Pair, opts: { name?: string } = {}): Layer =>
  new Pool2d("max_pool2d", pair(pool), pair(strides ?? pool), opts.name);
export const avgPool2d = (pool: number | Pair = 2, strides?: number | Pair, opts: { name?: string } = {}): Layer =>
  new Pool2d("avg_pool2d", pair(pool), pair(strides ?? pool), opts.name);

class Flatten extends Layer {
  readonly kind = "flatten";
  call(inputs: readonly Tensor[]): Tensor {
    const x = this.one(inputs);
    const rest = x.shape.slice(1).map((_, i) => this.staticDim(x, i + 1));
    return x.reshape([x.shape[0], rest.reduce((a, d) => a * d, 1)]);
  }
}

/** [B, ...] → [B, Π ...]: NHWC flattens in Keras's order, no transpose. */
export const flatten = (opts: { name?: string } = {}): Layer => (checkOptions("flatten", opts, ["name"]), new Flatten(opts.name));

// ---- regularisation and normalisation ----

class Dropout extends Layer {
  readonly kind = "dropout";
  constructor(
    readonly rate: number,
    name?: string,
  ) {
    super(name);
    if (!(rate >= 0 && rate < 1)) throw new KilnError(`dropout: rate must be in [0, 1), got ${rate}`);
  }
  call(inputs: readonly Tensor[], scope: Scope): Tensor {
    const x = this.one(inputs);
    if (!scope.training || this.rate === 0) return x;
    // Inverted dropout: keep with probability 1 − rate and scale by 1 / (1 − rate), so the
    // expected activation is unchanged and inference is the identity.
    const keep = scope.uniform(x.shape).ge(this.rate);
    return keep.select(x.mul(1 / (1 - this.rate)), 0);
  }
}

export const dropout = (rate: number, opts: { name?: string } = {}): Layer => (
  checkOptions("dropout", opts, ["name"]), new Dropout(rate, opts.name)
);

export interface BatchNormOptions {
  /** Moving statistics ← momentum·old + (1 − momentum)·batch (Keras: 0.99). */
  readonly momentum?: number;
  /** Added to the variance (Keras: 1e-3). */
  readonly epsilon?: number;
  readonly name?: string;
}

class BatchNorm extends Layer {
  readonly kind = "batch_norm";
  constructor(readonly opts: BatchNormOptions) {
    super(opts?.name);
    checkOptions(this.where, opts, ["momentum", "epsilon", "name"]);
    if (opts.momentum !== undefined) checkRange(this.where, "momentum (the moving statistics' decay, Keras 0.99)", opts.momentum, 0, 1);
    if (opts.epsilon !== undefined) checkRange(this.where, "epsilon", opts.epsilon, 0, Infinity, { lo: true });
  }
  call(inputs: readonly Tensor[], scope: Scope): Tensor {
    const x = this.one(inputs);
    if (x.rank < 2) throw new KilnError(`${this.where}: needs [B, ..., C], got ${formatType(x.type)}`);
    const c = this.staticDim(x, -1);
    const [momentum, eps] = [this.opts.momentum ?? 0.99, this.opts.epsilon ?? 1e-3];
    const gamma = scope.param("gamma", [c], ones());
    const beta = scope.param("beta", [c], zeros());
    const movingMean = scope.variable("moving_mean", [c], zeros());
    const movingVar = scope.variable("moving_variance", [c], ones());
    let mean = movingMean;
    let variance = movingVar;
    if (scope.training) {
      // Statistics over every axis but the channels. The batch variance is the biased one
      // (÷ N), for normalising and for the moving variance alike, as Keras 3 (ops.moments)
      // does; PyTorch and TF's fused kernel keep the unbiased one in the running statistic.
      const axes = x.shape.slice(0, -1).map((_, i) => i);
      mean = x.mean(axes);
      const d = x.sub(mean);
      variance = d.mul(d).mean(axes);
      scope.assign(movingMean, movingMean.mul(momentum).add(mean.mul(1 - momentum)));
      scope.assign(movingVar, movingVar.mul(momentum).add(variance.mul(1 - momentum)));
    }
    return batchNormalization(x, { mean, variance, gamma, beta, epsilon: eps });
  }
}

/** Normalise over all axes but the last: dense [B, F] and NHWC conv outputs. */
export const batchNorm = (opts: BatchNormOptions = {}): Layer => new BatchNorm(opts);

class Embedding extends Layer {
  readonly kind = "embedding";
  constructor(
    readonly vocab: number,
    readonly dim: number,
    readonly opts: { initializer?: Initializer; name?: string },
  ) {
    super(opts?.name);
    checkOptions(this.where, opts, ["initializer", "name"]);
    checkInt(this.where, "vocabulary size", vocab, 1);
    checkInt(this.where, "dim", dim, 1);
  }
  call(inputs: readonly Tensor[], scope: Scope): Tensor {
    if (inputs.length !== 1 || inputs[0].dtype !== "i32") {
      throw new KilnError(`${this.where}: takes one i32 index tensor, got ${inputs.map((t) => formatType(t.type)).join(", ")}`);
    }
    const table = scope.param("embeddings", [this.vocab, this.dim], this.opts.initializer ?? uniform(-0.05, 0.05));
    return table.gather(inputs[0], 0);
  }
}

/** i32 indices [B, T] → [B, T, dim], rows of a [vocab, dim] table (Keras: uniform ±0.05). */
export const embedding = (vocab: number, dim: number, opts: { initializer?: Initializer; name?: string } = {}): Layer =>
  new Embedding(vocab, dim, opts);

// ---- activations as layers ----

class Activation extends Layer {
  readonly kind = "activation";
  constructor(
    readonly fn: ActivationName,
    name?: string,
    readonly alpha?: number,
  ) {
    super(name);
    checkActivation(this.where, { activation: fn, ...(alpha !== undefined ? { alpha } : {}) });
  }
  call(inputs: readonly Tensor[]): Tensor {
    return activate(this.one(inputs), this.fn, this.alpha);
  }
}

export const activation = (name: ActivationName, opts: { name?: string; alpha?: number } = {}): Layer => (
  checkOptions("activation", opts, ["name", "alpha"]), new Activation(name, opts.name, opts.alpha)
);

/** Leaky ReLU as a layer: x where x > 0, else alpha·x (default 0.01). */
export const leakyReluLayer = (opts: { alpha?: number; name?: string } = {}): Layer => (
  checkOptions("leakyRelu", opts, ["alpha", "name"]), new Activation("leakyRelu", opts.name, opts.alpha ?? 0.01)
);

class Maxout extends Layer {
  readonly kind = "maxout";
  constructor(
    readonly pieces: number,
    name?: string,
  ) {
    super(name);
    checkInt(this.where, "pieces", pieces, 1);
  }
  call(inputs: readonly Tensor[]): Tensor {
    return maxoutOf(this.one(inputs), this.pieces);
  }
}

/** [..., C] → [..., C / pieces], the max over each group of `pieces` units. */
export const maxout = (pieces: number, opts: { name?: string } = {}): Layer => new Maxout(pieces, opts.name);
