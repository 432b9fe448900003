/** Optimizers and schedules (src/api/optimizers.ts) against float64 textbook implementations
 *  written out below from the papers / Keras docs, on a small quadratic problem whose gradient
 *  depends on the parameters:  loss = ½ Σ aᵢ pᵢ² + Σ bᵢ pᵢ,  ∇ = a ⊙ p + b,  7 parameters.
 *  The step graph (p, slots, t resident; t_next = t + 1) runs 5 times
 *   - in the float64 interpreter, for random hyperparameters: equal to the textbook to 1e-12,
 *     which checks the IR formula itself;
 *   - on Dawn, for fixed cases: equal to the textbook to f32 accuracy (~1e-5 relative).
 *  Hyperparameters and data are f32 values: the graph's constants are f32, so the textbook
 *  then computes with exactly the numbers the graph holds. */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import type { Optimizer } from "../../src/api/optimizer.ts";
import {
  adadelta,
  adagrad,
  adam,
  constant,
  inverseTimeDecay,
  optimizerByName,
  rmsprop,
  sgd,
  stepDecay,
  type OptimizerName,
  type Schedule,
} from "../../src/api/optimizers.ts";
import { interpret } from "../../src/interpret.ts";
import type { Graph } from "../../src/ir/types.ts";
import { Executable } from "../../runtime/execute.ts";
import { floats } from "../helpers/data.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();

const N = 7;
const STEPS = 5;
const f32 = Math.fround;

interface Problem {
  readonly a: readonly number[];
  readonly b: readonly number[];
  readonly p0: readonly number[];
}
type Vec = number[];
type Grad = (p: readonly number[]) => Vec;
const gradient =
  (pr: Problem): Grad =>
  (p) =>
    p.map((x, i) => pr.a[i] * x + pr.b[i]);

/** Params after each step, and the slots after the last, by the optimizer's slot names. */
interface Trajectory {
  readonly params: Vec[];
  readonly slots: Record<string, Vec>;
}

// ---------------------------------------------------------------------------------------------
// Textbook schedules, η(t) for t = 1, 2, …

type LrSpec =
  | { readonly kind: "constant"; readonly lr: number }
  | { readonly kind: "inverse"; readonly lr0: number; readonly rate: number; readonly steps: number }
  | { readonly kind: "step"; readonly lr0: number; readonly factor: number; readonly every: number };

function lrAt(s: LrSpec, t: number): number {
  const kerasStep = t - 1; // Keras schedules count steps from 0
  switch (s.kind) {
    case "constant":
      return s.lr;
    case "inverse":
      return s.lr0 / (1 + (s.rate * kerasStep) / s.steps);
    case "step":
      return s.lr0 * s.factor ** Math.floor(kerasStep / s.every);
  }
}

function scheduleOf(s: LrSpec): Schedule {
  switch (s.kind) {
    case "constant":
      return constant(s.lr);
    case "inverse":
      return inverseTimeDecay(s.lr0, s.rate, s.steps);
    case "step":
      return stepDecay(s.lr0, s.factor, s.every);
  }
}

// ---------------------------------------------------------------------------------------------
// Textbook optimizers: plain loops over the parameters, float64.

function sgdTextbook(lr: (t: number) => number, pr: Problem): Trajectory {
  const p = [...pr.p0];
  const params: Vec[] = [];
  for (let t = 1; t <= STEPS; t++) {
    const g = gradient(pr)(p);
    for (let i = 0; i < N; i++) p[i] = p[i] - lr(t) * g[i];
    params.push([...p]);
  }
  return { params, slots: {} };
}

function momentumTextbook(mu: number, lr: (t: number) => number, pr: Problem): Trajectory {
  const p = [...pr.p0];
  const v = new Array<number>(N).fill(0);
  const params: Vec[] = [];
  for (let t = 1; t <= STEPS; t++) {
    const g = gradient(pr)(p);
    for (let i = 0; i < N; i++) {
      v[i] = mu * v[i] - lr(t) * g[i];
      p[i] = p[i] + v[i];
    }
    params.push([...p]);
  }
  return { params, slots: { momentum: v } };
}

