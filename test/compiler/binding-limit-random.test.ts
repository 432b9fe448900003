/** The binding limit over random graphs (test/helpers/random-op-graph.ts), forward and gradient,
 *  at limits 3..8: every kernel binds at most the limit, exactly the buffers the fusion plan
 *  counted (compiler/fuse.ts `kernelBindings`), and the program computes the reference's values.
 *  Most graphs are checked on the CPU: each kernel, in schedule order, is evaluated in float64
 *  from only the buffers it binds (and what it computes inline), and the outputs must equal
 *  the interpreter's on the compiled graph exactly; a few per limit run on Dawn. A graph may fail to compile only where one
 *  node alone needs more: its distinct operands and its output pass the limit (select at 3). */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { kernelNodes } from "../../compiler/cost.ts";
import { kernelBindings, planFusion } from "../../compiler/fuse.ts";
import { compile } from "../../compiler/pipeline.ts";
import type { Program } from "../../compiler/program.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import { liveNodes } from "../../src/ir/live.ts";
import { bindDims } from "../../src/ir/bind.ts";
import { KilnError } from "../../src/ir/errors.ts";
import { printGraph } from "../../src/ir/print.ts";
import { bindShape } from "../../src/ir/shape.ts";
import type { Graph, ValueId } from "../../src/ir/types.ts";
import { lowering, OPS } from "../../src/ops/table.ts";
import { tensor64, type Tensor64 } from "../../src/ops/tensor64.ts";
import { runGpu, useGpu } from "../helpers/gpu.ts";
import { buildGradGraph } from "../helpers/gradcheck.ts";
import { notSmooth, probePoints } from "../helpers/kinks.ts";
import { buildOpRecipe, forwardGraph, opRecipeArb, recipeInputs, recipeShapes, type OpRecipe } from "../helpers/random-op-graph.ts";

useGpu();

const LIMITS = [3, 4, 5, 6, 7, 8];

/** The forward graph, or its gradient graph (wider kernels: the backward recomputes). */
function graphOf(r: OpRecipe, backward: boolean): { graph: Graph; inputs: Record<string, HostTensor> } {
  const inputs = recipeInputs(r);
  if (!backward) return { graph: forwardGraph(r), inputs };
  return { graph: buildGradGraph({ inputs, shapes: recipeShapes(r), f: (xs) => buildOpRecipe(r, xs) }).graph, inputs };
}

const reference = (n: Graph["nodes"][number], ins: Tensor64[], shape: number[]): Tensor64 =>
  (OPS[n.op].reference as (i: Tensor64[], a: unknown, o: unknown) => Tensor64)(ins, n.attrs, { dtype: n.type.dtype, shape });

/** Runs `p` kernel by kernel in float64: a kernel sees only its bindings and computes only the
 *  nodes codegen inlined into it; a read of anything else fails. */
function runOnCpu(p: Program, inputs: Readonly<Record<string, HostTensor>>): Record<string, Tensor64> {
  const g = p.graph;
  const env = bindDims(g, Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, v.shape])));
  const live = liveNodes(g);
  const stored = new Map<ValueId, Tensor64>();
  for (const n of g.nodes) {
    if (!live[n.id] || lowering(n).kind !== "buffer") continue;
    const shape = bindShape(n.type.shape, env);
    stored.set(
      n.id,
      n.op === "input" ? tensor64(n.type.dtype, shape, inputs[(n.attrs as { name: string }).name].data) : reference(n, [], shape),
    );
  }
  for (const k of p.kernels) {
    const bound = new Set(k.bindings.map((b) => b.value));
    const computes = new Set(kernelNodes(p, k));
    const local = new Map<ValueId, Tensor64>();
    const value = (id: ValueId): Tensor64 => {
      if (bound.has(id) && id !== k.output) {
        const t = stored.get(id);
        if (!t) throw new Error(`${k.name} binds %${id} before any kernel wrote it`);
        return t;
      }
      if (!computes.has(id)) throw new Error(`${k.name} reads %${id}, which it neither binds nor computes`);
      if (!local.has(id)) {
        const n = g.nodes[id];
        local.set(id, reference(n, n.inputs.map(value), bindShape(n.type.shape, env)));
      }
      return local.get(id)!;
    };
    stored.set(k.output, value(k.output));
  }
  return Object.fromEntries(g.outputs.map((o) => [o.name, stored.get(o.id)!]));
}

/** Dawn against float64 within 1e-3·max|ref| + 1e-5·M per output, M the largest f32 value the
 *  graph computes: the bound test/api/random-grad.test.ts derives (sin and cos within 2^-11, other
 *  ops ~20 ulps, cancellation ~160 roundings of the largest term). */
