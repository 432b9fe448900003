/** conv2d's gradients as implicit GEMMs on the shared GEMM writers (./matmul.ts), like conv2d.
 *
 *  conv2d_grad_filter: the filter is the GEMM's output matrix,
 *      df[m, n] = Σ_k X[m, k] · G[k, n]    m = (kh, kw, ci), n = co, k = (b, oh, ow) over N·OH·OW
 *  X[m, k] is conv2d's windowed input (the same loader, transposed roles); G is the cotangent as
 *  a row-major [N·OH·OW, Cout] matrix. The reduction runs over the batch, so it may be symbolic.
 *
 *  conv2d_grad_input: each input position gathers the taps that read it,
 *      dx[m, n] = Σ_k G'[m, k] · F'[k, n]  m = (b, h, w) over N·H·W, n = ci, k = (kh, kw, co)
 *  G'[m, k] = g[b, oh, ow, co] for the output position whose window has tap (kh, kw) on (h, w):
 *      oh·sh + kh·dh − top = h  ⇔  oh = (h + top − kh·dh) / sh
 *  when that divides and oh < OH (likewise for ow); else 0. F'[k, n] = f[kh, kw, n, co].
 *
 *  With `groups` g > 1 both run block z of the channels as GEMM batch z, as conv2d does
 *  (./conv2d.ts): the filter gradient's columns and the cotangent's channels are z·Cout/g + n,
 *  the input's channels z·C/g + ci. */
import { sizeOf } from "../../../src/ir/shape.ts";
import type { Dim, OpAttrs } from "../../../src/ir/types.ts";
import type { Kernel } from "../../program.ts";
import type { KernelBuilder } from "../kernel-builder.ts";
import { inGroup, windowValue } from "./conv2d.ts";
import { gemm } from "./matmul.ts";

export function conv2dGradFilterKernel(kb: KernelBuilder, what: string): Kernel {
  const out = kb.node(kb.op);
  const a = out.attrs as OpAttrs["conv2d_grad_filter"];
  const [ix, ig] = out.inputs;
  const gshape = kb.node(ig).type.shape;
  const [kh, kw, c, co] = out.type.shape as readonly number[];
  const groups = a.groups ?? 1;
  const cog = co / groups;
  const red = gshape.slice(0, 3);
  return gemm(kb, what, {
    rows: sizeOf([kh * kw * c]),
    cols: sizeOf([cog]),
    batch: sizeOf(groups === 1 ? [] : [groups]),
    depth: sizeOf(red),
    M: `${kh * kw * c}u`,
    N: `${cog}u`,
    K: kb.size(red),
    matrix: (z) => ({
      loadA: (m, k) => {
        const [y, x, ci] = kb.unravel(m, [kh, kw, c], "r");
        const [b, oh, ow] = kb.unravel(k, red, "p");
        return windowValue(kb, ix, a, [b, oh, ow], [y, x], inGroup(groups, z, c, ci));
      },
      // As conv2d's filter: an inlined g reads its own coordinates, a buffer reads v[k·Cout + n].
      loadB: (k, n) => kb.value(ig, kb.unravel(`(${k} * ${co}u + ${inGroup(groups, z, cog, n)})`, gshape)),
      store: (m, n, v) => {
        const o = inGroup(groups, z, cog, n);
        kb.result(() => [...kb.unravel(m, [kh, kw, c], "s"), o], `${m} * ${co}u + ${o}`, v);
      },
    }),
  });
}

export function conv2dGradInputKernel(kb: KernelBuilder, what: string): Kernel {
  const out = kb.node(kb.op);
  const a = out.attrs as OpAttrs["conv2d_grad_input"];
  const [ig, iff] = out.inputs;
  const [, oh, ow, co] = kb.node(ig).type.shape as readonly [Dim, number, number, number];
  const [kh, kw, c] = kb.node(iff).type.shape as readonly number[];
  const groups = a.groups ?? 1;
  const cog = co / groups;
  const rows = out.type.shape.slice(0, 3);
  const cin = c * groups;
  return gemm(kb, what, {
    rows: sizeOf(rows),
    cols: sizeOf([c]),
    batch: sizeOf(groups === 1 ? [] : [groups]),
    depth: sizeOf([kh * kw * cog]),
    M: kb.size(rows),
    N: `${c}u`,
    K: `${kh * kw * cog}u`,
    matrix: (z) => ({
      loadA: (m, k) => {
        const [b, y, x] = kb.unravel(m, rows, "p");
        const [p, t, r] = kb.unravel(k, [kh, kw, cog], "r");
        const q = inGroup(groups, z, cog, r);
        const sy = windowAt(kb, y, p, a.dilations[0], a.padding[0], a.strides[0], oh);
        const sx = windowAt(kb, x, t, a.dilations[1], a.padding[2], a.strides[1], ow);
        // Clamped coordinates keep the load in bounds; select drops the misses.
        const v = kb.value(ig, [b, `min(${sy.o}, ${oh - 1}u)`, `min(${sx.o}, ${ow - 1}u)`, q]);
        return `select(0.0f, ${v}, ${[...sy.hit, ...sx.hit].join(" && ")})`;
      },
      loadB: (k, n) => {
        const [p, t, r] = kb.unravel(k, [kh, kw, cog], "r");
        return kb.value(iff, [p, t, n, inGroup(groups, z, cog, r)]);
      },
      store: (m, n, v) => {
        const i = inGroup(groups, z, c, n);
        kb.result(() => [...kb.unravel(m, rows, "s"), i], `${m} * ${cin}u + ${i}`, v);
      },
    }),
  });
}

/** Along one axis, the output position o whose window has tap k on input position i:
 *  o·s + k·d − pad = i  ⇔  o = (i + pad − k·d) / s, a hit when s divides it and o < len.
 *  A negative numerator wraps in u32 to near 2^32, and its quotient stays far above any len.
 *  Returns o (unclamped) and the WGSL conditions of a hit. Also used by ./pool-grad.ts. */
export function windowAt(
  kb: KernelBuilder,
  i: string,
  k: string,
  d: number,
  pad: number,
  s: number,
  len: number,
): { o: string; hit: string[] } {
  // Constant terms are left out or folded: `0u - 2u` would not compile (see ./conv2d.ts).
  const base = [...(i === "0u" ? [] : [i]), ...(pad ? [`${pad}u`] : [])].join(" + ") || "0u";
  const num = kb.let(k === "0u" ? base : `${base} - ${d === 1 ? k : `${k} * ${d}u`}`, "t");
  if (s === 1) return { o: num, hit: [`${num} < ${len}u`] };
  const o = kb.let(`${num} / ${s}u`, "o");
  return { o, hit: [`${num} % ${s}u == 0u`, `${o} < ${len}u`] };
}
