/** One thread per output element: the output's expression over the inlined nodes and loads.
 *      let i0 = (wid.y * nwg.x + wid.x) * 64u + lid;   // folded over x and y past 65,535 groups
 *      if (i0 >= total) { return; }
 *      v10[i0] = <value(%10, unravel(i0))>;
 *  For a target that wants several consecutive elements a thread (Target.elementsPerThread, a
 *  CPU rasterizer), the same body in a loop:
 *      let i0 = (wid.y * nwg.x + wid.x) * 64u + lid;
 *      for (var k = 0u; k < 8u; k++) {
 *        let i1 = i0 * 8u + k;
 *        if (i1 >= total) { return; }
 *        v10[i1] = <value(%10, unravel(i1))>;
 *      } */
import { numel } from "../../../src/ir/shape.ts";
import type { Kernel } from "../../program.ts";
import type { KernelBuilder } from "../kernel-builder.ts";

const PER_GROUP = 64;

export function elementwiseKernel(kb: KernelBuilder, what: string): Kernel {
  const shape = kb.node(kb.output).type.shape;
  const total = kb.size(shape);
  const per = kb.target.elementsPerThread;
  const body = (i: string) => {
    kb.w.line(`if (${i} >= ${total}) { return; }`);
    kb.store(i, kb.value(kb.output, kb.unravel(i, shape)));
  };
  const thread = kb.linearIndex(PER_GROUP);
  if (per === 1) body(thread);
  else kb.w.block(`for (var k = 0u; k < ${per}u; k++)`, () => body(kb.let(`${thread} * ${per}u + k`, "i")));
  return kb.finish({ what, workgroupSize: [PER_GROUP], dispatch: { kind: "linear", total: numel(shape), perGroup: PER_GROUP * per } });
}
