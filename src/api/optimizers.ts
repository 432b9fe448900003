/** Optimizers and learning-rate schedules as IR (the contract is ./optimizer.ts): each update is
 *  a few elementwise nodes appended to the training step, so fusion turns it into the epilogue
 *  of the kernel that computes the gradient, written in place on the resident parameter.
 *
 *  Notation: p parameter, g gradient, η the step's learning rate (the schedule at t), t the step
 *  number from 1. Every formula is the one Keras 3 implements, named in each factory's comment.
 *  Hyperparameters become f32 constants (GraphBuilder.constant rounds them), and derived ones
 *  such as 1 − ρ are IR over those constants, so the float64 interpreter computes exactly
 *  the textbook formula for the f32 values of the hyperparameters. */
import { didYouMean } from "./options.ts";
import { KilnError } from "../ir/errors.ts";
import { formatType, shapeEq } from "../ir/shape.ts";
import type { GraphBuilder, Tensor } from "./builder.ts";
import type { Optimizer, SlotSpec, StepInfo } from "./optimizer.ts";

/** A learning rate that depends on the step: `at(t)` is IR over the f32 scalar t (from 1). */
export interface Schedule {
  /** The value at t = 1. */
  readonly initial: number;
  at(t: Tensor): Tensor;
  describe(): string;
}

export type LearningRate = number | Schedule;

// ---------------------------------------------------------------------------------------------
// Checks: a bad hyperparameter is an error naming the optimizer and the value.

function need(where: string, name: string, v: number, ok: boolean, what: string): void {
  if (typeof v !== "number" || !Number.isFinite(v) || !ok) throw new KilnError(`${where}: ${name} must be ${what}, got ${v}`);
}
const positive = (where: string, name: string, v: number) => need(where, name, v, v > 0, "a finite number > 0");
const nonNegative = (where: string, name: string, v: number) => need(where, name, v, v >= 0, "a finite number ≥ 0");
const unit = (where: string, name: string, v: number) => need(where, name, v, v >= 0 && v < 1, "in [0, 1)");

/** A scalar f32 constant in x's graph. */
const k = (x: Tensor, v: number): Tensor => x.builder.constant(v);

// ---------------------------------------------------------------------------------------------
// Schedules.

/** η(t) = η₀. */
export function constant(lr: number): Schedule {
  positive("constant schedule", "learning rate", lr);
  return { initial: lr, at: (t) => k(t, lr), describe: () => `constant(${lr})` };
}

/** 1/t decay, Keras's InverseTimeDecay (staircase = false) with its step = t − 1, so the first
 *  step uses η₀:  η(t) = η₀ / (1 + decayRate · (t − 1) / decaySteps). */
export function inverseTimeDecay(lr0: number, decayRate: number, decaySteps = 1): Schedule {
  const where = "inverseTimeDecay";
  positive(where, "initial learning rate", lr0);
  nonNegative(where, "decayRate", decayRate);
  positive(where, "decaySteps", decaySteps);
  return {
    initial: lr0,
    at: (t) => k(t, lr0).div(t.sub(1).mul(decayRate).div(decaySteps).add(1)),
    describe: () => `inverseTimeDecay(${lr0}, decayRate ${decayRate}, decaySteps ${decaySteps})`,
  };
}

/** Step decay: η(t) = η₀ · factor^⌊(t − 1) / every⌋ — η₀ for steps 1…every, then η₀·factor, …
 *  `every` is a whole number of steps. The floor is taken of (t − ½)/every, which equals
 *  ⌊(t − 1)/every⌋ for whole t and every but sits at least ½/every away from an integer, so an
 *  f32 division that is off by an ulp (WGSL does not promise a correctly rounded one) cannot
 *  step a boundary early. */
export function stepDecay(lr0: number, factor: number, every: number): Schedule {
  const where = "stepDecay";
  positive(where, "initial learning rate", lr0);
  positive(where, "factor", factor);
  need(where, "every", every, Number.isInteger(every) && every >= 1, "a whole number of steps ≥ 1");
  return {
    initial: lr0,
    at: (t) => k(t, factor).pow(t.sub(0.5).div(every).floor()).mul(lr0),
    describe: () => `stepDecay(${lr0}, factor ${factor}, every ${every})`,
  };
}