/** Nesterov as Sutskever et al. (2013) state it: the gradient at the look-ahead point θ + μv,
 *    v ← μ v − η ∇f(θ + μ v);  θ ← θ + v.
 *  Keras keeps the look-ahead point φ = θ + μv as the parameter, so that is what we compare;
 *  φ₀ = θ₀ as v₀ = 0. */
function nesterovTextbook(mu: number, lr: (t: number) => number, pr: Problem): Trajectory {
  const theta = [...pr.p0];
  const v = new Array<number>(N).fill(0);
  const params: Vec[] = [];
  for (let t = 1; t <= STEPS; t++) {
    const g = gradient(pr)(theta.map((x, i) => x + mu * v[i]));
    for (let i = 0; i < N; i++) {
      v[i] = mu * v[i] - lr(t) * g[i];
      theta[i] = theta[i] + v[i];
    }
    params.push(theta.map((x, i) => x + mu * v[i]));
  }
  return { params, slots: { momentum: v } };
}

/** Adagrad: G ← G + g²;  p ← p − η g / √(G + ε). */
function adagradTextbook(h: { init: number; eps: number }, lr: (t: number) => number, pr: Problem): Trajectory {
  const p = [...pr.p0];
  const G = new Array<number>(N).fill(h.init);
  const params: Vec[] = [];
  for (let t = 1; t <= STEPS; t++) {
    const g = gradient(pr)(p);
    for (let i = 0; i < N; i++) {
      G[i] += g[i] * g[i];
      p[i] -= (lr(t) * g[i]) / Math.sqrt(G[i] + h.eps);
    }
    params.push([...p]);
  }
  return { params, slots: { accumulator: G } };
}

/** Zeiler 2012, Algorithm 1, the update scaled by η:
 *  E[g²] ← ρE[g²] + (1−ρ)g²;  Δx = −(RMS[Δx]_{t−1} / RMS[g]_t) g;  E[Δx²] ← ρE[Δx²] + (1−ρ)Δx²;
 *  x ← x + η Δx, with RMS[y] = √(E[y²] + ε). */
function adadeltaTextbook(h: { rho: number; eps: number }, lr: (t: number) => number, pr: Problem): Trajectory {
  const x = [...pr.p0];
  const Eg2 = new Array<number>(N).fill(0);
  const Edx2 = new Array<number>(N).fill(0);
  const params: Vec[] = [];
  for (let t = 1; t <= STEPS; t++) {
    const g = gradient(pr)(x);
    for (let i = 0; i < N; i++) {
      Eg2[i] = h.rho * Eg2[i] + (1 - h.rho) * g[i] ** 2;
      const rmsDx = Math.sqrt(Edx2[i] + h.eps);
      const rmsG = Math.sqrt(Eg2[i] + h.eps);
      const dx = -(rmsDx / rmsG) * g[i];
      Edx2[i] = h.rho * Edx2[i] + (1 - h.rho) * dx ** 2;
      x[i] += lr(t) * dx;
    }
    params.push([...x]);
  }
  return { params, slots: { accumulated_grad: Eg2, accumulated_delta: Edx2 } };
}

/** RMSProp: E[g²] ← ρE[g²] + (1−ρ)g²;  p ← p − η g / √(E[g²] + ε). */
function rmspropTextbook(h: { rho: number; eps: number }, lr: (t: number) => number, pr: Problem): Trajectory {
  const p = [...pr.p0];
  const ms = new Array<number>(N).fill(0);
  const params: Vec[] = [];
  for (let t = 1; t <= STEPS; t++) {
    const g = gradient(pr)(p);
    for (let i = 0; i < N; i++) {
      ms[i] = h.rho * ms[i] + (1 - h.rho) * g[i] * g[i];
      p[i] -= (lr(t) * g[i]) / Math.sqrt(ms[i] + h.eps);
    }
    params.push([...p]);
  }
  return { params, slots: { velocity: ms } };
}

