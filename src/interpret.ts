/** The float64 oracle: runs any graph with each op's reference implementation. Slow, plain and
 *  obviously right; every GPU result is tested against it. */
import { bindDims } from "./ir/bind.ts";
import { describeNode, KilnError } from "./ir/errors.ts";
import { bindShape, formatShape } from "./ir/shape.ts";
import type { Graph, Node, ValueId } from "./ir/types.ts";
import { tensor64, type Tensor64 } from "./ops/tensor64.ts";
import { OPS } from "./ops/table.ts";

/** A tensor on the host: a concrete shape and row-major values (any numeric array). */
export interface HostTensor {
  readonly shape: readonly number[];
  readonly data: ArrayLike<number>;
}

/** Nodes the outputs depend on. */
export function liveNodes(g: Graph): boolean[] {
  const live = new Array<boolean>(g.nodes.length).fill(false);
  for (const o of g.outputs) live[o.id] = true;
  for (let id = g.nodes.length - 1; id >= 0; id--) if (live[id]) for (const i of g.nodes[id].inputs) live[i] = true;
  return live;
}

export function interpret(g: Graph, inputs: Readonly<Record<string, HostTensor>>): Record<string, Tensor64> {
  const env = bindDims(g, Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, v.shape])));
  const live = liveNodes(g);
  const vals = new Map<ValueId, Tensor64>();
  for (const n of g.nodes) {
    if (!live[n.id]) continue;
    const shape = bindShape(n.type.shape, env);
    if (n.op === "input") {
      const { name } = (n as Node<"input">).attrs;
      vals.set(n.id, tensor64(n.type.dtype, shape, inputs[name].data));
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
  }
  return Object.fromEntries(g.outputs.map((o) => [o.name, vals.get(o.id)!]));
}
