/** The compiler's table of contents: the passes, in order, then codegen.
 *  KILN_DUMP=<pass>[,<pass>…] (or "all") prints the text IR after those passes. */
import { printGraph } from "../src/ir/print.ts";
import type { Graph } from "../src/ir/types.ts";
import { verify } from "../src/ir/verify.ts";
import { codegen } from "./codegen.ts";
import { inferShapes } from "./infer-shapes.ts";
import { legalize } from "./legalize.ts";
import type { Pass, PassContext } from "./pass.ts";
import type { Program } from "./program.ts";

export const PASSES: readonly Pass[] = [
  inferShapes,
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
