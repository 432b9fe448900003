/** conv2d, max_pool2d, avg_pool2d. Layout: NHWC inputs [N,H,W,C] and HWIO filters
 *  [KH,KW,Cin,Cout], giving [N,OH,OW,Cout]. Why this layout:
 *  - the kernel is an implicit GEMM (M = N·OH·OW rows, Cout columns, K = KH·KW·Cin), and its
 *    reduction index k = (kh, kw, ci) is contiguous in both operands: channels are innermost in
 *    the input, and the HWIO filter is then a plain row-major [KH·KW·Cin, Cout] matrix;
 *  - a flatten after the last conv is a reshape of row-major data, no transpose;
 *  - it is TF.js's and Keras's default layout, so their weights load unchanged.
 *
 *  Output size per spatial axis, with padding (before, after), dilation d and stride s:
 *      OH = floor((H + before + after − d·(KH−1) − 1) / s) + 1
 *  conv2d pads with zeros. The pools ignore padded positions: max is over the window's valid
 *  elements and avg divides by their count (TF's 'SAME' average pool, so borders are not
 *  darkened by zeros). Padding on a side must be smaller than the window, so every window holds
 *  at least one valid element. N may be symbolic; H, W and the channels must be static. */
import { formatShape, isStatic } from "../ir/shape.ts";
import type { TensorType } from "../ir/types.ts";
import { defineOp, fail, FLOAT, requireDtype, type OpDef } from "./def.ts";
import { tensor64, type Tensor64 } from "./tensor64.ts";

type Pair = readonly [number, number];
type Pads4 = readonly [number, number, number, number];

function ints(v: unknown, n: number, min: number, what: string, ins: readonly TensorType[]): void {
  if (!Array.isArray(v) || v.length !== n || !v.every((x) => Number.isInteger(x) && x >= min)) {
    fail(`${what} must be ${n} integers ≥ ${min}, got ${JSON.stringify(v)}`, ins);
  }
}

/** An NHWC f32 input with static H, W, C: returns [H, W, C]. */
function nhwc(ins: readonly TensorType[], op: string): [number, number, number] {
  const x = ins[0];
  if (x.shape.length !== 4) fail(`the input must be NHWC (rank 4)`, ins);
  requireDtype(ins, FLOAT, op);
  const hwc = x.shape.slice(1);
  if (!isStatic(hwc)) fail(`H, W and C of the input must be static, got ${formatShape(x.shape)}`, ins);
  return hwc as [number, number, number];
}

/** Output length of one spatial axis; fails when the dilated window overhangs the padded input. */
function outLen(axis: string, len: number, k: number, pads: Pair, stride: number, dil: number, ins: readonly TensorType[]): number {
  const span = dil * (k - 1) + 1;
  const padded = len + pads[0] + pads[1];
  if (padded < span) fail(`the window spans ${span} along ${axis}, more than the padded ${axis} of ${padded}`, ins);
  return Math.floor((padded - span) / stride) + 1;
}

