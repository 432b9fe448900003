/** max_pool2d and avg_pool2d: one thread per output element, looping over its window. Windows
 *  are small (2×2, 3×3) and neighbouring outputs share few inputs, so unlike the GEMMs there is
 *  nothing for workgroup memory to reuse. Positions in the padding wrap past H or W in u32 and
 *  are skipped; avg divides by the number of valid positions (see src/ops/conv.ts).
 *      for (var wy = 0u; wy < 2u; wy++) {
 *        let h5 = c2 * 2u + wy - 1u;
 *        if (h5 < 28u) { for (var wx …) { … acc = max(acc, v1[…]); } }
 *      } */
import { numel } from "../../../src/ir/shape.ts";
import type { Dim, OpAttrs } from "../../../src/ir/types.ts";
import { lit } from "../../../src/ops/wgsl.ts";
import type { Kernel } from "../../program.ts";
import type { KernelBuilder } from "../kernel-builder.ts";
import { window } from "./conv2d.ts";

export const PER_GROUP = 64;

export function poolKernel(kb: KernelBuilder, what: string): Kernel {
  const out = kb.node(kb.output);
  const a = out.attrs as OpAttrs["max_pool2d"];
  const [ix] = out.inputs;
  const [, h, w] = kb.node(ix).type.shape as readonly [Dim, number, number, Dim];
  const shape = out.type.shape;
  const isMax = out.op === "max_pool2d";
  const counted = !isMax && a.padding.some((p) => p > 0);

  const i = kb.linearIndex(PER_GROUP);
  kb.w.line(`if (${i} >= ${kb.size(shape)}) { return; }`);
  const [b, oh, ow, c] = kb.unravel(i, shape);
  kb.w.line(`var acc = ${isMax ? lit(-Infinity, "f32") : "0.0f"};`);
  if (counted) kb.w.line("var count = 0.0f;");
  forEachInWindow(kb, a, [h, w], [oh, ow], ["wy", "wx"], (ih, iw) => {
    const v = kb.value(ix, [b, ih, iw, c]);
    kb.w.line(isMax ? `acc = kiln_max(acc, ${v});` : `acc += ${v};`);
    if (counted) kb.w.line("count += 1.0f;");
  });
  const mean = counted ? "acc / count" : `acc / ${lit(a.window[0] * a.window[1], "f32")}`;
  kb.store(i, isMax ? "acc" : mean);
  return kb.finish({ what, workgroupSize: [PER_GROUP], dispatch: { kind: "linear", total: numel(shape), perGroup: PER_GROUP } });
}

/** Loops (variables `vy`, `vx`) over the valid positions (ih, iw) of the window of output
 *  position (oh, ow) in an input of spatial size [h, w]; also used by ./pool-grad.ts. */
export function forEachInWindow(
  kb: KernelBuilder,
  a: OpAttrs["max_pool2d"],
  [h, w]: readonly [number, number],
  [oh, ow]: readonly string[],
  [vy, vx]: readonly [string, string],
  visit: (ih: string, iw: string) => void,
): void {
  const [top, bottom, left, right] = a.padding;
  kb.w.block(`for (var ${vy} = 0u; ${vy} < ${a.window[0]}u; ${vy}++)`, () => {
    const ih = kb.let(window(oh, a.strides[0], vy, 1, top), "h");
    const row = () =>
      kb.w.block(`for (var ${vx} = 0u; ${vx} < ${a.window[1]}u; ${vx}++)`, () => {
        const iw = kb.let(window(ow, a.strides[1], vx, 1, left), "w");
        if (left + right > 0) kb.w.block(`if (${iw} < ${w}u)`, () => visit(ih, iw));
        else visit(ih, iw);
      });
    if (top + bottom > 0) kb.w.block(`if (${ih} < ${h}u)`, row);
    else row();
  });
}
