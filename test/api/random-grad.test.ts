/** Gradients of random graphs over the op table (test/helpers/random-op-graph.ts): elementwise
 *  math with broadcasting, kinks, select, reductions, movement, gather, matmul, conv2d, pools,
 *  softmax and the losses, up to 8 steps, 2–3 inputs, a symbolic batch in half of them.
 *  (a) float64: the symbolic gradient against central differences along random directions on the
 *      reference interpreter (test/helpers/gradcheck.ts), relative error ≤ 1e-5;
 *  (b) Dawn: the gradient graph compiled to WGSL agrees with the float64 reference gradients.
 *  Points near a kink, or with values that overflow, are discarded (test/helpers/kinks.ts). Both
 *  properties are seeded, so a run is reproducible; a failure shrinks to a small recipe and prints
 *  its graph, backward part included, as text IR.
 *
 *  Environment: KILN_RANDOM_GRAPHS=n checks n graphs in (a) (default 300); (b) checks 25 (each compiles its own kernels, slow on lavapipe). */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import { liveNodes } from "../../src/ir/live.ts";
import { printGraph } from "../../src/ir/print.ts";
import type { Graph } from "../../src/ir/types.ts";
import { runGpu, useGpu } from "../helpers/gpu.ts";
import { buildGradGraph, expectGradOk, type GradSpec } from "../helpers/gradcheck.ts";
import { notSmooth, probePoints, type SmoothOptions } from "../helpers/kinks.ts";
import { buildOpRecipe, forwardGraph, opRecipeArb, recipeInputs, recipeShapes, type OpRecipe } from "../helpers/random-op-graph.ts";

useGpu();

function runsFromEnv(): number {
  const v = process.env.KILN_RANDOM_GRAPHS;
  if (v === undefined || v === "") return 300;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`KILN_RANDOM_GRAPHS must be a positive integer, got "${v}"`);
  return n;
}
const RUNS = runsFromEnv();
const GPU_RUNS = 25;

const spec = (r: OpRecipe, inputs: Record<string, HostTensor>): GradSpec => ({
  inputs,
  shapes: recipeShapes(r),
  f: (xs) => buildOpRecipe(r, xs),
});

/** Counts what a property checked and why it discarded the rest. */
class Tally {
  checked = 0;
  private readonly discarded = new Map<string, number>();
  /** fc.pre on the point being smooth, counting the reason when not. */
  admit(r: OpRecipe, inputs: Record<string, HostTensor>, opts: SmoothOptions): void {
    const why = notSmooth(forwardGraph(r), probePoints(inputs, r.seed), opts);
    if (why) {
      const kind = why.replace(/ at %.*/, "").replace(/-?\d[\d.]*e[-+]\d+|Infinity/, "…");
      this.discarded.set(kind, (this.discarded.get(kind) ?? 0) + 1);
    }
    fc.pre(why === undefined);
  }
  toString(): string {
    const d = [...this.discarded].map(([k, n]) => `${n} ${k}`).join("; ");
    return `${this.checked} random graphs checked${d ? ` (discarded: ${d})` : ""}`;
  }
}

