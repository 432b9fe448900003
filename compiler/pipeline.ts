/** The compiler's table of contents: the passes, in order, then codegen.
 *  KILN_DUMP=<pass>[,<pass>…] (or "all") prints the text IR after those passes. */
import { printGraph } from "../src/ir/print.ts";
import type { Graph } from "../src/ir/types.ts";
import { verify } from "../src/ir/verify.ts";
import { codegen } from "./codegen.ts";
import { cse } from "./cse.ts";
import { dce } from "./dce.ts";
import { foldConstants } from "./fold-constants.ts";
import { inferShapes } from "./infer-shapes.ts";
import { legalize } from "./legalize.ts";
import type { Pass, PassContext } from "./pass.ts";
import type { Program } from "./program.ts";
import { simplify } from "./simplify.ts";

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

export interface CompileOptions extends Partial<PassContext> {
  /** Verify the graph between passes (tests do; it costs a re-inference per pass). */
  readonly verifyEach?: boolean;
}

export function compile(graph: Graph, opts: CompileOptions = {}): Program {
  const ctx: PassContext = { maxStorageBuffers: opts.maxStorageBuffers ?? 8 };
  const dump = new Set((process.env.KILN_DUMP ?? "").split(",").filter(Boolean));
  verify(graph);
  let g = graph;
  for (const pass of PASSES) {
    g = pass.run(g, ctx);
    if (opts.verifyEach) verify(g);
    if (dump.has(pass.name) || dump.has("all")) console.error(`--- after ${pass.name}\n${printGraph(g)}`);
  }
  return codegen(g, ctx);
}
