/** The float64 oracle: runs any graph with each op's reference implementation. Slow, plain and
 *  obviously right; every GPU result is tested against it. */
import { bindDims } from "./ir/bind.ts";
import type { HostTensor } from "./ir/host.ts";
import { liveNodes } from "./ir/live.ts";
import { describeNode, KilnError } from "./ir/errors.ts";
import { bindShape, formatShape } from "./ir/shape.ts";
import type { Graph, Node, ValueId } from "./ir/types.ts";
import { tensor64, type Tensor64 } from "./ops/tensor64.ts";
import { OPS } from "./ops/table.ts";

/** `watch` sees every value as it is made (inputs included); returning true stops the run, which
 *  then returns no outputs (training/debug-nans.ts finds the first non-finite value this way). */
export function interpret(
  g: Graph,
  inputs: Readonly<Record<string, HostTensor>>,
  watch?: (node: Node, value: Tensor64) => boolean | void,
): Record<string, Tensor64> {
  const env = bindDims(g, Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, v.shape])));
  const live = liveNodes(g);
  const vals = new Map<ValueId, Tensor64>();
  for (const n of g.nodes) {
    if (!live[n.id]) continue;
    const shape = bindShape(n.type.shape, env);
    if (n.op === "input") {
      const { name } = (n as Node<"input">).attrs;
      vals.set(n.id, tensor64(n.type.dtype, shape, inputs[name].data));
      if (watch?.(n, vals.get(n.id)!)) return {};
      continue;
    }
    const ins = n.inputs.map((i) => vals.get(i)!);
    let r: Tensor64;
    try {
      r = (OPS[n.op].reference as (i: Tensor64[], a: unknown, o: unknown) => Tensor64)(ins, n.attrs, { dtype: n.type.dtype, shape });
    } catch (e) {
      throw new KilnError(`${describeNode(n.op, n.id, n.site)}: ${(e as Error).message}`);
    }
    if (r.shape.length !== shape.length || r.shape.some((d, a) => d !== shape[a])) {
      throw new KilnError(`${describeNode(n.op, n.id, n.site)}: reference gave ${formatShape(r.shape)}, inferred ${formatShape(shape)}`);
    }
    vals.set(n.id, r);
    if (watch?.(n, r)) return {};
  }
  return Object.fromEntries(g.outputs.map((o) => [o.name, vals.get(o.id)!]));
}