describe("random graphs: symbolic gradients", () => {
  test(
    `float64: ${RUNS} graphs, the gradient against central differences`,
    () => {
      const tally = new Tally();
      fc.assert(
        fc.property(opRecipeArb, (r) => {
          const inputs = recipeInputs(r);
          tally.admit(r, inputs, { margin: 1e-3, limit: 1e3 });
          // At ε = 1e-6 the error left is float64 rounding in the difference, ~|y|·2^-52/ε (it grows
          // as ε shrinks); truncation, ε²·|f‴|, is smaller. Over 40,000 graphs the largest was 3e-6.
          expectGradOk(spec(r, inputs), 1e-5, { eps: 1e-6, seed: r.seed });
          tally.checked++;
        }),
        { seed: 3141, numRuns: RUNS },
      );
      console.log(`random-grad float64: ${tally}`);
      expect(tally.checked).toBe(RUNS);
    },
    Math.max(120_000, 100 * RUNS),
  ); // ~10 ms a graph; room for a loaded machine

  test(`Dawn: ${GPU_RUNS} gradient graphs against the float64 reference gradients`, async () => {
    const tally = new Tally();
    let worst = 0;
    await fc.assert(
      fc.asyncProperty(opRecipeArb, async (r) => {
        const inputs = recipeInputs(r);
        // A wider margin: f32 rounding of the forward values, sin and cos off by up to 2^-11 among
        // them, must not flip a branch. Smaller values keep f32 sums well inside the tolerance.
        tally.admit(r, inputs, { margin: 1e-2, limit: 100, gpuDomains: true });
        worst = Math.max(worst, await expectGpuGradients(buildGradGraph(spec(r, inputs), r.seed).graph, inputs));
        tally.checked++;
      }),
      { seed: 2718, numRuns: GPU_RUNS },
    );
    console.log(`random-grad Dawn: ${tally}; worst error ${worst.toExponential(2)} of the tolerance`);
    expect(tally.checked).toBe(GPU_RUNS);
  }); // ~1–2.5 s a graph when lavapipe's shader cache is cold
});

/** Dawn's outputs (y and each gradient) against the float64 reference, within
 *      |gpu − ref| ≤ 1e-3·max|ref| + 1e-5·M
 *  per output, M the largest magnitude of any f32 value the reference computes in the graph.
 *  Why: WGSL's sin and cos may be off by 2^-11 ≈ 5e-4 absolute on [-π, π] (their arguments are
 *  kept there), on values of magnitude ≤ 1: the first term; every other op is within ~20 ulps
 *  (≤ 3e-6 relative). Where a result cancels (a gradient that is 0 in exact arithmetic), f32
 *  rounding leaves at most (roundings on the path)·2^-24 of the largest term it came from: the
 *  second term allows ~160 of them. A wrong rule, index or branch moves whole terms, O(max|ref|).
 *  On lavapipe, 400 graphs stayed under 0.3 of the tolerance. Returns the largest |gpu − ref| /
 *  tolerance. */
