/** dce: drop the nodes no output depends on, renumbering the rest (order kept). Inputs stay,
 *  even unused: they are the graph's signature.
 *      %2 = exp %0  (unused);  %3 = neg %0;  return y=%3   →   %2 = neg %0;  return y=%2 */
import { liveNodes } from "../src/ir/live.ts";
import type { Node, ValueId } from "../src/ir/types.ts";
import type { Pass } from "./pass.ts";

export const dce: Pass = {
  name: "dce",
  run(graph) {
    const live = liveNodes(graph);
    graph.nodes.forEach((n) => (live[n.id] ||= n.op === "input"));
    if (live.every(Boolean)) return graph;
    const remap: ValueId[] = [];
    const nodes: Node[] = [];
    for (const n of graph.nodes) {
      if (!live[n.id]) continue;
      remap[n.id] = nodes.length;
      nodes.push({ ...n, id: nodes.length, inputs: n.inputs.map((i) => remap[i]) });
    }
    return { nodes, outputs: graph.outputs.map((o) => ({ ...o, id: remap[o.id] })) };
  },
};