const scheduleOf = (where: string, lr: LearningRate): Schedule => {
  if (typeof lr === "number") {
    positive(where, "learningRate", lr);
    return constant(lr);
  }
  if (!lr || typeof lr.at !== "function") throw new KilnError(`${where}: learningRate must be a number or a Schedule`);
  return lr;
};

// ---------------------------------------------------------------------------------------------
// The common part: checks of what update() is given, and the Optimizer object.

type Rule = (p: Tensor, g: Tensor, s: Readonly<Record<string, Tensor>>, step: StepInfo) => { param: Tensor; slots: Record<string, Tensor> };

function optimizer(name: string, lr: LearningRate, slots: readonly SlotSpec[], rule: Rule): Optimizer {
  const schedule = scheduleOf(name, lr);
  return {
    name,
    learningRate: schedule.initial,
    slots,
    schedule: (t) => schedule.at(t),
    update(param, grad, given, step) {
      if (param.dtype !== "f32" || !shapeEq(param.shape, grad.shape) || grad.dtype !== "f32") {
        throw new KilnError(
          `${name}: the gradient ${formatType(grad.type)} does not match the parameter ${formatType(param.type)} (both f32, one shape)`,
        );
      }
      for (const { name: s } of slots) {
        const v = given[s];
        if (!v) throw new KilnError(`${name}: slot "${s}" is missing (given: ${Object.keys(given).join(", ") || "none"})`);
        if (v.dtype !== "f32" || !shapeEq(v.shape, param.shape))
          throw new KilnError(`${name}: slot "${s}" is ${formatType(v.type)}, the parameter ${formatType(param.type)}`);
      }
      for (const [what, v] of [
        ["t", step.t],
        ["lr", step.lr],
      ] as const) {
        if (v.dtype !== "f32" || v.rank !== 0)
          throw new KilnError(`${name}: step.${what} must be an f32 scalar, got ${formatType(v.type)}`);
      }
      return rule(param, grad, given, step);
    },
  };
}

/** A value built once per graph and step and shared by every parameter's update (Adam's bias
 *  correction), cached per optimizer by the builder and the ids of t and η. (CSE would merge
 *  copies anyway; this keeps the built graph small.) */
function perStep(make: (step: StepInfo) => Tensor): (step: StepInfo) => Tensor {
  const cache = new WeakMap<GraphBuilder, Map<string, Tensor>>();
  return (step) => {
    const m = cache.get(step.t.builder) ?? new Map<string, Tensor>();
    cache.set(step.t.builder, m);
    const id = `${step.t.id}:${step.lr.id}`;
    let v = m.get(id);
    if (!v) m.set(id, (v = make(step)));
    return v;
  };
}

// ---------------------------------------------------------------------------------------------
// Optimizers.

export interface SgdOptions {
  readonly learningRate: LearningRate;
  readonly momentum?: number;
  readonly nesterov?: boolean;
}

/** Stochastic gradient descent (Keras SGD).
 *    plain (μ = 0):   p ← p − η g
 *    momentum:        v ← μ v − η g;   p ← p + v                 (slot "momentum", from 0)
 *    Nesterov:        v ← μ v − η g;   p ← p + μ v − η g          (v the new velocity)
 *  The Nesterov form is Keras/TF's SGD(nesterov=True) (Sutskever et al. 2013, rewritten so the
 *  stored parameter is the look-ahead point): the step takes the new velocity once more times μ
 *  plus the plain gradient step. With μ = 0 Nesterov is plain SGD, and no slot is kept. */
export function sgd(opts: SgdOptions): Optimizer {
  const { learningRate, momentum = 0, nesterov = false } = opts;
  unit("sgd", "momentum", momentum);
  if (momentum === 0) return optimizer("sgd", learningRate, [], (p, g, _s, { lr }) => ({ param: p.sub(g.mul(lr)), slots: {} }));
  return optimizer(nesterov ? "sgd (nesterov)" : "sgd (momentum)", learningRate, [{ name: "momentum", init: 0 }], (p, g, s, { lr }) => {
    const step = g.mul(lr);
    const v = s.momentum.mul(momentum).sub(step);
    return { param: nesterov ? p.add(v.mul(momentum)).sub(step) : p.add(v), slots: { momentum: v } };
  });
}