/** Kingma & Ba 2015, Algorithm 1 in the order the paper gives at the end of section 2:
 *  αₜ = α √(1 − β₂ᵗ) / (1 − β₁ᵗ);  θ ← θ − αₜ m / (√v + ε̂). */
function adamTextbook(h: { b1: number; b2: number; eps: number }, lr: (t: number) => number, pr: Problem): Trajectory {
  const theta = [...pr.p0];
  const m = new Array<number>(N).fill(0);
  const v = new Array<number>(N).fill(0);
  const params: Vec[] = [];
  for (let t = 1; t <= STEPS; t++) {
    const g = gradient(pr)(theta);
    const alphaT = (lr(t) * Math.sqrt(1 - h.b2 ** t)) / (1 - h.b1 ** t);
    for (let i = 0; i < N; i++) {
      m[i] = h.b1 * m[i] + (1 - h.b1) * g[i];
      v[i] = h.b2 * v[i] + (1 - h.b2) * g[i] * g[i];
      theta[i] -= (alphaT * m[i]) / (Math.sqrt(v[i]) + h.eps);
    }
    params.push([...theta]);
  }
  return { params, slots: { m, v } };
}

// ---------------------------------------------------------------------------------------------
// Cases: an optimizer and its textbook.

interface Case {
  readonly label: string;
  readonly opt: Optimizer;
  readonly textbook: (pr: Problem) => Trajectory;
}

function makeCase<H>(
  name: string,
  h: H,
  s: LrSpec,
  make: (h: H, lr: Schedule) => Optimizer,
  book: (h: H, lr: (t: number) => number, pr: Problem) => Trajectory,
): Case {
  return {
    label: `${name} ${JSON.stringify(h)} ${scheduleOf(s).describe()}`,
    opt: make(h, scheduleOf(s)),
    textbook: (pr) => book(h, (t) => lrAt(s, t), pr),
  };
}

const FAMILIES = {
  sgd: (h: Record<string, never>, s: LrSpec) =>
    makeCase(
      "sgd",
      h,
      s,
      (_, lr) => sgd({ learningRate: lr }),
      (_, lr, pr) => sgdTextbook(lr, pr),
    ),
  momentum: (h: { mu: number }, s: LrSpec) =>
    makeCase(
      "momentum",
      h,
      s,
      (h, lr) => sgd({ learningRate: lr, momentum: h.mu }),
      (h, lr, pr) => momentumTextbook(h.mu, lr, pr),
    ),
  nesterov: (h: { mu: number }, s: LrSpec) =>
    makeCase(
      "nesterov",
      h,
      s,
      (h, lr) => sgd({ learningRate: lr, momentum: h.mu, nesterov: true }),
      (h, lr, pr) => nesterovTextbook(h.mu, lr, pr),
    ),
  adagrad: (h: { init: number; eps: number }, s: LrSpec) =>
    makeCase("adagrad", h, s, (h, lr) => adagrad({ learningRate: lr, initialAccumulator: h.init, epsilon: h.eps }), adagradTextbook),
  adadelta: (h: { rho: number; eps: number }, s: LrSpec) =>
    makeCase("adadelta", h, s, (h, lr) => adadelta({ learningRate: lr, rho: h.rho, epsilon: h.eps }), adadeltaTextbook),
  rmsprop: (h: { rho: number; eps: number }, s: LrSpec) =>
    makeCase("rmsprop", h, s, (h, lr) => rmsprop({ learningRate: lr, rho: h.rho, epsilon: h.eps }), rmspropTextbook),
  adam: (h: { b1: number; b2: number; eps: number }, s: LrSpec) =>
    makeCase("adam", h, s, (h, lr) => adam({ learningRate: lr, beta1: h.b1, beta2: h.b2, epsilon: h.eps }), adamTextbook),
};

