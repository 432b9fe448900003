/** Random well-typed graphs over most of the op table, for gradient properties: a fast-check
 *  arbitrary of plain-data recipes (so fast-check shrinks them) and a builder that turns one into
 *  a graph over 2–3 f32 inputs. Each step applies an op family to earlier values and adapts its
 *  operands until the types fit (a shape that does not broadcast is averaged to a scalar, a
 *  matmul or conv2d weight is tiled from another value), or is skipped, so every recipe builds.
 *  Values stay small (≤ 64 elements, symbolic B included) so the float64 interpreter is quick.
 *
 *  Domains are kept by construction: log, sqrt, rsqrt and pow see t² + ½, recip and div a value
 *  pushed ½ away from 0, exp a tanh. Kinks (relu, max, ties, floor, comparisons…) are not avoided
 *  here: test/helpers/kinks.ts discards the points where a central difference would straddle one. */
import fc from "fast-check";
import { concat, GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import {
  leakyRelu,
  logSoftmax,
  logsumexp,
  maxout,
  mse,
  sigmoidBinaryCrossEntropy,
  softmax,
  softmaxCrossEntropy,
} from "../../src/api/composites.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import { broadcastShapes } from "../../src/ir/shape.ts";
import type { Dim, Graph, Shape } from "../../src/ir/types.ts";
import { floats } from "./data.ts";

const UNARY = [
  "neg",
  "tanh",
  "sigmoid",
  "sin",
  "cos",
  "exp",
  "log",
  "sqrt",
  "rsqrt",
  "recip",
  "relu",
  "abs",
  "leakyRelu",
  "floor",
  "ceil",
  "trunc",
  "mod",
] as const;
const BINARY = ["add", "sub", "mul", "div", "max", "min", "pow"] as const;
const COMPARE = ["lt", "le", "gt", "ge"] as const;
const REDUCE = ["sum", "mean", "max", "min", "logsumexp", "maxout"] as const;
const MOVE = ["reshape", "permute", "expand", "slice", "pad", "concat", "gather"] as const;
const IMAGE = ["conv2d", "max_pool2d", "avg_pool2d"] as const;
const LOSS = ["softmax", "logSoftmax", "mse", "sigmoidBCE", "softmaxCE"] as const;

/** Operands `a`, `b`, `c` count back from the newest value (0 = the newest); `p` encodes the
 *  step's other choices digit by digit (see Choices), so shrinking it to 0 gives the plainest. */
export type OpStep =
  | { kind: "unary"; op: (typeof UNARY)[number]; a: number }
  | { kind: "binary"; op: (typeof BINARY)[number]; a: number; b: number }
  | { kind: "select"; op: (typeof COMPARE)[number]; a: number; b: number; c: number }
  | { kind: "reduce"; op: (typeof REDUCE)[number]; a: number; axes: number; keepdims: boolean }
  | { kind: "move"; op: (typeof MOVE)[number]; a: number; b: number; p: number }
  | { kind: "matmul"; a: number; b: number; p: number }
  | { kind: "image"; op: (typeof IMAGE)[number]; a: number; b: number; p: number }
  | { kind: "loss"; op: (typeof LOSS)[number]; a: number; b: number; p: number };

export interface InputView {
  /** Leading axes of the full shape left out (rank-extending broadcast). */
  readonly drop: number;
  /** Axes of the full shape set to 1 (size-1 broadcast). */
  readonly ones: readonly boolean[];
}

export interface OpRecipe {
  /** The full shape; every input is a view of it, so elementwise steps broadcast. */
  readonly dims: readonly number[];
  /** Axis 0 of the full shape is declared as the symbolic dim "B" (bound to dims[0]). */
  readonly batch: boolean;
  readonly inputs: readonly InputView[];
  readonly steps: readonly OpStep[];
  /** Seed of the input values, uniform in [-2, 2). */
  readonly seed: number;
}

const idx = fc.nat(20);
const p = fc.nat(1 << 20);
export const opStepArb: fc.Arbitrary<OpStep> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("unary" as const), op: fc.constantFrom(...UNARY), a: idx }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("binary" as const), op: fc.constantFrom(...BINARY), a: idx, b: idx }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("select" as const), op: fc.constantFrom(...COMPARE), a: idx, b: idx, c: idx }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("reduce" as const),
      op: fc.constantFrom(...REDUCE),
      a: idx,
      axes: fc.nat(7),
      keepdims: fc.boolean(),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("move" as const), op: fc.constantFrom(...MOVE), a: idx, b: idx, p }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("matmul" as const), a: idx, b: idx, p }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("image" as const), op: fc.constantFrom(...IMAGE), a: idx, b: idx, p }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("loss" as const), op: fc.constantFrom(...LOSS), a: idx, b: idx, p }) },
);