async function expectGpuGradients(graph: Graph, inputs: Readonly<Record<string, HostTensor>>): Promise<number> {
  const live = liveNodes(graph);
  const every: Graph = {
    nodes: graph.nodes,
    outputs: graph.nodes.filter((n) => live[n.id] && n.type.dtype === "f32").map((n) => ({ name: `v${n.id}`, id: n.id })),
  };
  const m = Math.max(0, ...Object.values(interpret(every, inputs)).flatMap((t) => Array.from(t.data, Math.abs)));
  const ref = interpret(graph, inputs);
  let gpu: Awaited<ReturnType<typeof runGpu>>;
  try {
    gpu = await runGpu(graph, inputs);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${printGraph(graph)}`);
  }
  let worst = 0;
  for (const [name, r] of Object.entries(ref)) {
    const got = gpu[name];
    if (got.shape.join() !== r.shape.join())
      throw new Error(`${name}: gpu shape [${got.shape}], reference [${r.shape}]\n${printGraph(graph)}`);
    const tol = 1e-3 * Math.max(0, ...Array.from(r.data, Math.abs)) + 1e-5 * m;
    for (let i = 0; i < r.data.length; i++) {
      const err = Math.abs(got.data[i] - r.data[i]);
      if (!(err <= tol))
        throw new Error(
          `${name}[${i}]: gpu ${got.data[i]}, reference ${r.data[i]}, tolerance ${tol.toExponential(2)}\n${printGraph(graph)}`,
        );
      if (tol > 0) worst = Math.max(worst, err / tol);
    }
  }
  return worst;
}

describe("the generator and the kink check", () => {
  test("recipes cover the op table broadly", () => {
    const ops = new Set(fc.sample(opRecipeArb, { seed: 1, numRuns: 300 }).flatMap((r) => forwardGraph(r).nodes.map((n) => n.op)));
    const wanted = [
      "neg",
      "abs",
      "sign",
      "exp",
      "log",
      "sqrt",
      "rsqrt",
      "recip",
      "sin",
      "cos",
      "tanh",
      "sigmoid",
      "relu",
      "floor",
      "ceil",
      "cast",
      "add",
      "sub",
      "mul",
      "div",
      "mod",
      "pow",
      "max",
      "min",
      "lt",
      "le",
      "gt",
      "ge",
      "select",
      "stop_gradient",
      "reduce_sum",
      "reduce_mean",
      "reduce_max",
      "reduce_min",
      "reshape",
      "permute",
      "expand",
      "slice",
      "pad",
      "concat",
      "gather",
      "matmul",
      "conv2d",
      "max_pool2d",
      "avg_pool2d",
    ] as const;
    expect(wanted.filter((op) => !ops.has(op))).toEqual([]);
  });

  const check = (build: (g: GraphBuilder) => Graph, x: number[]) => {
    const inputs = { x: { shape: [x.length], data: x } };
    return notSmooth(build(new GraphBuilder()), probePoints(inputs, 1), { margin: 1e-3, limit: 1e3 });
  };
  const graph = (f: (x: Tensor) => Tensor) => (g: GraphBuilder) => g.build({ out: f(g.input("x", "f32", [3])) });

  test("a point near a kink is refused; one sitting on a kink identically is not", () => {
    expect(
      check(
        graph((x) => x.relu()),
        [0.5, -1, 1e-4],
      ),
    ).toMatch(/from a kink at %1 \(relu\)/);
    expect(
      check(
        graph((x) => x.relu()),
        [0.5, -1, 2],
      ),
    ).toBeUndefined();
    // relu's zeros stay zero: the outer relu's kink does not move.
    expect(
      check(
        graph((x) => x.relu().relu()),
        [0.5, -1, -2],
      ),
    ).toBeUndefined();
    // max(x, relu(x)) ties identically where x > 0.
    expect(
      check(
        graph((x) => x.maximum(x.relu())),
        [0.5, -1, 2],
      ),
    ).toBeUndefined();
    expect(
      check(
        graph((x) => x.maximum(x.mul(0.999))),
        [0.5, -1, 2],
      ),
    ).toMatch(/from a kink at %\d+ \(max\)/);
    expect(
      check(
        graph((x) => x.max()),
        [0.5, 0.5005, 2],
      ),
    ).toBeUndefined();
    expect(
      check(
        graph((x) => x.max()),
        [0.5, 2.0005, 2],
      ),
    ).toMatch(/near tie/);
    expect(
      check(
        graph((x) => x.floor()),
        [0.5, 3, 2.2],
      ),
    ).toMatch(/from a kink/);
  });

  test("persistent ties are no hazard (reduce_max shares them, max_pool2d takes the first); chance ties are", () => {
    const tied = (x: Tensor) => x.reshape([1, 3, 1, 1]).expand([1, 3, 2, 1]);
    expect(
      check(
        graph((x) => tied(x).max([2])),
        [0.5, -1, 2],
      ),
    ).toBeUndefined();
    expect(
      check(
        graph((x) => tied(x).maxPool2d([1, 2])),
        [0.5, -1, 2],
      ),
    ).toBeUndefined();
    expect(
      check(
        graph((x) => x.reshape([1, 3, 1, 1]).maxPool2d([3, 1])),
        [2, -1, 2],
      ),
    ).toMatch(/tie/);
  });

  test("overflowing values are refused", () => {
    expect(
      check(
        graph((x) => x.mul(1e4)),
        [0.5, -1, 2],
      ),
    ).toMatch(/beyond/);
  });
});