// ---------------------------------------------------------------------------------------------
// The step graph: p, the slots and t are resident; t_next = t + 1.

function stepGraph(opt: Optimizer, pr: Problem): { graph: Graph; state: Record<string, string> } {
  const g = new GraphBuilder();
  const p = g.input("p", "f32", [N]);
  const t = g.input("t", "f32", []);
  const slots = Object.fromEntries(opt.slots.map((s) => [s.name, g.input(`s_${s.name}`, "f32", [N])]));
  const grad = p.mul(g.constant(pr.a, "f32", [N])).add(g.constant(pr.b, "f32", [N]));
  const u = opt.update(p, grad, slots, { t, lr: opt.schedule(t) });
  const outputs = { p_next: u.param, t_next: t.add(1), ...Object.fromEntries(opt.slots.map((s) => [`s_${s.name}_next`, u.slots[s.name]])) };
  const state = { p: "p_next", t: "t_next", ...Object.fromEntries(opt.slots.map((s) => [`s_${s.name}`, `s_${s.name}_next`])) };
  return { graph: g.build(outputs), state };
}

const initialSlots = (opt: Optimizer): Record<string, Vec> =>
  Object.fromEntries(opt.slots.map((s) => [s.name, new Array<number>(N).fill(s.init)]));

function interpretSteps(opt: Optimizer, pr: Problem): Trajectory {
  const { graph } = stepGraph(opt, pr);
  let p: Vec = [...pr.p0];
  let t = 1;
  let slots = initialSlots(opt);
  const params: Vec[] = [];
  for (let s = 0; s < STEPS; s++) {
    const inputs = {
      p: { shape: [N], data: p },
      t: { shape: [], data: [t] },
      ...Object.fromEntries(Object.entries(slots).map(([k, v]) => [`s_${k}`, { shape: [N], data: v }])),
    };
    const out = interpret(graph, inputs);
    expect(out.t_next.data[0]).toBe(t + 1);
    p = Array.from(out.p_next.data);
    t = out.t_next.data[0];
    slots = Object.fromEntries(opt.slots.map((sl) => [sl.name, Array.from(out[`s_${sl.name}_next`].data)]));
    params.push(p);
  }
  return { params, slots };
}

/** The largest error in units of the tolerance (≤ 1 passes): |got − want| / (atol + rtol·|want|). */
function worst(got: readonly number[], want: readonly number[], rtol: number, atol: number): number {
  expect(got.length).toBe(want.length);
  let w = 0;
  got.forEach((x, i) => {
    w = Math.max(w, Number.isNaN(x) ? Infinity : Math.abs(x - want[i]) / (atol + rtol * Math.abs(want[i])));
  });
  return w;
}

function expectClose(label: string, got: Trajectory, want: Trajectory, rtol: number, atol: number): void {
  want.params.forEach((w, s) => {
    const e = worst(got.params[s], w, rtol, atol);
    if (!(e <= 1)) throw new Error(`${label}: step ${s + 1} params ${got.params[s]} vs textbook ${w} (${e.toFixed(2)}× tolerance)`);
  });
  expect(Object.keys(got.slots).sort()).toEqual(Object.keys(want.slots).sort());
  for (const [k, w] of Object.entries(want.slots)) {
    const e = worst(got.slots[k], w, rtol, atol);
    if (!(e <= 1)) throw new Error(`${label}: slot ${k} ${got.slots[k]} vs textbook ${w} (${e.toFixed(2)}× tolerance)`);
  }
}

// ---------------------------------------------------------------------------------------------
// Random cases (interpreter): f32 hyperparameters, data and schedules.

