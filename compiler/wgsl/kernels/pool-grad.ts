/** max_pool2d_grad and avg_pool2d_grad: one thread per input element, looping over the windows
 *  that contain it (window o has tap w on input i when o = (i + pad − w) / s divides and o is
 *  in range: see `windowAt`), so every thread writes its own element and nothing is scattered:
 *    - avg: acc += g[o] / count(o), with o's count of valid elements as the forward divides it;
 *    - max: rescan window o as the forward does, finding its first maximal position, and take
 *      g[o] if that is this element (one position per window, as the reference).
 *  A 2×2 stride-2 pool visits one window per element; overlapping windows visit a few more. */
import { numel } from "../../../src/ir/shape.ts";
import type { Dim, OpAttrs } from "../../../src/ir/types.ts";
import { lit } from "../../../src/ops/wgsl.ts";
import type { Kernel } from "../../program.ts";
import type { KernelBuilder } from "../kernel-builder.ts";
import { windowAt } from "./conv2d-grad.ts";
import { forEachInWindow, PER_GROUP } from "./pool.ts";

export function poolGradKernel(kb: KernelBuilder, what: string): Kernel {
  const out = kb.node(kb.output);
  const a = out.attrs as OpAttrs["max_pool2d_grad"];
  const isMax = out.op === "max_pool2d_grad";
  const [ix, ig] = isMax ? out.inputs : [undefined, out.inputs[0]];
  const [, oh, ow] = kb.node(ig).type.shape as readonly [Dim, number, number, number];
  const shape = out.type.shape;
  const [, h, w] = shape as readonly [Dim, number, number, number];
  const [kh, kw] = a.window;
  const [top, bottom, left, right] = a.padding;
  const counted = !isMax && a.padding.some((p) => p > 0);
  // Valid elements of window o along one axis, in padded coordinates: [o·s, o·s + k) ∩ [before, before + len).
  const count = (o: string, s: number, k: number, before: number, after: number, len: number) => {
    if (before + after === 0) return `${k}u`;
    const start = s === 1 ? o : `${o} * ${s}u`;
    return `(min(${start} + ${k}u, ${before + len}u) - max(${start}, ${before}u))`;
  };

  const i = kb.linearIndex(PER_GROUP);
  kb.w.line(`if (${i} >= ${kb.size(shape)}) { return; }`);
  const [b, y, x, c] = kb.unravel(i, shape);
  kb.w.line("var acc = 0.0f;");
  kb.w.block(`for (var wy = 0u; wy < ${kh}u; wy++)`, () => {
    const sy = windowAt(kb, y, "wy", 1, top, a.strides[0], oh);
    kb.w.block(`if (${sy.hit.join(" && ")})`, () => {
      kb.w.block(`for (var wx = 0u; wx < ${kw}u; wx++)`, () => {
        const sx = windowAt(kb, x, "wx", 1, left, a.strides[1], ow);
        kb.w.block(`if (${sx.hit.join(" && ")})`, () => {
          const gv = kb.value(ig, [b, sy.o, sx.o, c]);
          if (ix !== undefined) {
            kb.w.line(`var m = ${lit(-Infinity, "f32")};`, "var fy = 0u;", "var fx = 0u;", "var found = false;");
            forEachInWindow(kb, a, [h, w], [sy.o, sx.o], ["py", "px"], (ih, iw) => {
              const v = kb.let(kb.value(ix, [b, ih, iw, c]), "v");
              kb.w.block(`if (!found || ${v} > m)`, () => kb.w.line(`m = ${v};`, `fy = ${ih};`, `fx = ${iw};`, "found = true;"));
            });
            kb.w.line(`if (fy == ${y} && fx == ${x}) { acc += ${gv}; }`);
          } else if (counted) {
            const n = `f32(${count(sy.o, a.strides[0], kh, top, bottom, h)} * ${count(sx.o, a.strides[1], kw, left, right, w)})`;
            kb.w.line(`acc += ${gv} / ${n};`);
          } else {
            kb.w.line(`acc += ${gv};`);
          }
        });
      });
    });
  });
  kb.store(i, isMax || counted ? "acc" : `acc / ${lit(kh * kw, "f32")}`);
  return kb.finish({ what, workgroupSize: [PER_GROUP], dispatch: { kind: "linear", total: numel(shape), perGroup: PER_GROUP } });
}
