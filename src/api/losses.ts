/** Losses (scalars: the mean over the examples of the batch), penalties and accuracy counts, as
 *  functions and by name. The from-logits forms are the composites of ./composites.ts; the
 *  from-probabilities forms clip to [ε, 1 − ε] with ε = 1e-7, as Keras does.
 *
 *  Fusion by name: a loss looked up with `lossByName` ("categoricalCrossEntropy",
 *  "sparseCategoricalCrossEntropy", "binaryCrossEntropy") whose prediction was made by softmax
 *  (or sigmoid, for binary) — a layer's activation — is computed from the logits before it with
 *  the stable from-logits form, as Keras does for a softmax output: the same value where the
 *  clip does not bite, no log(0) and the textbook gradient (p − y) where it would. */
import { KilnError } from "../ir/errors.ts";
import { formatType, shapeEq } from "../ir/shape.ts";
import type { DType, Shape } from "../ir/types.ts";
import type { Tensor } from "./builder.ts";
import { mse as mseOf, oneHot, sigmoidBinaryCrossEntropy, softmaxCrossEntropy, sparseSoftmaxCrossEntropy } from "./composites.ts";
import { logitsOf } from "./layers.ts";

export const EPSILON = 1e-7;

const clip = (p: Tensor, eps: number): Tensor => p.maximum(eps).minimum(1 - eps);

function sameShape(what: string, a: Tensor, b: Tensor): void {
  if (!shapeEq(a.shape, b.shape)) throw new KilnError(`${what}: shapes differ (${formatType(a.type)} vs ${formatType(b.type)})`);
}

function sparseLabels(what: string, pred: Tensor, labels: Tensor): void {
  if (pred.rank === 0 || labels.dtype !== "i32" || !shapeEq(labels.shape, pred.shape.slice(0, -1))) {
    throw new KilnError(
      `${what}: needs i32 labels of the prediction's shape without the last axis (prediction ${formatType(pred.type)}, labels ${formatType(labels.type)})`,
    );
  }
}

export const mse = mseOf;

/** From probabilities (each row rescaled to sum 1, then clipped, as Keras does):
 *  mean over rows of −Σ labels · log p. */
export function categoricalCrossEntropy(probs: Tensor, labels: Tensor, eps = EPSILON): Tensor {
  sameShape("categoricalCrossEntropy", probs, labels);
  const p = clip(probs.div(probs.sum(-1, true)), eps);
  return labels.mul(p.log()).sum(-1).neg().mean();
}

export const categoricalCrossEntropyFromLogits = (logits: Tensor, labels: Tensor): Tensor => softmaxCrossEntropy(logits, labels);

/** From probabilities with i32 class labels: mean of −log p[label] (p clipped). */
export function sparseCategoricalCrossEntropy(probs: Tensor, labels: Tensor, eps = EPSILON): Tensor {
  sparseLabels("sparseCategoricalCrossEntropy", probs, labels);
  const classes = probs.shape[probs.rank - 1];
  return oneHot(labels, classes).mul(clip(probs, eps).log()).sum(-1).neg().mean();
}

export const sparseCategoricalCrossEntropyFromLogits = (logits: Tensor, labels: Tensor): Tensor =>
  sparseSoftmaxCrossEntropy(logits, labels);

/** From probabilities (clipped): mean of −(y log p + (1 − y) log(1 − p)). */
export function binaryCrossEntropy(probs: Tensor, labels: Tensor, eps = EPSILON): Tensor {
  sameShape("binaryCrossEntropy", probs, labels);
  const p = clip(probs, eps);
  return labels
    .mul(p.log())
    .add(labels.neg().add(1).mul(p.neg().add(1).log()))
    .neg()
    .mean();
}

/** Stable for any logit: max(z, 0) − z·y + log(1 + e^−|z|). */
export const binaryCrossEntropyFromLogits = (logits: Tensor, labels: Tensor): Tensor => sigmoidBinaryCrossEntropy(logits, labels);

/** L2 weight decay, the course's convention: λ/2 · Σ ‖W‖², whose gradient is λ·W. (Keras's
 *  l2(λ) is λ · Σ w², without the ½: l2Penalty(ws, 2λ) equals it.) */
export function l2Penalty(params: readonly Tensor[], lambda: number): Tensor {
  if (params.length === 0) throw new KilnError("l2Penalty: no parameters");
  const sq = params.map((w) => w.mul(w).sum());
  return sq
    .slice(1)
    .reduce((a, s) => a.add(s), sq[0])
    .mul(lambda / 2);
}

/** The sparse autoencoder's penalty on hidden activations h [B, H] in (0, 1):
 *  β Σ_j KL(ρ ‖ ρ̂_j) = β Σ_j [ρ log(ρ/ρ̂_j) + (1−ρ) log((1−ρ)/(1−ρ̂_j))], ρ̂_j the batch mean. */
export function klSparsity(h: Tensor, rho: number, beta: number): Tensor {
  if (h.rank !== 2) throw new KilnError(`klSparsity: needs activations [B, H], got ${formatType(h.type)}`);
  if (!(rho > 0 && rho < 1)) throw new KilnError(`klSparsity: rho must be in (0, 1), got ${rho}`);
  const r = h.mean(0);
  const kl = r
    .recip()
    .mul(rho)
    .log()
    .mul(rho)
    .add(
      r
        .neg()
        .add(1)
        .recip()
        .mul(1 - rho)
        .log()
        .mul(1 - rho),
    );
  return kl.sum().mul(beta);
}

