/** NaN debugging for fit (`compileModel(..., { debugNans: true })` or KILN_DEBUG_NANS=1, as JAX's
 *  jax_debug_nans): the failing training step is run again node by node in the float64
 *  interpreter (src/interpret.ts) on the same batch and the same weights, each value rounded to
 *  f32 as the GPU would hold it, and the first node whose value is NaN or infinite is named —
 *  its op, its layer and the user's line:
 *      log %14 @ nan.test.ts:31 (bad_log_1) gave NaN (f32[B,4], from finite inputs)
 *  In mixed precision (compiler/precision.ts) the compiled graph is re-run with the values the GPU
 *  stores as f16 (`half`): the first of them past f16's largest finite value, 65504, is named
 *  too — on the GPU it became ±inf, which float64 alone would never show:
 *      add %9 @ amp.test.ts:12 (dense_1) gave 80000 (element 0), past f16's range …  */
import { describeNode } from "../src/ir/errors.ts";
import type { HostTensor } from "../src/ir/host.ts";
import { formatType } from "../src/ir/shape.ts";
import type { Graph, Node, ValueId } from "../src/ir/types.ts";
import { interpret } from "../src/interpret.ts";

/** f16's largest finite value. */
const F16_MAX = 65504;

export const debugNansFromEnv = (): boolean => {
  const v = typeof process === "undefined" ? undefined : process.env.KILN_DEBUG_NANS;
  return v !== undefined && v !== "" && v !== "0" && v !== "false";
};

/** The first non-finite value of `graph` run on `inputs`, described for the user; undefined
 *  when every value is finite in f32. */
export function firstNonFinite(
  graph: Graph,
  inputs: Readonly<Record<string, HostTensor>>,
  half: ReadonlySet<ValueId> = new Set(),
): string | undefined {
  let found: string | undefined;
  interpret(graph, inputs, (n: Node, v) => {
    if (v.dtype !== "f32") return false;
    if (half.has(n.id)) {
      for (let i = 0; i < v.data.length; i++) {
        if (!(Math.abs(v.data[i]) > F16_MAX) || !Number.isFinite(v.data[i])) continue;
        found = `${describeNode(n.op, n.id, n.site)} gave ${Math.fround(v.data[i])} (${formatType(n.type)}, element ${i}), past f16's largest finite value ${F16_MAX}: in mixed precision it is stored as f16, so the GPU held ${v.data[i] > 0 ? "+inf" : "-inf"} (scale the inputs or weights down, or compile with precision: "f32")`;
        return true;
      }
    }
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
