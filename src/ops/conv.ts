/** conv2d, max_pool2d, avg_pool2d, and their gradients. Layout: NHWC inputs [N,H,W,C] and HWIO
 *  filters [KH,KW,Cin,Cout], giving [N,OH,OW,Cout]. Why this layout:
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
 *  at least one valid element. N may be symbolic; H, W and the channels must be static.
 *
 *  Grouped convolution (`groups` g, absent = 1): the input's C channels and the filter's Cout
 *  split into g blocks; output channel o belongs to block ⌊o/(Cout/g)⌋ and reads only that
 *  block's C/g input channels, so the filter is [KH, KW, C/g, Cout] (ONNX's and PyTorch's
 *  grouping, in HWIO). Depthwise is g = C. Each block is an independent conv, and so are its
 *  gradients: the kernels run the blocks as the batch of a batched GEMM.
 *
 *  Gradients are primitives of their own, as in TF: conv2d_grad_input and conv2d_grad_filter
 *  (expressing them as conv2d would turn the batch, often symbolic, into a channel dim), and
 *  max_pool2d_grad and avg_pool2d_grad. Each carries the shape of the value it differentiates
 *  (`shape`), since with strides several input sizes give one output size. conv2d is bilinear,
 *  and its three ops close under differentiation: with x ⊛ f the convolution,
 *      ⟨h, x ⊛ f⟩ = ⟨gradInput(h, f), x⟩ = ⟨gradFilter(x, h), f⟩  for every h,
 *  so each op's vjp is built from the other two. */
import { formatShape, isStatic, isValidDim, shapeEq } from "../ir/shape.ts";
import type { OpAttrs, Shape, TensorType } from "../ir/types.ts";
import type { Tensor } from "../api/builder.ts";
import { defineOp, fail, FLOAT, requireDtype, type AttrSchema } from "./def.ts";
import { tensor64, type Tensor64 } from "./tensor64.ts";

type Pair = readonly [number, number];
type ConvAttrs = OpAttrs["conv2d"];
type PoolAttrs = OpAttrs["max_pool2d"];

function ints(v: unknown, n: number, min: number, what: string, ins: readonly TensorType[]): void {
  if (!Array.isArray(v) || v.length !== n || !v.every((x) => Number.isInteger(x) && x >= min)) {
    fail(`${what} must be ${n} integers ≥ ${min}, got ${JSON.stringify(v)}`, ins);
  }
}

/** The NHWC f32 tensor `x` (one of `ins`) with static H, W, C: returns [H, W, C]. */
function nhwc(x: TensorType, ins: readonly TensorType[], op: string, what = "the input"): [number, number, number] {
  if (x.shape.length !== 4) fail(`${what} must be NHWC (rank 4)`, ins);
  requireDtype(ins, FLOAT, op);
  const hwc = x.shape.slice(1);
  if (!isStatic(hwc)) fail(`H, W and C of ${what} must be static, got ${formatShape(x.shape)}`, ins);
  return hwc as [number, number, number];
}

/** A gradient's `shape` attribute when it is an NHWC input's: returns [H, W, C]. */
function inputShape(s: Shape, ins: readonly TensorType[]): [number, number, number] {
  if (!Array.isArray(s) || s.length !== 4 || !isValidDim(s[0]) || !isStatic(s.slice(1))) {
    fail(`shape must be the NHWC input's shape, with static H, W and C, got ${JSON.stringify(s)}`, ins);
  }
  return s.slice(1) as [number, number, number];
}

/** Fails unless the cotangent `g` has the forward op's output shape `want`. */
function expectCotangent(g: TensorType, want: Shape, of: string, ins: readonly TensorType[]): void {
  if (!shapeEq(g.shape, want)) fail(`the cotangent must have the shape of ${of}'s output, ${formatShape(want)}`, ins);
}

/** Output length of one spatial axis; fails when the dilated window overhangs the padded input. */
function outLen(axis: string, len: number, k: number, pads: Pair, stride: number, dil: number, ins: readonly TensorType[]): number {
  const span = dil * (k - 1) + 1;
  const padded = len + pads[0] + pads[1];
  if (padded < span) fail(`the window spans ${span} along ${axis}, more than the padded ${axis} of ${padded}`, ins);
  return Math.floor((padded - span) / stride) + 1;
}