const f32in = (min: number, max: number) => fc.float({ min: f32(min), max: f32(max), noNaN: true, noDefaultInfinity: true });
const vec = (min: number, max: number) => fc.array(f32in(min, max), { minLength: N, maxLength: N });
const problemArb: fc.Arbitrary<Problem> = fc.record({ a: vec(0.25, 2), b: vec(-1, 1), p0: vec(-2, 2) });
const lrArb: fc.Arbitrary<LrSpec> = fc.oneof(
  fc.record({ kind: fc.constant("constant" as const), lr: f32in(1e-3, 0.5) }),
  fc.record({ kind: fc.constant("inverse" as const), lr0: f32in(1e-3, 0.5), rate: f32in(0, 2), steps: f32in(0.5, 4) }),
  fc.record({ kind: fc.constant("step" as const), lr0: f32in(1e-3, 0.5), factor: f32in(0.1, 1), every: fc.integer({ min: 1, max: 3 }) }),
);
const rhoEps = fc.record({ rho: f32in(0.5, 0.99), eps: f32in(1e-8, 1e-3) });
const CASES: Record<keyof typeof FAMILIES, fc.Arbitrary<Case>> = {
  sgd: lrArb.map((s) => FAMILIES.sgd({}, s)),
  momentum: fc.tuple(fc.record({ mu: f32in(0.01, 0.99) }), lrArb).map(([h, s]) => FAMILIES.momentum(h, s)),
  nesterov: fc.tuple(fc.record({ mu: f32in(0.01, 0.99) }), lrArb).map(([h, s]) => FAMILIES.nesterov(h, s)),
  adagrad: fc.tuple(fc.record({ init: f32in(0, 1), eps: f32in(1e-8, 1e-3) }), lrArb).map(([h, s]) => FAMILIES.adagrad(h, s)),
  adadelta: fc.tuple(rhoEps, lrArb).map(([h, s]) => FAMILIES.adadelta(h, s)),
  rmsprop: fc.tuple(rhoEps, lrArb).map(([h, s]) => FAMILIES.rmsprop(h, s)),
  adam: fc
    .tuple(fc.record({ b1: f32in(0.5, 0.99), b2: f32in(0.9, 0.9999), eps: f32in(1e-8, 1e-3) }), lrArb)
    .map(([h, s]) => FAMILIES.adam(h, s)),
};

