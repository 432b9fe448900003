/** Which forward values a compiled training step keeps for its backward pass.
 *
 *  Forward: the nodes the loss depends on — the loss being the output named "loss", else "out",
 *  else the first output. Backward: every other node (the gradients and the updates built from
 *  them). A value is saved for the backward pass when it is computed in the forward part (a
 *  kernel's output, not an input or constant data), lives in a buffer, and is bound by a kernel
 *  whose output is in the backward part: it must stay in memory from its forward kernel until
 *  that backward kernel has run. Forward values that backward kernels recompute (inlined
 *  elementwise work, such as a ReLU mask taken from the pre-activation) are not saved; what
 *  they are computed from is. A graph without gradients has no backward part in this sense
 *  unless it has outputs besides the loss; those then count as "backward". */
import type { DimEnv } from "../src/ir/shape.ts";
import type { Graph, ValueId } from "../src/ir/types.ts";
import { bytesOf } from "./cost.ts";
import type { Program } from "./program.ts";

export interface SavedValue {
  readonly value: ValueId;
  readonly bytes: number;
  /** The backward kernels that read it, in schedule order. */
  readonly readers: readonly string[];
}

/** The output the forward part is defined by. */
export function lossOutput(graph: Graph): { name: string; id: ValueId } | undefined {
  const by = (name: string) => graph.outputs.find((o) => o.name === name);
  return by("loss") ?? by("out") ?? graph.outputs[0];
}

/** Forward membership per node: true when the loss depends on it. */
export function forwardNodes(graph: Graph): boolean[] {
  const fwd = new Array<boolean>(graph.nodes.length).fill(false);
  const loss = lossOutput(graph);
  if (!loss) return fwd;
  fwd[loss.id] = true;
  for (let id = loss.id; id >= 0; id--) if (fwd[id]) for (const i of graph.nodes[id].inputs) fwd[i] = true;
  return fwd;
}

export function savedForBackward(program: Program, env: DimEnv): SavedValue[] {
  const { graph } = program;
  const fwd = forwardNodes(graph);
  const computed = new Set(program.buffers.filter((b) => b.role === "temp").map((b) => b.value));
  const readers = new Map<ValueId, string[]>();
  for (const k of program.kernels) {
    if (fwd[k.output]) continue;
    for (const b of k.bindings) {
      if (b.value === (k.inPlace ?? k.output) || !fwd[b.value] || !computed.has(b.value)) continue;
      readers.set(b.value, [...(readers.get(b.value) ?? []), k.name]);
    }
  }
  return [...readers]
    .sort(([a], [b]) => a - b)
    .map(([value, rs]) => ({ value, bytes: bytesOf(graph.nodes[value].type.shape, env), readers: rs }));
}
