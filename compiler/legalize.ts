/** legalize: rewrite what a kernel could never bind. A concat reads all its inputs in one
 *  kernel, so one with more inputs than the storage-buffer limit allows (less the output) is
 *  split into a tree of concats:
 *      %12 = concat %0, …, %11 axis=0   (limit 8)
 *        → %12 = concat %0…%6;  %13 = concat %7…%11;  %14 = concat %12, %13
 *  Codegen then materializes the inner concats where a consumer would bind too many buffers. */
import type { Node, OpAttrs, ValueId } from "../src/ir/types.ts";
import { OPS } from "../src/ops/table.ts";
import type { Pass } from "./pass.ts";

export const legalize: Pass = {
  name: "legalize",
  run(graph, ctx) {
    const width = ctx.maxStorageBuffers - 1;
    if (!graph.nodes.some((n) => n.op === "concat" && n.inputs.length > width)) return graph;
    const nodes: Node[] = [];
    const remap: ValueId[] = [];
    const push = (n: Omit<Node, "id">): ValueId => {
      nodes.push({ ...n, id: nodes.length } as Node);
      return nodes.length - 1;
    };
    for (const n of graph.nodes) {
      let ins = n.inputs.map((i) => remap[i]);
      if (n.op === "concat") {
        const attrs = n.attrs as OpAttrs["concat"];
        while (ins.length > width) {
          const parts: ValueId[] = [];
          for (let i = 0; i < ins.length; i += width) {
            const chunk = ins.slice(i, i + width);
            parts.push(
              chunk.length === 1
                ? chunk[0]
                : push({
                    op: "concat",
                    inputs: chunk,
                    attrs,
                    site: n.site,
                    type: OPS.concat.infer(
                      chunk.map((c) => nodes[c].type),
                      attrs,
                    ),
                  }),
            );
          }
          ins = parts;
        }
      }
      remap[n.id] = push({ ...n, inputs: ins });
    }
    return { nodes, outputs: graph.outputs.map((o) => ({ ...o, id: remap[o.id] })) };
  },
};