/** The conv's groups, after checking them against C input channels and the filter's [Cin/g, Cout]. */
function groupsOf(a: ConvAttrs, c: number, [ci, co]: readonly number[], ins: readonly TensorType[], shapeNote = ""): number {
  const g = a.groups ?? 1;
  if (!Number.isInteger(g) || g < 1) fail(`groups must be an integer ≥ 1, got ${JSON.stringify(a.groups)}`, ins);
  if (c % g !== 0 || co % g !== 0) fail(`groups ${g} must divide the input channels ${c} and the output channels ${co}`, ins);
  if (ci !== c / g) {
    const want = g === 1 ? "" : `, not ${c / g} (${c} / groups ${g})`;
    fail(`input channels differ: ${shapeNote || "the input"} has ${c}, the filter expects ${ci}${want}`, ins);
  }
  return g;
}

/** conv2d's [OH, OW] for an input [H, W] and a filter [KH, KW], after checking the attributes. */
function convOut([h, w]: Pair, [kh, kw]: Pair, a: ConvAttrs, ins: readonly TensorType[]): [number, number] {
  ints(a.strides, 2, 1, "strides", ins);
  ints(a.dilations, 2, 1, "dilations", ins);
  ints(a.padding, 4, 0, "padding [top,bottom,left,right]", ins);
  return [
    outLen("H", h, kh, [a.padding[0], a.padding[1]], a.strides[0], a.dilations[0], ins),
    outLen("W", w, kw, [a.padding[2], a.padding[3]], a.strides[1], a.dilations[1], ins),
  ];
}

/** Every tap of the convolution of x [N,H,W,C] into y [N,OH,OW,Cout] by f [KH,KW,C/g,Cout], as
 *  flat offsets (x, y, f) of the factors of one product x·f → y; taps in the padding are left out.
 *  Filter channel ci of output channel q reads input channel ⌊q/(Cout/g)⌋·(C/g) + ci. */
function forEachTap(
  xs: readonly number[],
  ys: readonly number[],
  fs: readonly number[],
  a: ConvAttrs,
  visit: (xi: number, yi: number, fi: number) => void,
): void {
  const [n, h, w, c] = xs;
  const [, oh, ow, co] = ys;
  const [kh, kw, cg] = fs;
  const perGroup = co / (c / cg);
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) {
        for (let p = 0; p < kh; p++) {
          const y = i * a.strides[0] + p * a.dilations[0] - a.padding[0];
          if (y < 0 || y >= h) continue;
          for (let t = 0; t < kw; t++) {
            const z = j * a.strides[1] + t * a.dilations[1] - a.padding[2];
            if (z < 0 || z >= w) continue;
            const [xb, yb, fb] = [((b * h + y) * w + z) * c, ((b * oh + i) * ow + j) * co, (p * kw + t) * cg * co];
            for (let ci = 0; ci < cg; ci++) {
              for (let q = 0; q < co; q++) visit(xb + Math.floor(q / perGroup) * cg + ci, yb + q, fb + ci * co + q);
            }
          }
        }
      }
    }
  }
}

const CONV_ATTRS: AttrSchema<ConvAttrs> = { strides: "pair", padding: "pads4", dilations: "pair", groups: "int?" };
const convAttrs = (a: ConvAttrs): ConvAttrs => ({
  strides: a.strides,
  padding: a.padding,
  dilations: a.dilations,
  ...(a.groups !== undefined && a.groups !== 1 ? { groups: a.groups } : {}),
});
const gradInput = (g: Tensor, f: Tensor, a: ConvAttrs, shape: Shape): Tensor =>
  g.builder.add("conv2d_grad_input", [g, f], { ...convAttrs(a), shape });
const gradFilter = (x: Tensor, g: Tensor, a: ConvAttrs, shape: Shape): Tensor =>
  x.builder.add("conv2d_grad_filter", [x, g], { ...convAttrs(a), shape });