// ---- by name, with the accuracy that goes with each ----

export type LossName =
  | "mse"
  | "categoricalCrossEntropy"
  | "categoricalCrossEntropyFromLogits"
  | "sparseCategoricalCrossEntropy"
  | "sparseCategoricalCrossEntropyFromLogits"
  | "binaryCrossEntropy"
  | "binaryCrossEntropyFromLogits"
  | KerasLossName;

/** Keras's names, for users porting a model: the same losses (from probabilities). */
export type KerasLossName = "mean_squared_error" | "categorical_crossentropy" | "sparse_categorical_crossentropy" | "binary_crossentropy";

export interface Loss {
  readonly name: string;
  /** The labels' dtype and shape (batch dim included) for a prediction's shape. */
  labels(pred: Shape): { dtype: DType; shape: Shape };
  compute(pred: Tensor, labels: Tensor): Tensor;
  /** The number of correct predictions in the batch (f32 scalar): dividing by the batch size
   *  gives Keras's accuracy. A binary prediction with k units per example counts each right
   *  unit as 1/k. Undefined for a loss with no notion of accuracy (mse). */
  correct?(pred: Tensor, labels: Tensor): Tensor;
}

type Kind = "categorical" | "sparse" | "binary";
const fusedActivation: Record<Kind, "softmax" | "sigmoid"> = { categorical: "softmax", sparse: "softmax", binary: "sigmoid" };

const count = (hits: Tensor): Tensor => hits.cast("f32").sum();

function accuracy(kind: Kind, fromLogits: boolean) {
  return (pred: Tensor, labels: Tensor): Tensor => {
    if (kind === "categorical") return count(pred.argmax(-1).eq(labels.argmax(-1)));
    if (kind === "sparse") return count(pred.argmax(-1).eq(labels));
    // Binary: a probability above ½ is a logit above 0; the labels are 0 or 1.
    const logits = fromLogits ? pred : logitsOf(pred)?.activation === "sigmoid" ? logitsOf(pred)!.logits : undefined;
    const said = logits ? logits.gt(0) : pred.gt(0.5);
    const perExample = pred.shape.slice(1).reduce<number>((a, d) => a * (typeof d === "number" ? d : NaN), 1);
    if (!Number.isFinite(perExample))
      throw new KilnError(`binary accuracy: the prediction ${formatType(pred.type)} needs static dims after the batch`);
    const hits = count(said.cast("f32").eq(labels.gt(0.5).cast("f32")));
    return perExample === 1 ? hits : hits.div(perExample);
  };
}

const fromProbs: Record<Kind, (p: Tensor, y: Tensor) => Tensor> = {
  categorical: categoricalCrossEntropy,
  sparse: sparseCategoricalCrossEntropy,
  binary: binaryCrossEntropy,
};
const fromLogitsOf: Record<Kind, (z: Tensor, y: Tensor) => Tensor> = {
  categorical: categoricalCrossEntropyFromLogits,
  sparse: sparseCategoricalCrossEntropyFromLogits,
  binary: binaryCrossEntropyFromLogits,
};

function crossEntropy(kind: Kind, fromLogits: boolean, name: string): Loss {
  return {
    name,
    labels: (pred) => (kind === "sparse" ? { dtype: "i32", shape: pred.slice(0, -1) } : { dtype: "f32", shape: pred }),
    compute(pred, labels) {
      if (fromLogits) return fromLogitsOf[kind](pred, labels);
      const pre = logitsOf(pred);
      return pre?.activation === fusedActivation[kind] ? fromLogitsOf[kind](pre.logits, labels) : fromProbs[kind](pred, labels);
    },
    correct: accuracy(kind, fromLogits),
  };
}

const KERAS_NAMES: Readonly<Record<KerasLossName, LossName>> = {
  mean_squared_error: "mse",
  categorical_crossentropy: "categoricalCrossEntropy",
  sparse_categorical_crossentropy: "sparseCategoricalCrossEntropy",
  binary_crossentropy: "binaryCrossEntropy",
};

export function lossByName(given: LossName | Loss): Loss {
  if (typeof given !== "string") return given;
  const name: string = KERAS_NAMES[given as KerasLossName] ?? given;
  const m = /^(categorical|sparseCategorical|binary)CrossEntropy(FromLogits)?$/.exec(name);
  if (m) {
    const kind: Kind = m[1] === "sparseCategorical" ? "sparse" : (m[1] as Kind);
    return crossEntropy(kind, m[2] !== undefined, name);
  }
  if (name === "mse") return { name, labels: (pred) => ({ dtype: "f32", shape: pred }), compute: mse };
  throw new KilnError(
    `unknown loss "${given}" (mse, categoricalCrossEntropy, sparseCategoricalCrossEntropy, binaryCrossEntropy, each cross-entropy also …FromLogits; or Keras's ${Object.keys(KERAS_NAMES).join(", ")})`,
  );
}
