/** The error bound of GEMM outputs against the float64 reference, shared by the matmul, GEMM
 *  writer and mixed-precision suites.
 *
 *  Each output is a dot product of length K of f32 inputs. Summed in f32 in any order (tiles,
 *  groups of four k, FMA contraction or not), it is within γ_K·Σ|a_i·b_i| of the exact value,
 *  with γ_K = K·u/(1 − K·u) and u = 2^-24 (Higham, Accuracy and Stability, §3.1); (K+1)·u covers
 *  it. A per-element bound on Σ|a_i·b_i| (the same graph on |inputs|) rather than on |result|
 *  keeps it tight where positive and negative products cancel, and an indexing bug is still off
 *  by whole products, far beyond it. */
import { expect } from "vitest";
import type { CompileOptions } from "../../compiler/pipeline.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import { printGraph } from "../../src/ir/print.ts";
import type { Graph } from "../../src/ir/types.ts";
import type { OutputTensor } from "../../runtime/execute.ts";
import { runGpu } from "./gpu.ts";

/** Throw, naming the element and printing the graph, unless every output of `gpu` is within
 *  (extra + (k + 1)·2⁻²⁴)·Σ|terms| of float64; `extra` adds a relative error of the inputs'
 *  own (an f16 store's u, say). */
export function checkDotBound(
  graph: Graph,
  inputs: Readonly<Record<string, HostTensor>>,
  gpu: Readonly<Record<string, OutputTensor>>,
  k: number,
  extra = 0,
): void {
  const ref = interpret(graph, inputs);
  const abs = Object.fromEntries(Object.entries(inputs).map(([n, t]) => [n, { shape: t.shape, data: Array.from(t.data, Math.abs) }]));
  const mag = interpret(graph, abs);
  for (const [name, r] of Object.entries(ref)) {
    expect(gpu[name].shape).toEqual(r.shape);
    for (let i = 0; i < r.data.length; i++) {
      const bound = (extra + (k + 1) * 2 ** -24) * mag[name].data[i] + 1e-30;
      const err = Math.abs(gpu[name].data[i] - r.data[i]);
      if (!(err <= bound))
        throw new Error(`${name}[${i}]: gpu ${gpu[name].data[i]}, reference ${r.data[i]}, bound ${bound}\n${printGraph(graph)}`);
    }
  }
}

/** Run `graph` on Dawn (compiled with `opts`) and check it with `checkDotBound`. */
export async function expectDotBound(
  graph: Graph,
  inputs: Readonly<Record<string, HostTensor>>,
  k: number,
  opts?: CompileOptions,
): Promise<void> {
  checkDotBound(graph, inputs, await runGpu(graph, inputs, opts), k);
}