export const conv2d = defineOp({
  name: "conv2d",
  arity: 2,
  attrs: CONV_ATTRS,
  infer: (ins, a) => {
    const [x, f] = ins;
    if (f.shape.length !== 4) fail(`the filter must be HWIO (rank 4)`, ins);
    const [h, w, c] = nhwc(x, ins, "conv2d");
    if (!isStatic(f.shape)) fail(`the filter must have a static shape, got ${formatShape(f.shape)}`, ins);
    const [kh, kw, ci, co] = f.shape;
    groupsOf(a, c, [ci, co], ins);
    return { dtype: x.dtype, shape: [x.shape[0], ...convOut([h, w], [kh, kw], a, ins), co] };
  },
  reference: ([x, f], a, out) => {
    const r = tensor64(out.dtype, out.shape);
    forEachTap(x.shape, out.shape, f.shape, a, (xi, yi, fi) => (r.data[yi] += x.data[xi] * f.data[fi]));
    return r;
  },
  pattern: { kind: "gemm" },
  lower: { kind: "kernel", kernel: "conv2d" },
  vjp: ({ g, ins: [x, f], attrs: a }) => [gradInput(g, f, a, x.shape), gradFilter(x, g, a, f.shape)],
});

/** dx[n,h,w,ci] = Σ g[n,oh,ow,co]·f[kh,kw,ci,co] over the taps with oh·sh + kh·dh − top = h
 *  (and likewise along W): conv2d's input cotangent, of the input shape `shape`. */
export const conv2dGradInput = defineOp({
  name: "conv2d_grad_input",
  arity: 2,
  attrs: { ...CONV_ATTRS, shape: "shape" },
  infer: (ins, a) => {
    const [g, f] = ins;
    nhwc(g, ins, "conv2d_grad_input", "the cotangent");
    if (f.shape.length !== 4 || !isStatic(f.shape))
      fail(`the filter must be HWIO (rank 4) with a static shape, got ${formatShape(f.shape)}`, ins);
    const [h, w, c] = inputShape(a.shape, ins);
    const [kh, kw, ci, co] = f.shape;
    groupsOf(a, c, [ci, co], ins, `shape ${formatShape(a.shape)}`);
    expectCotangent(g, [a.shape[0], ...convOut([h, w], [kh, kw], a, ins), co], "conv2d", ins);
    return { dtype: g.dtype, shape: a.shape };
  },
  reference: ([g, f], a, out) => {
    const r = tensor64(out.dtype, out.shape);
    forEachTap(out.shape, g.shape, f.shape, a, (xi, yi, fi) => (r.data[xi] += g.data[yi] * f.data[fi]));
    return r;
  },
  pattern: { kind: "gemm" },
  lower: { kind: "kernel", kernel: "conv2d_grad_input" },
  // Bilinear: with h the cotangent of dx, ⟨h, dx⟩ = ⟨conv2d(h, f), g⟩ = ⟨gradFilter(h, g), f⟩.
  vjp: ({ g: h, ins: [g, f], attrs: a }) => [h.conv2d(f, a), gradFilter(h, g, a, f.shape)],
});

/** df[kh,kw,ci,co] = Σ_{n,oh,ow} x[n, oh·sh + kh·dh − top, ow·sw + kw·dw − left, ci]·g[n,oh,ow,co]
 *  (0 in the padding): conv2d's filter cotangent, of the filter shape `shape`. */
export const conv2dGradFilter = defineOp({
  name: "conv2d_grad_filter",
  arity: 2,
  attrs: { ...CONV_ATTRS, shape: "shape" },
  infer: (ins, a) => {
    const [x, g] = ins;
    const [h, w, c] = nhwc(x, ins, "conv2d_grad_filter");
    if (g.shape.length !== 4) fail(`the cotangent must be NHWC (rank 4)`, ins);
    ints(a.shape, 4, 1, "shape (the filter's, HWIO)", ins);
    const [kh, kw, ci, co] = a.shape as readonly number[];
    if ((a.groups ?? 1) === 1 && ci !== c) {
      fail(`input channels differ: the input has ${c}, shape ${formatShape(a.shape)} expects ${ci}`, ins);
    }
    groupsOf(a, c, [ci, co], ins);
    expectCotangent(g, [x.shape[0], ...convOut([h, w], [kh, kw], a, ins), co], "conv2d", ins);
    return { dtype: x.dtype, shape: a.shape };
  },
  reference: ([x, g], a, out) => {
    const r = tensor64(out.dtype, out.shape);
    forEachTap(x.shape, g.shape, out.shape, a, (xi, yi, fi) => (r.data[fi] += x.data[xi] * g.data[yi]));
    return r;
  },
  pattern: { kind: "gemm" },
  lower: { kind: "kernel", kernel: "conv2d_grad_filter" },
  // Bilinear: with h the cotangent of df, ⟨h, df⟩ = ⟨gradInput(g, h), x⟩ = ⟨conv2d(x, h), g⟩.
  vjp: ({ g: h, ins: [x, g], attrs: a }) => [gradInput(g, h, a, x.shape), x.conv2d(h, a)],
});