export const MAX_STEPS = 8;

export const opRecipeArb: fc.Arbitrary<OpRecipe> = fc.integer({ min: 1, max: 3 }).chain((rank) =>
  fc.record({
    dims: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: rank, maxLength: rank }),
    batch: fc.boolean(),
    inputs: fc.array(
      fc.record({
        drop: fc.constantFrom(0, 0, 0, 1, 2).map((d) => Math.min(d, rank)),
        ones: fc.array(fc.constantFrom(false, false, true), { minLength: rank, maxLength: rank }),
      }),
      { minLength: 2, maxLength: 3 },
    ),
    steps: fc.array(opStepArb, { minLength: 1, maxLength: MAX_STEPS }),
    seed: fc.nat(1 << 20),
  }),
);

/** Concrete and declared shapes of input k. */
export function inputShape(r: OpRecipe, k: number): { shape: number[]; declared: Dim[] } {
  const { drop, ones } = r.inputs[k];
  const shape = r.dims.map((d, a) => (ones[a] ? 1 : d)).slice(drop);
  const declared: Dim[] = shape.map((d, a) => (r.batch && drop === 0 && a === 0 && d !== 1 ? "B" : d));
  return { shape, declared };
}

export const inputName = (k: number): string => `x${k}`;

/** The inputs' values: f32 in [-2, 2). */
export function recipeInputs(r: OpRecipe): Record<string, HostTensor> {
  return Object.fromEntries(
    r.inputs.map((_, k) => {
      const { shape } = inputShape(r, k);
      return [
        inputName(k),
        {
          shape,
          data: floats(
            shape.reduce((a, d) => a * d, 1),
            r.seed * 8 + k,
          ).map((v) => v * 2),
        },
      ];
    }),
  );
}

/** Declared shapes by input name (for GradSpec.shapes). */
export const recipeShapes = (r: OpRecipe): Record<string, Shape> =>
  Object.fromEntries(r.inputs.map((_, k) => [inputName(k), inputShape(r, k).declared]));

export const MAX_ELEMENTS = 64;
/** How often a value may be an operand: bounds the fan-out. */
const MAX_USES = 3;

/** Mixed-radix digits of `p`: choose(n) takes the next digit in [0, n). */
class Choices {
  constructor(private p: number) {}
  choose(n: number): number {
    const v = this.p % n;
    this.p = Math.floor(this.p / n);
    return v;
  }
}

/** Build the recipe's value from its inputs (by name) into `g`. */
export function buildOpRecipe(r: OpRecipe, xs: Readonly<Record<string, Tensor>>): Tensor {
  return new RecipeBuilder(
    r,
    r.inputs.map((_, k) => xs[inputName(k)]),
  ).run(r.steps);
}

/** The forward graph alone, its output named `out`. */
export function forwardGraph(r: OpRecipe): Graph {
  const g = new GraphBuilder();
  const xs = Object.fromEntries(r.inputs.map((_, k) => [inputName(k), g.input(inputName(k), "f32", inputShape(r, k).declared)]));
  return g.build({ out: buildOpRecipe(r, xs) });
}

class RecipeBuilder {
  private readonly vals: Tensor[];
  private readonly uses: number[];
  private readonly batch: number;
  private readonly inputs: number;

  constructor(r: OpRecipe, inputs: Tensor[]) {
    this.vals = [...inputs];
    this.inputs = inputs.length;
    this.uses = inputs.map(() => 0);
    this.batch = r.dims[0];
  }

  run(steps: readonly OpStep[]): Tensor {
    for (const s of steps) {
      const uses = [...this.uses];
      const t = this.step(s);
      if (t && this.size(t.shape) <= MAX_ELEMENTS) {
        this.vals.push(t);
        this.uses.push(0);
      } else {
        this.uses.splice(0, uses.length, ...uses); // a skipped step used nothing
      }
    }
    // Unused values join the output as means, so every step's rule is on the gradient's path.
    const last = this.vals.length - 1;
    let out = this.vals[last];
    for (let i = this.uses.length - 1; i >= 0; i--)
      if (i !== last && this.uses[i] === 0 && i >= this.inputs) out = out.add(this.vals[i].mean());
    return out;
  }

