/** rewrite: rebuild a graph in one forward sweep, letting a rule replace each node — by a value
 *  already rebuilt (x*1 → x) or by new nodes (a folded constant). Ids stay topological; outputs
 *  follow their replacements; values nobody reads any more are left for `dce`. Returns the same
 *  graph when the rule replaced nothing. */
import { describeNode, ShapeError } from "../src/ir/errors.ts";
import { shapeEq } from "../src/ir/shape.ts";
import type { Attrs, Graph, Node, OpKind, TensorType, ValueId } from "../src/ir/types.ts";
import { OPS } from "../src/ops/table.ts";

export class Rebuilder {
  readonly nodes: Node[] = [];

  node(id: ValueId): Node {
    return this.nodes[id];
  }

  /** Append a node; its type comes from the op's rule. */
  add(op: OpKind, inputs: readonly ValueId[], attrs: Attrs, site: string): ValueId {
    const id = this.nodes.length;
    let type: TensorType;
    try {
      type = (OPS[op].infer as (i: readonly TensorType[], a: unknown) => TensorType)(
        inputs.map((i) => this.nodes[i].type),
        attrs,
      );
    } catch (e) {
      if (e instanceof ShapeError) throw new ShapeError(`${describeNode(op, id, site)}: ${e.message}`);
      throw e;
    }
    this.nodes.push({ id, op, inputs, attrs, type, site } as Node);
    return id;
  }
}

/** The rule sees each node with its inputs already remapped; it returns a replacement id or
 *  undefined to keep the node. A replacement must have the node's type. */
export type Rule = (n: Node, b: Rebuilder) => ValueId | undefined;

export function rewrite(graph: Graph, rule: Rule): Graph {
  const b = new Rebuilder();
  const remap: ValueId[] = [];
  let changed = false;
  for (const old of graph.nodes) {
    const inputs = old.inputs.map((i) => remap[i]);
    const moved = inputs.some((i, k) => i !== old.inputs[k]) || b.nodes.length !== old.id;
    const n: Node = moved ? { ...old, id: b.nodes.length, inputs } : old;
    const r = rule(n, b);
    if (r === undefined) {
      b.nodes.push(n);
      remap[old.id] = n.id;
      changed ||= moved;
      continue;
    }
    const t = b.node(r).type;
    if (t.dtype !== old.type.dtype || !shapeEq(t.shape, old.type.shape)) {
      throw new Error(`rewrite: ${describeNode(old.op, old.id, old.site)} replaced by %${r} of another type`);
    }
    remap[old.id] = r;
    changed = true;
  }
  return changed ? { nodes: b.nodes, outputs: graph.outputs.map((o) => ({ ...o, id: remap[o.id] })) } : graph;
}