const POOL_ATTRS: AttrSchema<PoolAttrs> = { window: "pair", strides: "pair", padding: "pads4" };
const poolAttrs = (a: PoolAttrs): PoolAttrs => ({ window: a.window, strides: a.strides, padding: a.padding });

/** The pool's output shape for an input `x` (one of `ins`), after checking the attributes. */
function poolShape(x: TensorType, a: PoolAttrs, ins: readonly TensorType[], op: string): Shape {
  const [h, w, c] = nhwc(x, ins, op);
  ints(a.window, 2, 1, "window", ins);
  ints(a.strides, 2, 1, "strides", ins);
  ints(a.padding, 4, 0, "padding [top,bottom,left,right]", ins);
  const [t, b, l, r] = a.padding;
  if (Math.max(t, b) >= a.window[0] || Math.max(l, r) >= a.window[1]) {
    fail(`padding ${JSON.stringify(a.padding)} must be smaller than the window ${JSON.stringify(a.window)} on each side`, ins);
  }
  const oh = outLen("H", h, a.window[0], [t, b], a.strides[0], 1, ins);
  const ow = outLen("W", w, a.window[1], [l, r], a.strides[1], 1, ins);
  return [x.shape[0], oh, ow, c];
}

/** Every window of a pool over x [N,H,W,C] into [N,OH,OW,C]: its output offset and the flat
 *  offsets of its valid input elements. */
function forEachWindow(
  xs: readonly number[],
  ys: readonly number[],
  a: PoolAttrs,
  visit: (o: number, at: readonly number[]) => void,
): void {
  const [n, h, w, c] = xs;
  const [, oh, ow] = ys;
  const at: number[] = [];
  let o = 0;
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) {
        for (let ch = 0; ch < c; ch++, o++) {
          at.length = 0;
          for (let p = 0; p < a.window[0]; p++) {
            const y = i * a.strides[0] + p - a.padding[0];
            for (let t = 0; t < a.window[1]; t++) {
              const z = j * a.strides[1] + t - a.padding[2];
              if (y >= 0 && y < h && z >= 0 && z < w) at.push(((b * h + y) * w + z) * c + ch);
            }
          }
          visit(o, at);
        }
      }
    }
  }
}

const maxOf = (x: Tensor64, at: readonly number[]): number => Math.max(...at.map((i) => x.data[i]));

export const maxPool2d = defineOp({
  name: "max_pool2d",
  arity: 1,
  attrs: POOL_ATTRS,
  infer: (ins, a) => ({ dtype: ins[0].dtype, shape: poolShape(ins[0], a, ins, "max_pool2d") }),
  reference: ([x], a, out) => {
    const r = tensor64(out.dtype, out.shape);
    forEachWindow(x.shape, out.shape, a, (o, at) => (r.data[o] = maxOf(x, at)));
    return r;
  },
  pattern: { kind: "opaque" },
  lower: { kind: "kernel", kernel: "pool" },
  vjp: ({ g, ins: [x], attrs: a }) => [x.builder.add("max_pool2d_grad", [x, g], poolAttrs(a))],
});

export const avgPool2d = defineOp({
  name: "avg_pool2d",
  arity: 1,
  attrs: POOL_ATTRS,
  infer: (ins, a) => ({ dtype: ins[0].dtype, shape: poolShape(ins[0], a, ins, "avg_pool2d") }),
  reference: ([x], a, out) => {
    const r = tensor64(out.dtype, out.shape);
    forEachWindow(x.shape, out.shape, a, (o, at) => (r.data[o] = at.reduce((s, i) => s + x.data[i], 0) / at.length));
    return r;
  },
  pattern: { kind: "opaque" },
  lower: { kind: "kernel", kernel: "pool" },
  vjp: ({ g, ins: [x], attrs: a }) => [g.builder.add("avg_pool2d_grad", [g], { ...poolAttrs(a), shape: x.shape })],
});