export const conv2d = defineOp({
  name: "conv2d",
  arity: 2,
  attrs: { strides: "pair", padding: "pads4", dilations: "pair" },
  infer: (ins, a) => {
    const [x, f] = ins;
    if (f.shape.length !== 4) fail(`the filter must be HWIO (rank 4)`, ins);
    const [h, w, c] = nhwc(ins, "conv2d");
    if (!isStatic(f.shape)) fail(`the filter must have a static shape, got ${formatShape(f.shape)}`, ins);
    const [kh, kw, ci, co] = f.shape;
    if (ci !== c) fail(`input channels differ: the input has ${c}, the filter expects ${ci}`, ins);
    ints(a.strides, 2, 1, "strides", ins);
    ints(a.dilations, 2, 1, "dilations", ins);
    ints(a.padding, 4, 0, "padding [top,bottom,left,right]", ins);
    const oh = outLen("H", h, kh, [a.padding[0], a.padding[1]], a.strides[0], a.dilations[0], ins);
    const ow = outLen("W", w, kw, [a.padding[2], a.padding[3]], a.strides[1], a.dilations[1], ins);
    return { dtype: x.dtype, shape: [x.shape[0], oh, ow, co] };
  },
  reference: ([x, f], a, out) => {
    const [n, oh, ow, co] = out.shape;
    const [, h, w, c] = x.shape;
    const [kh, kw] = f.shape;
    const r = tensor64(out.dtype, out.shape);
    let o = 0;
    for (let b = 0; b < n; b++) {
      for (let i = 0; i < oh; i++) {
        for (let j = 0; j < ow; j++) {
          for (let q = 0; q < co; q++, o++) {
            let s = 0;
            for (let p = 0; p < kh; p++) {
              const y = i * a.strides[0] + p * a.dilations[0] - a.padding[0];
              if (y < 0 || y >= h) continue;
              for (let t = 0; t < kw; t++) {
                const z = j * a.strides[1] + t * a.dilations[1] - a.padding[2];
                if (z < 0 || z >= w) continue;
                for (let ci = 0; ci < c; ci++) s += x.data[((b * h + y) * w + z) * c + ci] * f.data[((p * kw + t) * c + ci) * co + q];
              }
            }
            r.data[o] = s;
          }
        }
      }
    }
    return r;
  },
  lower: { kind: "kernel", kernel: "conv2d" },
});

interface PoolAttrs {
  readonly window: Pair;
  readonly strides: Pair;
  readonly padding: Pads4;
}

function pool<K extends "max_pool2d" | "avg_pool2d">(name: K, combine: (vals: readonly number[]) => number): OpDef<K> {
  return defineOp<K>({
    name,
    arity: 1,
    attrs: { window: "pair", strides: "pair", padding: "pads4" } as OpDef<K>["attrs"],
    infer: (ins, attrs) => {
      const a = attrs as PoolAttrs;
      const [h, w, c] = nhwc(ins, name);
      ints(a.window, 2, 1, "window", ins);
      ints(a.strides, 2, 1, "strides", ins);
      ints(a.padding, 4, 0, "padding [top,bottom,left,right]", ins);
      const [t, b, l, r] = a.padding;
      if (Math.max(t, b) >= a.window[0] || Math.max(l, r) >= a.window[1]) {
        fail(`padding ${JSON.stringify(a.padding)} must be smaller than the window ${JSON.stringify(a.window)} on each side`, ins);
      }
      const oh = outLen("H", h, a.window[0], [t, b], a.strides[0], 1, ins);
      const ow = outLen("W", w, a.window[1], [l, r], a.strides[1], 1, ins);
      return { dtype: ins[0].dtype, shape: [ins[0].shape[0], oh, ow, c] };
    },
    reference: ([x], attrs, out) => poolReference(x, attrs as PoolAttrs, out.shape, combine),
    lower: { kind: "kernel", kernel: "pool" },
  });
}

function poolReference(x: Tensor64, a: PoolAttrs, shape: readonly number[], combine: (vals: readonly number[]) => number): Tensor64 {
  const [n, oh, ow, c] = shape;
  const [, h, w] = x.shape;
  const r = tensor64(x.dtype, shape);
  const vals: number[] = [];
  let o = 0;
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) {
        for (let ch = 0; ch < c; ch++, o++) {
          vals.length = 0;
          for (let p = 0; p < a.window[0]; p++) {
            const y = i * a.strides[0] + p - a.padding[0];
            for (let t = 0; t < a.window[1]; t++) {
              const z = j * a.strides[1] + t - a.padding[2];
              if (y >= 0 && y < h && z >= 0 && z < w) vals.push(x.data[((b * h + y) * w + z) * c + ch]);
            }
          }
          r.data[o] = combine(vals);
        }
      }
    }
  }
  return r;
}

export const maxPool2d = pool("max_pool2d", (v) => Math.max(...v));
export const avgPool2d = pool("avg_pool2d", (v) => v.reduce((s, x) => s + x, 0) / v.length);