  /** Operand `i` counted back from the newest; a value used MAX_USES times passes to an older one. */
  private pick(i: number): Tensor {
    const n = this.vals.length;
    for (let k = 0; k < n; k++) {
      const j = (n - 1 - ((i + k) % n) + n) % n;
      if (this.uses[j] < MAX_USES || k === n - 1) {
        this.uses[j]++;
        return this.vals[j];
      }
    }
    throw new Error("unreachable: there is always a value");
  }

  private size(s: Shape): number {
    return s.reduce<number>((a, d) => a * (typeof d === "number" ? d : this.batch), 1);
  }

  private step(s: OpStep): Tensor | undefined {
    switch (s.kind) {
      case "unary":
        return unary(s.op, this.pick(s.a));
      case "binary": {
        const [a, b] = this.broadcastPair(this.pick(s.a), this.pick(s.b));
        return binary(s.op, a, b);
      }
      case "select": {
        const [a, b] = this.broadcastPair(this.pick(s.a), this.pick(s.b));
        const c = this.broadcastTo(this.pick(s.c), broadcastShapes([a.shape, b.shape])!);
        return c[s.op](a).select(a, b);
      }
      case "reduce":
        return this.reduce(s);
      case "move":
        return this.move(s.op, this.pick(s.a), () => this.pick(s.b), new Choices(s.p));
      case "matmul":
        return this.matmul(this.pick(s.a), () => this.pick(s.b), new Choices(s.p));
      case "image":
        return this.image(s.op, this.pick(s.a), this.pick(s.b), new Choices(s.p));
      case "loss":
        return this.loss(s.op, this.pick(s.a), () => this.pick(s.b), new Choices(s.p));
    }
  }

  /** b as is when it broadcasts with a into ≤ MAX_ELEMENTS; else its mean, a scalar. */
  private broadcastPair(a: Tensor, b: Tensor): [Tensor, Tensor] {
    return [a, this.broadcastTo(b, a.shape)];
  }

  private broadcastTo(t: Tensor, shape: Shape): Tensor {
    const out = broadcastShapes([shape, t.shape]);
    return out && this.size(out) <= MAX_ELEMENTS ? t : t.mean();
  }

  private reduce(s: Extract<OpStep, { kind: "reduce" }>): Tensor | undefined {
    const x = this.pick(s.a);
    const axes = x.shape.map((_, a) => a).filter((a) => (s.axes >> a) & 1);
    switch (s.op) {
      case "sum":
      case "mean":
      case "max":
      case "min":
        return x[s.op](axes, s.keepdims);
      case "logsumexp":
        return axes.length ? logsumexp(x, axes, s.keepdims) : undefined;
      case "maxout": {
        const c = x.shape[x.rank - 1];
        return typeof c === "number" && c % 2 === 0 ? maxout(x, 2) : undefined;
      }
    }
  }

