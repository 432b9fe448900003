/** Gradient checks in float64 on the reference interpreter: the symbolic gradient's inner
 *  product with a random direction v must equal the central difference
 *  (f(x + εv) − f(x − εv)) / 2ε, as JAX's check_grads and Theano's verify_grad do — one
 *  directional derivative per direction instead of one per input element, so it stays cheap
 *  for large inputs. Failures print the graph, backward part included, as text IR. */
import { GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import { grad } from "../../src/api/grad.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import { printGraph } from "../../src/ir/print.ts";
import type { Graph, Shape } from "../../src/ir/types.ts";
import { floats } from "./data.ts";

export interface GradSpec {
  /** f32 inputs to differentiate with respect to, with their values. */
  readonly inputs: Readonly<Record<string, HostTensor>>;
  /** Extra inputs that are not differentiated (labels, indices), with their dtypes. */
  readonly fixed?: Readonly<Record<string, HostTensor & { readonly dtype: "f32" | "i32" | "u32" | "bool" }>>;
  /** Build the function's value from the inputs (any shape: it is reduced as Σ u ⊙ f with a
   *  random weight u, so every output element matters differently). */
  readonly f: (xs: Readonly<Record<string, Tensor>>, g: GraphBuilder) => Tensor;
  /** Declared shapes of inputs, where not the data's: e.g. ["B", 3] for a symbolic batch, bound
   *  from the data when the graph runs. */
  readonly shapes?: Readonly<Record<string, Shape>>;
}

export interface GradGraph {
  readonly graph: Graph;
  /** Names of the gradient outputs, by input name. */
  readonly grads: Readonly<Record<string, string>>;
}

/** y = Σ u ⊙ f(x), and its gradient with respect to every differentiated input. */
export function buildGradGraph(spec: GradSpec, seed = 1): GradGraph {
  const g = new GraphBuilder();
  const xs: Record<string, Tensor> = {};
  const declared = (name: string, t: HostTensor) => spec.shapes?.[name] ?? t.shape;
  for (const [name, t] of Object.entries(spec.inputs)) xs[name] = g.input(name, "f32", declared(name, t));
  for (const [name, t] of Object.entries(spec.fixed ?? {})) xs[name] = g.input(name, t.dtype, declared(name, t));
  const out = spec.f(xs, g);
  const shape = out.shape.map((d) => (typeof d === "number" ? d : 1));
  const u = g.constant(
    floats(
      shape.reduce((a, d) => a * d, 1),
      seed + 99,
    ),
    "f32",
    shape as Shape,
  );
  const y = out.rank === 0 ? out.mul(u) : out.mul(u).sum();
  const names = Object.keys(spec.inputs);
  const gs = grad(
    y,
    names.map((n) => xs[n]),
  );
  const outputs: Record<string, Tensor> = { y };
  const grads: Record<string, string> = {};
  names.forEach((n, i) => {
    outputs[`d_${n}`] = gs[i];
    grads[n] = `d_${n}`;
  });
  return { graph: g.build(outputs), grads };
}

/** The largest relative error of the directional derivative over `directions` random v. */
export function gradError(spec: GradSpec, opts: { eps?: number; directions?: number; seed?: number } = {}): { err: number; graph: Graph } {
  const eps = opts.eps ?? 1e-6;
  const { graph, grads } = buildGradGraph(spec, opts.seed);
  const all = (xs: Readonly<Record<string, HostTensor>>) => ({ ...xs, ...(spec.fixed ?? {}) });
  const at = interpret(graph, all(spec.inputs));
  let worst = 0;
  for (let d = 0; d < (opts.directions ?? 2); d++) {
    const shifted = (sign: number) =>
      Object.fromEntries(
        Object.entries(spec.inputs).map(([name, t], i) => {
          const v = floats(t.data.length, (opts.seed ?? 1) * 31 + d * 7 + i);
          return [name, { shape: t.shape, data: Array.from(t.data, (x, j) => x + sign * eps * v[j]) }];
        }),
      );
    const numeric = (interpret(graph, all(shifted(1))).y.data[0] - interpret(graph, all(shifted(-1))).y.data[0]) / (2 * eps);
    let symbolic = 0;
    Object.entries(spec.inputs).forEach(([name, t], i) => {
      const v = floats(t.data.length, (opts.seed ?? 1) * 31 + d * 7 + i);
      const gx = at[grads[name]].data;
      for (let j = 0; j < v.length; j++) symbolic += gx[j] * v[j];
    });
    const err = Math.abs(symbolic - numeric) / Math.max(1e-3, Math.abs(symbolic), Math.abs(numeric));
    worst = Math.max(worst, err);
  }
  return { err: worst, graph };
}

/** Throw with the graph in text IR when the gradient is off by more than `tol` (relative). */
export function expectGradOk(spec: GradSpec, tol = 1e-5, opts?: { eps?: number; directions?: number; seed?: number }): void {
  const { err, graph } = gradError(spec, opts);
  if (!(err <= tol)) throw new Error(`gradient check failed: relative error ${err.toExponential(2)} > ${tol}\n${printGraph(graph)}`);
}