export interface AdagradOptions {
  readonly learningRate?: LearningRate;
  readonly initialAccumulator?: number;
  readonly epsilon?: number;
}

/** Adagrad (Duchi et al. 2011), as Keras 3 writes it (ε inside the root):
 *    a ← a + g²;   p ← p − η g / √(a + ε)          (slot "accumulator", from initialAccumulator)
 *  Keras defaults: η = 0.001, initialAccumulator = 0.1, ε = 1e-7. */
export function adagrad(opts: AdagradOptions = {}): Optimizer {
  const { learningRate = 0.001, initialAccumulator = 0.1, epsilon = 1e-7 } = opts;
  nonNegative("adagrad", "initialAccumulator", initialAccumulator);
  nonNegative("adagrad", "epsilon", epsilon);
  if (initialAccumulator + epsilon === 0)
    throw new KilnError(
      "adagrad: initialAccumulator and epsilon are both 0, so the first step divides by √(g²) and a zero gradient gives NaN",
    );
  return optimizer("adagrad", learningRate, [{ name: "accumulator", init: initialAccumulator }], (p, g, s, { lr }) => {
    const a = s.accumulator.add(g.mul(g));
    return { param: p.sub(g.mul(lr).div(a.add(epsilon).sqrt())), slots: { accumulator: a } };
  });
}

export interface AdadeltaOptions {
  readonly learningRate?: LearningRate;
  readonly rho?: number;
  readonly epsilon?: number;
}

/** Adadelta (Zeiler 2012, Algorithm 1), with Keras's learning-rate scaling of the step:
 *    E[g²] ← ρ E[g²] + (1 − ρ) g²
 *    Δ     = −√(E[Δ²] + ε) / √(E[g²] + ε) · g        (E[g²] the new value, E[Δ²] the old)
 *    E[Δ²] ← ρ E[Δ²] + (1 − ρ) Δ²
 *    p     ← p + η Δ
 *  Slots "accumulated_grad" (E[g²]) and "accumulated_delta" (E[Δ²]), from 0. Zeiler's
 *  defaults η = 1 (his method has no learning rate), ρ = 0.95, ε = 1e-6. */
export function adadelta(opts: AdadeltaOptions = {}): Optimizer {
  const { learningRate = 1.0, rho = 0.95, epsilon = 1e-6 } = opts;
  unit("adadelta", "rho", rho);
  positive("adadelta", "epsilon", epsilon);
  const slots = [
    { name: "accumulated_grad", init: 0 },
    { name: "accumulated_delta", init: 0 },
  ];
  return optimizer("adadelta", learningRate, slots, (p, g, s, { lr }) => {
    const oneMinus = k(p, 1).sub(rho);
    const eg = s.accumulated_grad.mul(rho).add(g.mul(g).mul(oneMinus));
    const delta = s.accumulated_delta.add(epsilon).sqrt().div(eg.add(epsilon).sqrt()).mul(g).neg();
    const ed = s.accumulated_delta.mul(rho).add(delta.mul(delta).mul(oneMinus));
    return { param: p.add(delta.mul(lr)), slots: { accumulated_grad: eg, accumulated_delta: ed } };
  });
}

export interface RmspropOptions {
  readonly learningRate?: LearningRate;
  readonly rho?: number;
  readonly epsilon?: number;
}

/** RMSProp (Hinton, Coursera lecture 6e), as Keras 3 writes it (no momentum, not centred,
 *  ε inside the root):
 *    v ← ρ v + (1 − ρ) g²;   p ← p − η g / √(v + ε)       (slot "velocity", from 0)
 *  Keras defaults: η = 0.001, ρ = 0.9, ε = 1e-7. */
export function rmsprop(opts: RmspropOptions = {}): Optimizer {
  const { learningRate = 0.001, rho = 0.9, epsilon = 1e-7 } = opts;
  unit("rmsprop", "rho", rho);
  positive("rmsprop", "epsilon", epsilon);
  return optimizer("rmsprop", learningRate, [{ name: "velocity", init: 0 }], (p, g, s, { lr }) => {
    const v = s.velocity.mul(rho).add(g.mul(g).mul(k(p, 1).sub(rho)));
    return { param: p.sub(g.mul(lr).div(v.add(epsilon).sqrt())), slots: { velocity: v } };
  });
}