  private move(op: (typeof MOVE)[number], a: Tensor, other: () => Tensor, ch: Choices): Tensor | undefined {
    const statics = a.shape.map((_, ax) => ax).filter((ax) => typeof a.shape[ax] === "number");
    switch (op) {
      case "reshape": {
        // The symbolic dims first, then a random factorization of the static size.
        let n = statics.reduce((k, ax) => k * (a.shape[ax] as number), 1);
        const dims: Dim[] = a.shape.filter((d) => typeof d === "string");
        for (let r = ch.choose(3); r > 0 && n > 1; r--) {
          const divisors = Array.from({ length: n }, (_, k) => k + 1).filter((d) => n % d === 0);
          const d = divisors[ch.choose(divisors.length)];
          dims.push(d);
          n /= d;
        }
        return a.reshape([...dims, ...(n > 1 || dims.length === 0 ? [n] : [])]);
      }
      case "permute": {
        if (a.rank < 2) return undefined;
        const how = ch.choose(3);
        if (how === 0) return a.transpose();
        // A rotation of the axes is its own inverse only for rank 2: the rule must invert it.
        const perm = a.shape.map((_, k) => (k + 1) % a.rank);
        if (how === 2) {
          for (let k = perm.length - 1; k > 0; k--) {
            const j = ch.choose(k + 1);
            [perm[k], perm[j]] = [perm[j], perm[k]];
          }
        }
        return a.permute(perm);
      }
      case "expand": {
        const ones = a.shape.map((d, ax) => (d === 1 ? ax : -1)).filter((ax) => ax >= 0);
        if (ones.length && ch.choose(2)) return a.expand(a.shape.map((d, ax) => (ax === ones[0] ? 2 + ch.choose(2) : d)));
        return a.expand([2 + ch.choose(2), ...a.shape]);
      }
      case "slice": {
        const begin = a.shape.map(() => 0);
        const end: Dim[] = [...a.shape];
        const stride = a.shape.map(() => 1);
        for (const ax of statics) {
          const d = a.shape[ax] as number;
          begin[ax] = ch.choose(d);
          end[ax] = begin[ax] + 1 + ch.choose(d - begin[ax]);
          stride[ax] = 1 + ch.choose(2);
        }
        return a.slice(begin, end, stride);
      }
      case "pad": {
        const before = a.shape.map((_, ax) => (statics.includes(ax) ? ch.choose(2) : 0));
        const after = a.shape.map((_, ax) => (statics.includes(ax) ? ch.choose(2) : 0));
        return a.pad(before, after, ch.choose(2) ? 0.5 : 0);
      }
      case "concat": {
        if (!statics.length) return undefined;
        const axis = statics[ch.choose(statics.length)];
        const b = other();
        const fits = b.rank === a.rank && b.shape.every((d, ax) => (ax === axis ? typeof d === "number" : d === a.shape[ax]));
        // [a, a]: two slices of one cotangent flow back into the same value.
        return concat([a, fits ? b : ch.choose(2) ? a : affine(a)], axis);
      }
      case "gather": {
        if (!statics.length) return undefined;
        const axis = statics[ch.choose(statics.length)];
        const v = a.shape[axis] as number;
        const ishape = ch.choose(2) ? [1 + ch.choose(4)] : [2, 2];
        const ids = Array.from({ length: ishape.reduce((k, d) => k * d, 1) }, () => ch.choose(v));
        return a.gather(a.builder.constant(ids, "i32", ishape), axis);
      }
    }
  }

  /** a as a matrix times: b when the inner dims meet (as is or transposed), a weight tiled from
   *  b, or a's own transpose (a Gram matrix: both operand rules feed one cotangent). */
  private matmul(a0: Tensor, other: () => Tensor, ch: Choices): Tensor | undefined {
    const a = a0.rank >= 2 ? a0 : a0.reshape([1, ...a0.shape, ...(a0.rank === 0 ? [1] : [])]);
    const k = a.shape[a.rank - 1];
    const batchFits = (t: Tensor) => broadcastShapes([a.shape.slice(0, -2), t.shape.slice(0, -2)]) !== undefined;
    switch (ch.choose(3)) {
      case 0: {
        const b = other();
        if (b.rank >= 2 && b.shape[b.rank - 2] === k && batchFits(b)) return a.matmul(b);
        if (b.rank >= 2 && b.shape[b.rank - 1] === k && batchFits(b)) return a.matmul(b.transpose());
        return typeof k === "number" ? a.matmul(fit(b, [k, 1 + ch.choose(4)])) : a.matmul(a.transpose());
      }
      case 1:
        return a.matmul(a.transpose());
      default:
        return a.transpose().matmul(a);
    }
  }

