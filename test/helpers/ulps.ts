/** Dawn against the float64 reference for graphs of sums of products (matmul, conv2d, linear
 *  pools and their gradients), within a bound in units u = 2^-24 of each element's Σ|terms|.
 *  Running the same graph on |inputs| adds every term's magnitude, so it gives Σ|terms| per
 *  element. A sum of n products in f32, in any order or tree, is within γ_n·Σ|terms| of the
 *  exact value, γ_n = n·u/(1 − n·u) (Higham, Accuracy and Stability, §3.1): ulps = the longest
 *  chain of additions + 1 covers it. Bounding by Σ|terms| instead of |result| stays tight where
 *  terms cancel; an indexing bug is off by whole terms, far beyond it. */
import type { CompileOptions } from "../../compiler/pipeline.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import { printGraph } from "../../src/ir/print.ts";
import type { Graph } from "../../src/ir/types.ts";
import { runGpu } from "./gpu.ts";

/** `selectors`: inputs that only choose which terms count (max_pool2d_grad's x); they keep
 *  their values in the magnitude run. `opts`: how to compile (a target, say). */
export async function expectWithinUlps(
  graph: Graph,
  inputs: Readonly<Record<string, HostTensor>>,
  ulps: number,
  selectors: readonly string[] = [],
  opts?: CompileOptions,
): Promise<void> {
  const ref = interpret(graph, inputs);
  const abs = Object.fromEntries(
    Object.entries(inputs).map(([n, t]) => [n, selectors.includes(n) ? t : { shape: t.shape, data: Array.from(t.data, Math.abs) }]),
  );
  const mag = interpret(graph, abs);
  const gpu = await runGpu(graph, inputs, opts);
  for (const [name, r] of Object.entries(ref)) {
    if (gpu[name].shape.join() !== r.shape.join()) throw new Error(`${name}: gpu shape [${gpu[name].shape}], reference [${r.shape}]`);
    for (let i = 0; i < r.data.length; i++) {
      const bound = ulps * 2 ** -24 * mag[name].data[i];
      const err = Math.abs(gpu[name].data[i] - r.data[i]);
      if (!(err <= bound))
        throw new Error(`${name}[${i}]: gpu ${gpu[name].data[i]}, reference ${r.data[i]}, bound ${bound}\n${printGraph(graph)}`);
    }
  }
}
