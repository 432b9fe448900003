/** Dynamic loss scaling for mixed-precision training (compileModel's precision "mixed", as
 *  PyTorch's GradScaler), expressed in the training step's graph so it runs in the step's one
 *  submission and goes into bundles. Gradients stored as f16 flush to zero below 2⁻²⁴ ≈ 6e-8
 *  and lose bits below 2⁻¹⁴; the loss is multiplied by a scale S (the backward seed is S, not 1),
 *  so every gradient is S times larger while it is stored, and divided by S in f32 before the
 *  optimizer reads it:
 *      seed = S                                  resident scalar "amp/scale" (initial 2¹⁶)
 *      gᵢ   = ∂(S·loss)/∂pᵢ                       the backward pass, activations f16
 *      ok   = Σᵢ #(non-finite elements of gᵢ) = 0 one all-finite reduction
 *      pᵢ'  = ok ? update(pᵢ, gᵢ / S) : pᵢ        parameters and optimizer slots; a step with an
 *                                                 inf or NaN gradient changes neither
 *      S'   = ok ? (n + 1 = N ? 2S : S) : S / 2   n: good steps in a row ("amp/good_steps"), N the
 *      n'   = ok ? (n + 1 = N ? 0 : n + 1) : 0    growth interval (default 2000, as PyTorch)
 *      skipped' = skipped + (ok ? 0 : 1)          "amp/skipped", which fit reports per epoch
 *  S stays within [2⁻²⁴, 2⁶⁴]: it never reaches 0 (gᵢ / 0) nor an f32 overflow of S·loss.
 *  Differences from PyTorch: the step counter "step/t" (Adam's bias correction, the learning-rate
 *  schedule) counts every batch, skipped ones included; batchNorm's moving statistics are
 *  updated on a skipped step, as PyTorch's forward pass updates them. */
import type { Tensor } from "./builder.ts";
import { grad } from "./grad.ts";
import { constant, type Initializer, zeros } from "./initializers.ts";

/** A resident scalar of the scaler (a model variable, ./model.ts ScaleVariable: saved with the weights). */
export interface ScaleVariable {
  readonly name: string;
  readonly shape: readonly number[];
  readonly init: Initializer;
  readonly tensor: Tensor;
  next?: Tensor;
  initial(seed: number): Float32Array;
}

export interface LossScaling {
  /** S at the first step (default 2¹⁶ = 65536, as PyTorch). */
  readonly initial?: number;
  /** Good steps in a row after which S doubles (default 2000). */
  readonly growthInterval?: number;
}

export const MIN_SCALE = 2 ** -24;
export const MAX_SCALE = 2 ** 64;

/** The gradients of `loss` with respect to `wrt`, unscaled, and `keep(next, current)`: the
 *  value a resident update takes (`next` on a good step, `current` on a skipped one); the scale's
 *  own state as variables (resident, saved with the weights). */
export function scaledGradients(
  loss: Tensor,
  wrt: readonly Tensor[],
  opts: LossScaling,
): { grads: Tensor[]; keep: (next: Tensor, current: Tensor) => Tensor; variables: ScaleVariable[] } {
  const g = loss.builder;
  const initial = opts.initial ?? 2 ** 16;
  const interval = opts.growthInterval ?? 2000;
  const scale = g.input("amp/scale", "f32", []);
  const good = g.input("amp/good_steps", "f32", []);
  const skipped = g.input("amp/skipped", "f32", []);
  const scaled = grad(loss, wrt, scale);
  // |x| ≤ f32's max is false for ±inf and NaN alike.
  const bad = scaled.map((x) => x.abs().le(3.4028234663852886e38).select(0, 1).sum()).reduce((a, b) => a.add(b), g.constant(0));
  const ok = bad.eq(0);
  const grows = good.add(1).ge(interval);
  const variable = (name: string, tensor: Tensor, next: Tensor, value: number): ScaleVariable => ({
    name,
    shape: [],
    init: value === 0 ? zeros() : constant(value),
    tensor,
    next,
    initial: () => new Float32Array([value]),
  });
  return {
    grads: scaled.map((x) => x.div(scale)),
    keep: (next, current) => ok.select(next, current),
    variables: [
      variable(
        "amp/scale",
        scale,
        ok.select(grows.select(scale.mul(2).minimum(MAX_SCALE), scale), scale.mul(0.5).maximum(MIN_SCALE)),
        initial,
      ),
      variable("amp/good_steps", good, ok.select(grows.select(0, good.add(1)), 0), 0),
      variable("amp/skipped", skipped, skipped.add(ok.select(0, 1)), 0),
    ],
  };
}
