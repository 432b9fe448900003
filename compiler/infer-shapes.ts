/** inferShapes: recompute every node's type from its inputs with the op rules, so a graph built
 *  by hand, parsed from text or rewritten by a pass carries consistent types. A rule's error is
 *  reported at the node, with its site. Returns the same graph when every type already holds. */
import { describeNode, ShapeError } from "../src/ir/errors.ts";
import { shapeEq } from "../src/ir/shape.ts";
import type { Node, TensorType } from "../src/ir/types.ts";
import { OPS } from "../src/ops/table.ts";
import type { Pass } from "./pass.ts";

export const inferShapes: Pass = {
  name: "infer-shapes",
  run(graph) {
    let changed = false;
    const nodes: Node[] = [];
    for (const n of graph.nodes) {
      let type: TensorType;
      try {
        type = (OPS[n.op].infer as (i: readonly TensorType[], a: unknown) => TensorType)(
          n.inputs.map((i) => nodes[i].type),
          n.attrs,
        );
      } catch (e) {
        if (e instanceof ShapeError) throw new ShapeError(`${describeNode(n.op, n.id, n.site)}: ${e.message}`);
        throw e;
      }
      const same = type.dtype === n.type.dtype && shapeEq(type.shape, n.type.shape);
      nodes.push(same ? n : { ...n, type });
      changed ||= !same;
    }
    return changed ? { ...graph, nodes } : graph;
  },
};
