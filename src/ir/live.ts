/** Liveness: the nodes a graph's outputs depend on (one backward sweep over the topological order). */
import type { Graph } from "./types.ts";

export function liveNodes(g: Graph): boolean[] {
  const live = new Array<boolean>(g.nodes.length).fill(false);
  for (const o of g.outputs) live[o.id] = true;
  for (let id = g.nodes.length - 1; id >= 0; id--) if (live[id]) for (const i of g.nodes[id].inputs) live[i] = true;
  return live;
}