function expectClose(
  graph: Graph,
  gpu: Awaited<ReturnType<typeof runGpu>>,
  ref: Record<string, Tensor64>,
  inputs: Readonly<Record<string, HostTensor>>,
): void {
  const live = liveNodes(graph);
  const every: Graph = {
    nodes: graph.nodes,
    outputs: graph.nodes.filter((n) => live[n.id] && n.type.dtype === "f32").map((n) => ({ name: `v${n.id}`, id: n.id })),
  };
  const m = Math.max(0, ...Object.values(interpret(every, inputs)).flatMap((t) => Array.from(t.data, Math.abs)));
  for (const [name, r] of Object.entries(ref)) {
    const tol = 1e-3 * Math.max(0, ...Array.from(r.data, Math.abs)) + 1e-5 * m;
    r.data.forEach((v, i) => expect(Math.abs(gpu[name].data[i] - v), `${name}[${i}]\n${printGraph(graph)}`).toBeLessThanOrEqual(tol));
  }
}

/** Where compiling at `limit` may fail: a node `op` whose distinct operands and output, `need`
 *  of them, pass it. */
const needsMore = (g: Graph, op: string, need: number, limit: number): boolean =>
  need > limit && g.nodes.some((n) => n.op === op && new Set(n.inputs).size + 1 >= need);

/** Compiles at `limit` and checks the bindings; undefined where it threw for a node that cannot fit. */
function compileFitting(graph: Graph, limit: number): Program | undefined {
  let p: Program;
  try {
    p = compile(graph, { maxStorageBuffers: limit, verifyEach: true });
  } catch (e) {
    const m = e instanceof KilnError ? /^(\w+) %\d+.*?: needs (\d+) storage buffers/.exec(e.message) : null;
    if (!m) throw e;
    // Ids are the compiled graph's; the passes can merge operands, never add them.
    expect(needsMore(graph, m[1], Number(m[2]), limit), `${(e as Error).message}\n${printGraph(graph)}`).toBe(true);
    return undefined;
  }
  const buffers = new Set(p.buffers.map((b) => b.value));
  for (const k of p.kernels) {
    expect(k.bindings.length, `${k.name} at limit ${limit}\n${printGraph(p.graph)}`).toBeLessThanOrEqual(limit);
    // An in-place kernel stores into an operand's buffer instead of binding its output.
    const planned = kernelBindings(p.graph, k.output, buffers).filter((v) => k.inPlace === undefined || v !== k.output);
    expect(
      k.bindings.map((b) => b.value).sort((a, b) => a - b),
      `${k.name}: the plan's count`,
    ).toEqual(planned);
  }
  return p;
}

describe("random graphs fit every binding limit", () => {
  test.each(LIMITS)("limit %i: bindings within it, as planned, and kernel-by-kernel float64 equals the reference", (limit) => {
    let [compiled, split] = [0, 0];
    fc.assert(
      fc.property(opRecipeArb, fc.boolean(), (r, backward) => {
        const { graph, inputs } = graphOf(r, backward);
        const p = compileFitting(graph, limit);
        if (!p) return;
        compiled++;
        if (planFusion(p.graph, { fuse: true, maxStorageBuffers: limit }).spilled.length) split++;
        // The compiled graph's own reference: the passes fold constants in f32, so the original's
        // float64 values may differ in the last bits; the kernel split must not change any.
        const want = interpret(p.graph, inputs);
        const got = runOnCpu(p, inputs);
        for (const [name, t] of Object.entries(want)) {
          expect(Array.from(got[name].data), `output ${name}\n${printGraph(p.graph)}`).toEqual(Array.from(t.data));
        }
      }),
      { numRuns: 150, seed: 5000 + limit },
    );
    console.log(`limit ${limit}: ${compiled} of 150 compiled, ${split} of them split for the limit`);
    expect(compiled).toBeGreaterThan(100);
    // Low limits must exercise the split (101, 68, 40, 26 of 150 at 3–6 with these seeds).
    if (limit <= 6) expect(split).toBeGreaterThan(10);
  });

  test.each(LIMITS)(
    "limit %i: a few on Dawn match the float64 reference",
    async (limit) => {
      let [ran, split] = [0, 0];
      await fc.assert(
        fc.asyncProperty(opRecipeArb, fc.boolean(), async (r, backward) => {
          const { graph, inputs } = graphOf(r, backward);
          // f32 rounding must not flip a branch, nor sin or cos leave [-π, π] (test/helpers/kinks.ts).
          fc.pre(notSmooth(forwardGraph(r), probePoints(inputs, r.seed), { margin: 1e-2, limit: 100, gpuDomains: true }) === undefined);
          const p = compileFitting(graph, limit);
          if (!p) return;
          if (planFusion(p.graph, { fuse: true, maxStorageBuffers: limit }).spilled.length) split++;
          expectClose(graph, await runGpu(graph, inputs, { maxStorageBuffers: limit }), interpret(graph, inputs), inputs);
          ran++;
        }),
        { numRuns: 4, seed: 7000 + limit },
      );
      console.log(`limit ${limit} on Dawn: ${ran} ran, ${split} split for the limit`);
      expect(ran).toBeGreaterThan(0);
    },
    120_000,
  );
});
