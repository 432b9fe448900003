/** One thread per output element: the output's expression over the inlined nodes and loads.
 *      let i0 = (wid.y * nwg.x + wid.x) * 64u + lid;   // folded over x and y past 65,535 groups
 *      if (i0 >= total) { return; }
 *      v10[i0] = <value(%10, unravel(i0))>; */
import { numel } from "../../../src/ir/shape.ts";
import type { Kernel } from "../../program.ts";
import type { KernelBuilder } from "../kernel-builder.ts";

const PER_GROUP = 64;

export function elementwiseKernel(kb: KernelBuilder, what: string): Kernel {
  const shape = kb.node(kb.output).type.shape;
  const total = kb.size(shape);
  const i = kb.linearIndex(PER_GROUP);
  kb.w.line(`if (${i} >= ${total}) { return; }`);
  const coords = kb.unravel(i, shape);
  kb.store(i, kb.value(kb.output, coords));
  return kb.finish({ what, workgroupSize: [PER_GROUP], dispatch: { kind: "linear", total: numel(shape), perGroup: PER_GROUP } });
}
