/** conv2d as an implicit GEMM on the shared GEMM writers (./matmul.ts), with no im2col buffer:
 *      C[m, n] = Σ_k A[m, k] · F[k, n]      m = (b, oh, ow) over N·OH·OW, n = co, k = (kh, kw, ci)
 *  A is the input seen through the window: the tile loader turns (m, k) into
 *      ih = oh·sh + kh·dh − top,  iw = ow·sw + kw·dw − left
 *  in u32, where a position in the padding wraps past H (or W): the load uses clamped coordinates
 *  (always in bounds) and `select` makes it 0. The HWIO filter is a row-major [K, Cout] matrix,
 *  so B(k, n) is element k·Cout + n; the output [N,OH,OW,Cout] is C row-major.
 *
 *  With `groups` g > 1 the blocks are the GEMM's batch z: n = the channel within block z
 *  (Cout/g of them), k = (kh, kw, ci) over the block's C/g channels, which are input channels
 *  z·C/g + ci; the filter's column and the output's channel are z·Cout/g + n. */
import { sizeOf } from "../../../src/ir/shape.ts";
import type { Dim, OpAttrs, ValueId } from "../../../src/ir/types.ts";
import type { Kernel } from "../../program.ts";
import type { KernelBuilder } from "../kernel-builder.ts";
import { gemm } from "./matmul.ts";

export function conv2dKernel(kb: KernelBuilder, what: string): Kernel {
  const out = kb.node(kb.op);
  const a = out.attrs as OpAttrs["conv2d"];
  const [ix, iff] = out.inputs;
  const fshape = kb.node(iff).type.shape as readonly number[];
  const [kh, kw, c, co] = fshape;
  const groups = a.groups ?? 1;
  const rows = out.type.shape.slice(0, 3);
  const cog = co / groups;
  // Both operands four elements at a time (./gemm-grouped.ts): the input's channels and the
  // filter's output channels multiples of 4 in buffers of their own. Four consecutive k at a
  // multiple of 4 are four consecutive channels of one window tap, so A(m, k…k+3) is one vec4 of
  // the input (or 0 in the padding); B(k, n…n+3) is one of the filter's row k.
  const vec4 = groups === 1 && kb.canValue4(ix) && kb.canValue4(iff);
  return gemm(kb, what, {
    ...(vec4 ? { vec4: { a: "k", b: "n" } } : {}),
    rows: sizeOf(rows),
    cols: sizeOf([cog]),
    batch: sizeOf(groups === 1 ? [] : [groups]),
    depth: sizeOf([kh * kw * c]),
    M: kb.size(rows),
    N: `${cog}u`,
    K: `${kh * kw * c}u`,
    matrix: (z) => ({
      loadA: (m, k) => {
        const [b, oh, ow] = kb.unravel(m, rows, "p");
        const [y, x, ci] = kb.unravel(k, [kh, kw, c], "r");
        return windowValue(kb, ix, a, [b, oh, ow], [y, x], inGroup(groups, z, c, ci));
      },
      // Unravelling the flat filter index lets an inlined filter (a reshape, say) read its own
      // coordinates; for a filter in a buffer the load is v[k·Cout + n] and the lets are pruned.
      loadB: (k, n) => kb.value(iff, kb.unravel(`(${k} * ${co}u + ${inGroup(groups, z, cog, n)})`, fshape)),
      ...(vec4
        ? {
            loadA4: (m: string, k: string) => {
              const [b, oh, ow] = kb.unravel(m, rows, "p");
              const [y, x, ci] = kb.unravel(k, [kh, kw, c], "r");
              return windowValue(kb, ix, a, [b, oh, ow], [y, x], ci, true);
            },
            loadB4: (k: string, n: string) => kb.value4(iff, kb.unravel(`(${k} * ${co}u + ${n})`, fshape)),
          }
        : {}),
      store: (m, n, v) => {
        const o = inGroup(groups, z, cog, n);
        kb.result(() => [...kb.unravel(m, rows, "s"), o], `${m} * ${co}u + ${o}`, v);
      },
    }),
  });
}

/** Index `i` of block `z` of `per` elements, `z·per + i`: a channel of a grouped conv (just `i`
 *  when there is one group). Also used by ./conv2d-grad.ts. */
export const inGroup = (groups: number, z: string, per: number, i: string): string => (groups === 1 ? i : `(${z} * ${per}u + ${i})`);

/** A(m, k) above, also the A of conv2d_grad_filter: input `ix` at tap (kh, kw) of the window of
 *  output position (b, oh, ow), channel ci; 0 in the padding. With `four`, channels ci…ci+3 as
 *  one vec4 (KernelBuilder.value4; ci a multiple of 4). */
export function windowValue(
  kb: KernelBuilder,
  ix: ValueId,
  a: OpAttrs["conv2d"],
  [b, oh, ow]: readonly string[],
  [kh, kw]: readonly string[],
  ci: string,
  four = false,
): string {
  const [, h, w] = kb.node(ix).type.shape as readonly [Dim, number, number, number];
  const ih = kb.let(window(oh, a.strides[0], kh, a.dilations[0], a.padding[0]), "h");
  const iw = kb.let(window(ow, a.strides[1], kw, a.dilations[1], a.padding[2]), "w");
  const padH = a.padding[0] + a.padding[1] > 0;
  const padW = a.padding[2] + a.padding[3] > 0;
  const load = (c: readonly string[]) => (four ? kb.value4(ix, c) : kb.value(ix, c));
  if (!padH && !padW) return load([b, ih, iw, ci]);
  const cy = padH ? `min(${ih}, ${h - 1}u)` : ih;
  const cx = padW ? `min(${iw}, ${w - 1}u)` : iw;
  const inside = [...(padH ? [`${ih} < ${h}u`] : []), ...(padW ? [`${iw} < ${w}u`] : [])].join(" && ");
  return `select(${four ? "vec4<f32>()" : "0.0f"}, ${load([b, cy, cx, ci])}, ${inside})`;
}

/** `o·s + k·d − pad` as u32 WGSL, leaving out the terms that vanish. A constant is folded here:
 *  `0u - 2u` would be a const-expression overflow, which WGSL rejects. */
export function window(o: string, s: number, k: string, d: number, pad: number): string {
  const term = (v: string, f: number) => (v === "0u" ? [] : [f === 1 ? v : `${v} * ${f}u`]);
  const sum = [...term(o, s), ...term(k, d)].join(" + ");
  if (!sum) return `${-pad >>> 0}u`;
  return pad ? `${sum} - ${pad}u` : sum;
}