  /** An NHWC image tiled from a, then a conv2d (filter tiled from b) or a pool. */
  private image(op: (typeof IMAGE)[number], a: Tensor, b: Tensor, ch: Choices): Tensor | undefined {
    const [n, h, w, c] = [1 + ch.choose(2), 2 + ch.choose(3), 2 + ch.choose(3), 1 + ch.choose(2)];
    const x = fit(a, [n, h, w, c]);
    const k = [1 + ch.choose(3), 1 + ch.choose(3)] as const;
    const strides = [1 + ch.choose(2), 1 + ch.choose(2)] as const;
    if (op === "conv2d") {
      const dilations = [1 + ch.choose(2), 1 + ch.choose(2)] as const;
      const padding = [ch.choose(2), ch.choose(2), ch.choose(2), ch.choose(2)] as const;
      const fitsIn = (len: number, ax: 0 | 1) => len + padding[2 * ax] + padding[2 * ax + 1] >= dilations[ax] * (k[ax] - 1) + 1;
      if (!fitsIn(h, 0) || !fitsIn(w, 1)) return undefined;
      return x.conv2d(fit(b, [k[0], k[1], c, 1 + ch.choose(3)]), { strides, padding, dilations });
    }
    // Pool padding must be smaller than the window on each side.
    const padding = [ch.choose(k[0]), ch.choose(k[0]), ch.choose(k[1]), ch.choose(k[1])] as const;
    if (h + padding[0] + padding[1] < k[0] || w + padding[2] + padding[3] < k[1]) return undefined;
    return op === "max_pool2d" ? x.maxPool2d(k, strides, padding) : x.avgPool2d(k, strides, padding);
  }

  private loss(op: (typeof LOSS)[number], a: Tensor, other: () => Tensor, ch: Choices): Tensor | undefined {
    if (a.rank === 0) return undefined;
    const axis = ch.choose(a.rank);
    if (op === "softmax") return softmax(a, axis);
    if (op === "logSoftmax") return logSoftmax(a, axis);
    // A target of a's shape: b stretched to it when it broadcasts to exactly that, else tanh a.
    const b = other();
    const same = (s: Shape | undefined) => s !== undefined && s.length === a.rank && s.every((d, ax) => d === a.shape[ax]);
    const t = same(b.shape) ? b : same(broadcastShapes([a.shape, b.shape])) ? b.expand(a.shape) : a.tanh();
    if (op === "mse") return mse(a, t);
    if (op === "sigmoidBCE") return sigmoidBinaryCrossEntropy(a, t.sigmoid());
    return softmaxCrossEntropy(a, softmax(t, axis), axis);
  }
}

const positive = (t: Tensor): Tensor => t.mul(t).add(0.5);
/** t + ½·sign t: at least ½ from 0 (sign's jump at 0 is a kink the checker knows). */
const awayFromZero = (t: Tensor): Tensor => t.add(t.sign().mul(0.5));
/** Distinct from t, and for each k from the others, almost everywhere: tiling with it makes no
 *  ties (a max_pool2d over two copies of one value would hand both the whole cotangent). */
const affine = (t: Tensor, k = 0): Tensor => t.mul(-0.7).add(0.3 + 0.25 * k);

function unary(op: (typeof UNARY)[number], a: Tensor): Tensor {
  switch (op) {
    case "neg":
    case "tanh":
    case "sigmoid":
    case "sin":
    case "cos":
    case "relu":
    case "abs":
    case "floor":
    case "ceil":
      return a[op]();
    case "exp":
      return a.tanh().mul(3).exp();
    case "log":
    case "sqrt":
    case "rsqrt":
      return positive(a)[op]();
    case "recip":
      return awayFromZero(a).recip();
    case "leakyRelu":
      return leakyRelu(a, 0.1);
    case "trunc":
      return a.cast("i32").cast("f32");
    case "mod":
      return a.mod(1.5);
  }
}

function binary(op: (typeof BINARY)[number], a: Tensor, b: Tensor): Tensor {
  switch (op) {
    case "add":
    case "sub":
    case "mul":
      return a[op](b);
    case "div":
      return a.div(awayFromZero(b));
    case "max":
      return a.maximum(b);
    case "min":
      return a.minimum(b);
    case "pow":
      return positive(a).pow(b.tanh().mul(2));
  }
}

/** `shape` (static) filled from t's elements, tiled as needed: symbolic axes averaged away,
 *  flattened, doubled with an affine copy of itself until long enough, cut, reshaped. */
function fit(t: Tensor, shape: readonly number[]): Tensor {
  const sym = t.shape.map((_, ax) => ax).filter((ax) => typeof t.shape[ax] === "string");
  let s = sym.length ? t.mean(sym) : t;
  let n = (s.shape as number[]).reduce((a, d) => a * d, 1);
  s = s.reshape([n]);
  const need = shape.reduce((a, d) => a * d, 1);
  for (let k = 0; n < need; k++) {
    s = concat([s, affine(s, k)], 0);
    n *= 2;
  }
  return (n > need ? s.slice([0], [need]) : s).reshape(shape);
}
