/** Composites folded back into the ONNX operator they spell out, where the match is exact.
 *  Only softmax, as src/api/composites.ts builds it:
 *      m = reduce_max x {axes=[a], keepdims};  d = sub x, stop_gradient m;  e = exp d
 *      y = div e, reduce_sum e {axes=[a], keepdims}          →   y = Softmax(x, axis=a)
 *  (ONNX's Softmax is defined as the same max-shifted quotient since opset 13.) Matmul + add
 *  is left as MatMul, Add: ONNX Runtime fuses those itself, and Gemm would only fit rank 2.
 *  The nodes inside a fold are still exported when something else reads them. */
import type { Graph, Node, ValueId } from "../../src/ir/types.ts";

export interface Fold {
  readonly op: "Softmax";
  readonly input: ValueId;
  readonly axis: number;
}

/** The one axis of a keepdims reduction `op` over `of`, else undefined. */
function reducedAxis(n: Node, op: "reduce_max" | "reduce_sum", of: ValueId): number | undefined {
  if (n.op !== op || n.inputs[0] !== of) return undefined;
  const { axes, keepdims } = n.attrs as { axes: readonly number[]; keepdims: boolean };
  return keepdims && axes.length === 1 ? axes[0] : undefined;
}

function softmaxAt(g: Graph, y: Node): Fold | undefined {
  if (y.op !== "div" || y.type.dtype !== "f32") return undefined;
  const [e, r] = y.inputs.map((i) => g.nodes[i]);
  if (e.op !== "exp") return undefined;
  const axis = reducedAxis(r, "reduce_sum", e.id);
  const d = g.nodes[e.inputs[0]];
  if (axis === undefined || d.op !== "sub") return undefined;
  const [x, s] = d.inputs;
  const shift = g.nodes[s].op === "stop_gradient" ? g.nodes[g.nodes[s].inputs[0]] : g.nodes[s];
  return reducedAxis(shift, "reduce_max", x) === axis ? { op: "Softmax", input: x, axis } : undefined;
}

/** Folds by the node they replace, and which nodes the ONNX graph needs once folded. */
export function findFolds(g: Graph, live: readonly boolean[]): { folds: Map<ValueId, Fold>; needed: boolean[] } {
  const folds = new Map<ValueId, Fold>();
  for (const n of g.nodes) {
    const f = live[n.id] ? softmaxAt(g, n) : undefined;
    if (f) folds.set(n.id, f);
  }
  const needed = new Array<boolean>(g.nodes.length).fill(false);
  for (const o of g.outputs) needed[o.id] = true;
  for (let id = g.nodes.length - 1; id >= 0; id--) {
    if (!needed[id]) continue;
    const f = folds.get(id);
    for (const i of f ? [f.input] : g.nodes[id].inputs) needed[i] = true;
  }
  return { folds, needed };
}