export interface AdamOptions {
  readonly learningRate?: LearningRate;
  readonly beta1?: number;
  readonly beta2?: number;
  readonly epsilon?: number;
}

/** Adam (Kingma & Ba 2015) in the paper's "more efficient" order (end of its section 2), which
 *  is Keras's, with ε̂ outside the root:
 *    m ← β₁ m + (1 − β₁) g;   v ← β₂ v + (1 − β₂) g²          (slots "m", "v", from 0)
 *    α = η · √(1 − β₂^t) / (1 − β₁^t);   p ← p − α m / (√v + ε̂)
 *  α is one scalar per step, built once per graph (β^t is `pow` of the scalar t) and shared by
 *  every parameter. In f32, 1 − β₂^t loses digits to cancellation while β₂^t is near 1 (about
 *  1e-4 relative at t = 1 for β₂ = 0.999), as it does in Keras; the parameters move by η·m/√v,
 *  so that error is a small fraction of one step. Defaults: η = 0.001, β₁ = 0.9, β₂ = 0.999,
 *  ε̂ = 1e-7 (Keras). */
export function adam(opts: AdamOptions = {}): Optimizer {
  const { learningRate = 0.001, beta1 = 0.9, beta2 = 0.999, epsilon = 1e-7 } = opts;
  unit("adam", "beta1", beta1);
  unit("adam", "beta2", beta2);
  positive("adam", "epsilon", epsilon);
  const alphaAt = perStep(({ t, lr }) => {
    const one = k(t, 1);
    return lr.mul(one.sub(k(t, beta2).pow(t)).sqrt()).div(one.sub(k(t, beta1).pow(t)));
  });
  return optimizer(
    "adam",
    learningRate,
    [
      { name: "m", init: 0 },
      { name: "v", init: 0 },
    ],
    (p, g, s, step) => {
      const alpha = alphaAt(step);
      const m = s.m.mul(beta1).add(g.mul(k(p, 1).sub(beta1)));
      const v = s.v.mul(beta2).add(g.mul(g).mul(k(p, 1).sub(beta2)));
      return { param: p.sub(m.mul(alpha).div(v.sqrt().add(epsilon))), slots: { m, v } };
    },
  );
}

/** Keras's `optimizer: "adam"`: each optimizer by name with Keras's default hyperparameters
 *  (SGD's learning rate 0.01). */
type LowerOptimizerName = "sgd" | "momentum" | "nesterov" | "adagrad" | "adadelta" | "rmsprop" | "adam";
/** In any case at run time; the types list lower case, Capitalised and UPPER ("Adam", "SGD", "RMSprop" too). */
export type OptimizerName = LowerOptimizerName | Capitalize<LowerOptimizerName> | Uppercase<LowerOptimizerName> | "RMSprop";

const NAMES = ["sgd", "momentum", "nesterov", "adagrad", "adadelta", "rmsprop", "adam"];

/** Names in any case ("Adam", "SGD"); "momentum" and "nesterov" are SGD with momentum 0.9. */
export function optimizerByName(given: OptimizerName | Optimizer): Optimizer {
  if (typeof given !== "string") {
    if (!given || typeof given !== "object" || typeof given.update !== "function")
      throw new KilnError(
        `optimizer must be a name ("adam", "sgd", …) or an optimizer object such as adam({ learningRate: 0.001 }), got ${String(given)}`,
      );
    return given;
  }
  const name = given.toLowerCase();
  switch (name) {
    case "momentum":
      return sgd({ learningRate: 0.01, momentum: 0.9 });
    case "nesterov":
      return sgd({ learningRate: 0.01, momentum: 0.9, nesterov: true });
    case "sgd":
      return sgd({ learningRate: 0.01 });
    case "adagrad":
      return adagrad();
    case "adadelta":
      return adadelta();
    case "rmsprop":
      return rmsprop();
    case "adam":
      return adam();
    default:
      throw new KilnError(
        `unknown optimizer "${given}"${didYouMean(name, NAMES)} (${NAMES.join(", ")}, in any case; or an optimizer object: sgd({ learningRate, momentum }), …)`,
      );
  }
}