/** max_pool2d's input cotangent: each window's g goes to the first position, in row-major window
 *  order, where x equals the window's max — TF's and PyTorch's convention. At a tie the max is
 *  not differentiable, but a window over copies of one value (x repeated by a broadcast or a
 *  concat) is, and one position per window gives its true derivative; every tied position
 *  taking g would count it once per copy. */
export const maxPool2dGrad = defineOp({
  name: "max_pool2d_grad",
  arity: 2,
  attrs: POOL_ATTRS,
  infer: (ins, a) => {
    const [x, g] = ins;
    if (g.shape.length !== 4) fail(`the cotangent must be NHWC (rank 4)`, ins);
    expectCotangent(g, poolShape(x, a, ins, "max_pool2d_grad"), "max_pool2d", ins);
    return x;
  },
  reference: ([x, g], a, out) => {
    const r = tensor64(out.dtype, out.shape);
    forEachWindow(x.shape, g.shape, a, (o, at) => {
      const m = maxOf(x, at);
      const first = at.find((i) => x.data[i] === m);
      if (first !== undefined) r.data[first] += g.data[o];
    });
    return r;
  },
  pattern: { kind: "opaque" },
  lower: { kind: "kernel", kernel: "pool_grad" },
  // In x the result is piecewise constant (0 almost everywhere); in g it is linear, with the
  // transpose below.
  vjp: ({ g: h, ins: [x], attrs: a }) => [undefined, gatherAtMax(x, h, a)],
});

/** The transpose of g ↦ max_pool2d_grad(x, g): each window takes h at its first maximal
 *  position. Offset (wy, wx) of every window at once is a strided slice of the padded x (and
 *  h), so this is KH·KW slices compared with the max, in window order, each taking the windows
 *  no earlier offset took. x is padded with −inf, so a padded position never comes first
 *  unless the whole window is −inf. */
function gatherAtMax(x: Tensor, h: Tensor, a: PoolAttrs): Tensor {
  const m = x.maxPool2d(a.window, a.strides, a.padding);
  const [, oh, ow, c] = m.shape as [unknown, number, number, number];
  const [top, bottom, left, right] = a.padding;
  const pad = (t: Tensor, v: number) => t.pad([0, top, left, 0], [0, bottom, right, 0], v);
  const [xp, hp] = [pad(x, -Infinity), pad(h, 0)];
  const terms: Tensor[] = [];
  let taken: Tensor | undefined;
  for (let wy = 0; wy < a.window[0]; wy++) {
    for (let wx = 0; wx < a.window[1]; wx++) {
      const at = (t: Tensor) =>
        t.slice([0, wy, wx, 0], [x.shape[0], wy + (oh - 1) * a.strides[0] + 1, wx + (ow - 1) * a.strides[1] + 1, c], [1, ...a.strides, 1]);
      const hit = at(xp).eq(m);
      const first = taken ? hit.and(taken.not()) : hit;
      taken = taken ? taken.or(hit) : hit;
      terms.push(first.select(at(hp), 0));
    }
  }
  return terms.reduce((s, t) => s.add(t));
}

/** avg_pool2d's input cotangent: each input position receives Σ g/count over the windows that
 *  contain it (count = the window's valid elements, as the forward divides). */
export const avgPool2dGrad = defineOp({
  name: "avg_pool2d_grad",
  arity: 1,
  attrs: { ...POOL_ATTRS, shape: "shape" },
  infer: (ins, a) => {
    const [g] = ins;
    if (g.shape.length !== 4) fail(`the cotangent must be NHWC (rank 4)`, ins);
    inputShape(a.shape, ins);
    const x = { dtype: g.dtype, shape: a.shape };
    expectCotangent(g, poolShape(x, a, ins, "avg_pool2d_grad"), "avg_pool2d", ins);
    return x;
  },
  reference: ([g], a, out) => {
    const r = tensor64(out.dtype, out.shape);
    forEachWindow(out.shape, g.shape, a, (o, at) => {
      for (const i of at) r.data[i] += g.data[o] / at.length;
    });
    return r;
  },
  pattern: { kind: "opaque" },
  lower: { kind: "kernel", kernel: "pool_grad" },
  // Linear, and the transpose of avg_pool2d: its vjp is the pool itself.
  vjp: ({ g: h, attrs: a }) => [h.avgPool2d(a.window, a.strides, a.padding)],
});
