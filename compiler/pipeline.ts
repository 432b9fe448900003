/** The compiler's table of contents: the passes, in order, then fusion and codegen.
 *  A pipeline of your own: `compile(graph, { passes: (std) => [...std, myPass] })`; each pass's
 *  node count and time land in `program.stats`. KILN_DUMP=<pass>[,<pass>…] (or "all") prints
 *  the text IR after those passes. */
import { printGraph } from "../src/ir/print.ts";
import type { Graph, ValueId } from "../src/ir/types.ts";
import { verify } from "../src/ir/verify.ts";
import { codegen } from "./codegen.ts";
import { planBuffers } from "./fuse.ts";
import { memoryReport } from "./plan-memory.ts";
import { cse } from "./cse.ts";
import { dce } from "./dce.ts";
import { foldConstants } from "./fold-constants.ts";
import { inferShapes } from "./infer-shapes.ts";
import { legalize } from "./legalize.ts";
import type { Pass, PassContext } from "./pass.ts";
import { inPlaceOutputs, type Program, type StateUpdate } from "./program.ts";
import { inputNodes } from "../src/ir/bind.ts";
import { KilnError } from "../src/ir/errors.ts";
import { formatType, isStatic, shapeEq } from "../src/ir/shape.ts";
import { simplify } from "./simplify.ts";
import { GPU_TARGET } from "./target.ts";

/** Run `passes` in turn until a round changes nothing (at most `rounds` times). */
export function fixpoint(name: string, passes: readonly Pass[], rounds = 4): Pass {
  return {
    name,
    run(graph, ctx) {
      let g = graph;
      for (let r = 0; r < rounds; r++) {
        const before = g;
        for (const p of passes) g = p.run(g, ctx);
        if (g === before) break;
      }
      return g;
    },
  };
}

export const PASSES: readonly Pass[] = [
  inferShapes,
  fixpoint("simplify-all", [simplify, foldConstants, cse]),
  dce,
  legalize,
];

/** What one pass did: the graph's node count after it, and its time. */
export interface PassStat {
  readonly pass: string;
  readonly nodes: number;
  readonly ms: number;
}

export interface CompileOptions extends Partial<PassContext> {
  /** The graph passes to run, from the standard list (PASSES): add, remove, reorder. */
  readonly passes?: (standard: readonly Pass[]) => readonly Pass[];
  /** Verify the graph between passes (tests do; it costs a re-inference per pass). */
  readonly verifyEach?: boolean;
  /** Resident state: input name → the output whose value replaces it after every run, e.g.
   *  { W1: "W1_next" } for a training step, or null for an input that stays as written (see
   *  Executable.write). Shapes must be static and equal. */
  readonly state?: Readonly<Record<string, string | null>>;
  /** Fuse elementwise chains into their consumers (compiler/fuse.ts); default true. */
  readonly fuse?: boolean;
  /** Plan memory: values share one arena at planned offsets (compiler/plan-memory.ts); false
   *  gives every value a buffer of its own. Default true. */
  readonly plan?: boolean;
  /** Write a state update straight into its input's resident buffer where that is safe
   *  (compiler/codegen.ts), skipping the copy after each run. Default true. */
  readonly inPlace?: boolean;
  /** Values for symbolic dims (a declared upper bound, e.g. { B: 128 }) so that the memory plan
   *  is reported in `stats` at compile time; without them only static programs report it. The
   *  runtime plans for each binding it meets either way. */
  readonly dims?: Readonly<Record<string, number>>;
}

export function compile(graph: Graph, opts: CompileOptions = {}): Program {
  const ctx: Required<PassContext> = { maxStorageBuffers: opts.maxStorageBuffers ?? 8, target: opts.target ?? GPU_TARGET };
  const dump = new Set((process.env.KILN_DUMP ?? "").split(",").filter(Boolean));
  verify(graph);
  let g = graph;
  const stats: PassStat[] = [{ pass: "input", nodes: graph.nodes.length, ms: 0 }];
  for (const pass of opts.passes ? opts.passes(PASSES) : PASSES) {
    const t0 = performance.now();
    g = pass.run(g, ctx);
    stats.push({ pass: pass.name, nodes: g.nodes.length, ms: performance.now() - t0 });
    if (opts.verifyEach) verify(g);
    if (dump.has(pass.name) || dump.has("all")) console.error(`--- after ${pass.name}\n${printGraph(g)}`);
  }
  const t0 = performance.now();
  const state = stateUpdates(g, opts.state ?? {});
  const inPlace = new Map<ValueId, ValueId>();
  if (opts.inPlace ?? true) {
    for (const u of state) {
      if (u.output === undefined) continue;
      const o = g.outputs.find((x) => x.name === u.output)!.id;
      if (!inPlace.has(o)) inPlace.set(o, inputNodes(g).find((n) => n.attrs.name === u.input)!.id);
    }
  }
  const buffers = planBuffers(g, { fuse: opts.fuse ?? true });
  const t1 = performance.now();
  stats.push({ pass: `fuse (${buffers.size} values in buffers)`, nodes: g.nodes.length, ms: t1 - t0 });
  const program = codegen(g, { ...ctx, fuse: opts.fuse, inPlace, buffers });
  stats.push({ pass: `codegen (${program.kernels.length} kernels)`, nodes: g.nodes.length, ms: performance.now() - t1 });
  const done = inPlaceOutputs(program);
  const marked = state.map((u) => {
    const i = inputNodes(g).find((n) => n.attrs.name === u.input)!.id;
    const o = u.output === undefined ? undefined : g.outputs.find((x) => x.name === u.output)!.id;
    return o !== undefined && done.get(o) === i ? { ...u, inPlace: true } : u;
  });
  const result: Program = { ...program, state: marked, stats, arena: opts.plan ?? true };
  // The memory plan is made per binding of the dims when the program runs; here it is reported
  // for static shapes, or for the dims the caller declares (an upper bound, e.g. the batch).
  const dims = opts.dims ?? {};
  if (result.arena && result.buffers.every((b) => b.shape.every((d) => typeof d === "number" || dims[d] !== undefined))) {
    const t2 = performance.now();
    const m = memoryReport(result, dims);
    stats.push({ pass: `plan-memory (arena ${m.arenaBytes} B, naive ${m.naiveBytes} B, lower bound ${m.lowerBound} B)`, nodes: g.nodes.length, ms: performance.now() - t2 });
  }
  return result;
}

function stateUpdates(g: Graph, state: Readonly<Record<string, string | null>>): StateUpdate[] {
  return Object.entries(state).map(([input, output]) => {
    const i = inputNodes(g).find((n) => n.attrs.name === input);
    if (!i) throw new KilnError(`state: "${input}" is not an input of the graph (inputs: ${inputNodes(g).map((n) => n.attrs.name).join(", ")})`);
    if (!isStatic(i.type.shape)) throw new KilnError(`state: input "${input}" ${formatType(i.type)} must have a static shape to stay resident`);
    if (output === null) return { input };
    const o = g.outputs.find((x) => x.name === output);
    if (!o) throw new KilnError(`state: "${output}" (the update of "${input}") is not an output of the graph (outputs: ${g.outputs.map((x) => x.name).join(", ")})`);
    const [ti, to] = [i.type, g.nodes[o.id].type];
    if (ti.dtype !== to.dtype || !shapeEq(ti.shape, to.shape)) throw new KilnError(`state: "${output}" ${formatType(to)} cannot replace input "${input}" ${formatType(ti)}`);
    return { input, output };
  });
}
