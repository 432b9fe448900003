/** NaN debugging for fit (`compileModel(..., { debugNans: true })` or KILN_DEBUG_NANS=1, as JAX's
 *  jax_debug_nans): the failing training step is run again node by node in the float64
 *  interpreter (src/interpret.ts) on the same batch and the same weights, each value rounded to
 *  f32 as the GPU would hold it, and the first node whose value is NaN or infinite is named —
 *  its op, its layer and the user's line:
 *      log %14 @ nan.test.ts:31 (bad_log_1) gave NaN (f32[B,4], from finite inputs) */
import { describeNode } from "../src/ir/errors.ts";
import type { HostTensor } from "../src/ir/host.ts";
import { formatType } from "../src/ir/shape.ts";
import type { Graph, Node } from "../src/ir/types.ts";
import { interpret } from "../src/interpret.ts";

export const debugNansFromEnv = (): boolean => {
  const v = typeof process === "undefined" ? undefined : process.env.KILN_DEBUG_NANS;
  return v !== undefined && v !== "" && v !== "0" && v !== "false";
};

/** The first non-finite value of `graph` run on `inputs`, described for the user; undefined
 *  when every value is finite in f32. */
export function firstNonFinite(graph: Graph, inputs: Readonly<Record<string, HostTensor>>): string | undefined {
  let found: string | undefined;
  interpret(graph, inputs, (n: Node, v) => {
    if (v.dtype !== "f32") return false;
    for (let i = 0; i < v.data.length; i++) {
      const f = Math.fround(v.data[i]);
      if (Number.isFinite(f)) continue;
      const what = Number.isNaN(f) ? "NaN" : f > 0 ? "+inf" : "-inf";
      if (n.op === "input") {
        const name = (n as Node<"input">).attrs.name;
        found =
          name === "x" || name === "y"
            ? `the batch's ${name} holds ${what} (element ${i}): the NaN comes from the data`
            : `the weight ${name} already holds ${what} (element ${i}) before this step`;
      } else {
        found = `${describeNode(n.op, n.id, n.site)} gave ${what} (${formatType(n.type)}, element ${i}) from finite inputs`;
      }
      return true;
    }
    return false;
  });
  return found;
}