describe("optimizers in the float64 interpreter equal the textbook (1e-12)", () => {
  for (const [name, arb] of Object.entries(CASES)) {
    test(name, () => {
      fc.assert(
        fc.property(arb, problemArb, (c, pr) => {
          const want = c.textbook(pr);
          expectClose(c.label, interpretSteps(c.opt, pr), want, 1e-12, 1e-12);
          // The parameters moved: equality with the textbook is not equality with p₀.
          expect(want.params[STEPS - 1]).not.toEqual(pr.p0);
        }),
        { seed: 6, numRuns: 60 },
      );
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Fixed cases on Dawn.

const PROBLEM: Problem = {
  a: floats(N, 61).map((x) => f32(1.25 + 0.75 * x)), // in [0.5, 2)
  b: floats(N, 62),
  p0: floats(N, 63).map((x) => f32(2 * x)),
};

const DAWN: readonly Case[] = [
  FAMILIES.sgd({}, { kind: "constant", lr: f32(0.1) }),
  FAMILIES.sgd({}, { kind: "inverse", lr0: 0.25, rate: 0.5, steps: 2 }),
  FAMILIES.sgd({}, { kind: "step", lr0: 0.25, factor: 0.5, every: 2 }),
  FAMILIES.momentum({ mu: f32(0.9) }, { kind: "constant", lr: f32(0.05) }),
  FAMILIES.nesterov({ mu: f32(0.9) }, { kind: "inverse", lr0: f32(0.05), rate: 1, steps: 1 }),
  FAMILIES.adagrad({ init: f32(0.1), eps: f32(1e-7) }, { kind: "constant", lr: f32(0.1) }),
  FAMILIES.adadelta({ rho: f32(0.95), eps: f32(1e-6) }, { kind: "constant", lr: 1 }),
  FAMILIES.rmsprop({ rho: f32(0.9), eps: f32(1e-7) }, { kind: "constant", lr: f32(0.01) }),
  FAMILIES.adam({ b1: f32(0.9), b2: f32(0.999), eps: f32(1e-7) }, { kind: "step", lr0: f32(0.01), factor: 0.5, every: 3 }),
];

async function dawnSteps(opt: Optimizer, pr: Problem): Promise<Trajectory> {
  const { graph, state } = stepGraph(opt, pr);
  const exe = await Executable.load(compile(graph, { state }));
  try {
    await exe.write("p", { shape: [N], data: pr.p0 });
    await exe.write("t", { shape: [], data: [1] });
    for (const [k, v] of Object.entries(initialSlots(opt))) await exe.write(`s_${k}`, { shape: [N], data: v });
    const params: Vec[] = [];
    for (let s = 0; s < STEPS; s++) {
      await exe.run({}, []);
      params.push(Array.from((await exe.read("p")).data));
    }
    expect((await exe.read("t")).data[0]).toBe(STEPS + 1);
    const slots = Object.fromEntries(
      await Promise.all(opt.slots.map(async (s) => [s.name, Array.from((await exe.read(`s_${s.name}`)).data)] as const)),
    );
    return { params, slots };
  } finally {
    exe.dispose();
  }
}

describe("optimizers on Dawn equal the textbook to f32 accuracy", () => {
  for (const c of DAWN) {
    test(c.label, async () => {
      const want = c.textbook(PROBLEM);
      expectClose(c.label, await dawnSteps(c.opt, PROBLEM), want, 1e-5, 1e-6);
      expect(want.params[STEPS - 1]).not.toEqual(PROBLEM.p0);
    });
  }

  test("stepDecay changes at the right steps on the GPU (t = 1…40, several periods)", async () => {
    const g = new GraphBuilder();
    const t = g.input("t", "f32", [40]);
    const specs = [1, 2, 3, 5, 7, 10].map((every) => ({ kind: "step" as const, lr0: 1, factor: 0.5, every }));
    const graph = g.build(Object.fromEntries(specs.map((s, i) => [`lr${i}`, scheduleOf(s).at(t)])));
    const ts = Array.from({ length: 40 }, (_, i) => i + 1);
    const exe = await Executable.load(compile(graph));
    try {
      const out = await exe.run({ t: { shape: [40], data: ts } });
      specs.forEach((s, i) => expect(Array.from(out[`lr${i}`].data)).toEqual(ts.map((tt) => lrAt(s, tt))));
    } finally {
      exe.dispose();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The rest of the contract.

describe("schedules and optimizer objects", () => {
  test("by name, as Keras: the optimizer with Keras's defaults; an object passes through", () => {
    const slots = (o: ReturnType<typeof optimizerByName>) => o.slots.map((s) => s.name).join(",");
    expect(optimizerByName("sgd").learningRate).toBe(0.01);
    expect([optimizerByName("adam").learningRate, slots(optimizerByName("adam"))]).toEqual([0.001, "m,v"]);
    expect(slots(optimizerByName("rmsprop"))).toBe(slots(rmsprop()));
    expect(slots(optimizerByName("adagrad"))).toBe(slots(adagrad()));
    expect(slots(optimizerByName("adadelta"))).toBe(slots(adadelta()));
    const mine = sgd({ learningRate: 0.5, momentum: 0.9 });
    expect(optimizerByName(mine)).toBe(mine);
    expect(() => optimizerByName("lbfgs" as OptimizerName)).toThrow(/unknown optimizer "lbfgs"/);
  });

  test("schedule values at t = 1, 2, … in the interpreter, and describe()", () => {
    const g = new GraphBuilder();
    const t = g.input("t", "f32", [6]);
    const scheds = { c: constant(0.5), inv: inverseTimeDecay(1, 0.5, 2), step: stepDecay(0.5, 0.25, 2) };
    const out = interpret(g.build(Object.fromEntries(Object.entries(scheds).map(([k, s]) => [k, s.at(t)]))), {
      t: { shape: [6], data: [1, 2, 3, 4, 5, 6] },
    });
    expect(Array.from(out.c.data)).toEqual([0.5]); // a scalar whatever t's shape: it broadcasts
    expect(Array.from(out.inv.data)).toEqual([1, 1 / 1.25, 1 / 1.5, 1 / 1.75, 1 / 2, 1 / 2.25]);
    expect(Array.from(out.step.data)).toEqual([0.5, 0.5, 0.125, 0.125, 0.03125, 0.03125]);
    expect(scheds.step.describe()).toBe("stepDecay(0.5, factor 0.25, every 2)");
    expect(sgd({ learningRate: scheds.inv }).learningRate).toBe(1);
    expect(adam().learningRate).toBe(0.001);
  });

  test("slots: names and initial values", () => {
    expect(sgd({ learningRate: 0.1 }).slots).toEqual([]);
    expect(sgd({ learningRate: 0.1, momentum: 0.9, nesterov: true }).slots).toEqual([{ name: "momentum", init: 0 }]);
    expect(adagrad().slots).toEqual([{ name: "accumulator", init: 0.1 }]);
    expect(adadelta().slots.map((s) => s.name)).toEqual(["accumulated_grad", "accumulated_delta"]);
    expect(rmsprop().slots).toEqual([{ name: "velocity", init: 0 }]);
    expect(adam().slots).toEqual([
      { name: "m", init: 0 },
      { name: "v", init: 0 },
    ]);
  });

  test("Adam's bias correction is built once per graph and step, shared by the parameters", () => {
    const g = new GraphBuilder();
    const t = g.input("t", "f32", []);
    const opt = adam({ learningRate: 0.01 });
    const lr = opt.schedule(t);
    const [a, b] = ["a", "b"].map((n) => g.input(n, "f32", [3]));
    const before = g.build(a).nodes.length;
    opt.update(a, a, { m: a, v: a }, { t, lr });
    const first = g.build(a).nodes.length - before;
    opt.update(b, b, { m: b, v: b }, { t, lr });
    const second = g.build(a).nodes.length - before - first;
    expect(second).toBeLessThan(first);
    expect(g.build(a).nodes.filter((n) => n.op === "pow")).toHaveLength(2); // β₁ᵗ and β₂ᵗ, once
  });

  test("bad hyperparameters and mismatched tensors are clear errors", () => {
    expect(() => sgd({ learningRate: -1 })).toThrow("sgd: learningRate must be a finite number > 0, got -1");
    expect(() => sgd({ learningRate: 0.1, momentum: 1 })).toThrow("sgd: momentum must be in [0, 1), got 1");
    expect(() => adam({ beta2: 1.5 })).toThrow("adam: beta2 must be in [0, 1), got 1.5");
    expect(() => rmsprop({ epsilon: Number.NaN })).toThrow("rmsprop: epsilon must be a finite number > 0");
    expect(() => adagrad({ initialAccumulator: 0, epsilon: 0 })).toThrow("adagrad: initialAccumulator and epsilon are both 0");
    expect(() => stepDecay(0.1, 0.5, 2.5)).toThrow("stepDecay: every must be a whole number of steps ≥ 1, got 2.5");
    expect(() => inverseTimeDecay(0.1, -1)).toThrow("inverseTimeDecay: decayRate must be a finite number ≥ 0, got -1");
    const g = new GraphBuilder();
    const t = g.input("t", "f32", []);
    const p = g.input("p", "f32", [3, 4]);
    const opt = rmsprop();
    const step = { t, lr: opt.schedule(t) };
    expect(() => opt.update(p, g.input("g", "f32", [4, 3]), { velocity: p }, step)).toThrow(
      "rmsprop: the gradient f32[4,3] does not match the parameter f32[3,4]",
    );
    expect(() => opt.update(p, p, {}, step)).toThrow('rmsprop: slot "velocity" is missing');
    expect(() => opt.update(p, p, { velocity: g.input("v", "f32", [3]) }, step)).toThrow(
      'rmsprop: slot "velocity" is f32[3], the parameter f32[3,4]',
    );
  });
});
