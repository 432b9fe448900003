/** conv2d, the pools and their gradients as ONNX operators. Kiln computes NHWC with HWIO
 *  filters and pads [top, bottom, left, right]; ONNX computes NCHW with OIHW filters and pads
 *  [top, left, bottom, right]. Each op transposes into NCHW, runs the ONNX op and transposes
 *  back. The gradients (training graphs) are ONNX ops too:
 *    - conv2d_grad_input is ConvTranspose with the same filter, its output_padding the rows
 *      the forward's floor left unread: H + pads − span − (OH − 1)·stride (< stride);
 *    - conv2d_grad_filter is a Conv with the roles swapped: channels C as the batch, the batch
 *      N as the channels, the cotangent as the filter, stride and dilation exchanged:
 *          df[ci,co,kh,kw] = Σ_{n,oh,ow} x'[ci, n, kh·d + oh·s, kw·d + ow·s] · g'[co, n, oh, ow]
 *      then cut to the filter's size (that Conv may give a longer tail) and laid out HWIO;
 *    - avg_pool2d_grad is a depthwise ConvTranspose of ones over g ÷ each window's count;
 *    - max_pool2d_grad marks, per window offset, the windows whose first maximal element sits
 *      there (Kiln's rule: the first in row-major window order), and scatters g to those
 *      positions with a depthwise ConvTranspose of one-hot filters. */
import type { OpAttrs, OpKind, Shape } from "../../src/ir/types.ts";
import { Elem, type Attrs } from "./export-writer.ts";
import type { Lower, LowerCtx } from "./export-ops.ts";

const TO_NCHW = [0, 3, 1, 2];
const TO_NHWC = [0, 2, 3, 1];
type Pads4 = readonly [number, number, number, number];
type Pair = readonly [number, number];

/** Kiln's [top, bottom, left, right] as ONNX's [top, left, bottom, right]. */
const onnxPads = ([t, b, l, r]: Pads4): number[] => [t, l, b, r];
type Emit = Pick<LowerCtx<OpKind>, "op">;
const nchw = (c: Emit, x: string) => c.op("Transpose", [x], { perm: TO_NCHW });
const back = (c: Emit, y: string) => c.op("Transpose", [y], { perm: TO_NHWC }, true);
const dims = (s: Shape): number[] => s as number[];

/** ConvTranspose's output_padding for an input of [H, W], per axis. */
function outputPadding(hw: Pair, k: Pair, out: Pair, a: { strides: Pair; padding: Pads4; dilations?: Pair }): number[] {
  const d = a.dilations ?? [1, 1];
  return [0, 1].map((ax) => hw[ax] + a.padding[2 * ax] + a.padding[2 * ax + 1] - (d[ax] * (k[ax] - 1) + 1) - (out[ax] - 1) * a.strides[ax]);
}

const conv2d: Lower<"conv2d"> = (c) => {
  const [kh, kw] = dims(c.ins[1].shape);
  const a = c.attrs;
  const y = c.op("Conv", [nchw(c, c.x[0]), c.oihw(1)], {
    kernel_shape: [kh, kw],
    pads: onnxPads(a.padding),
    strides: a.strides,
    dilations: a.dilations,
    ...group(a),
  });
  return back(c, y);
};

/** ONNX's `group` for a grouped conv (Kiln's HWIO [KH, KW, C/g, Cout] is ONNX's OIHW [Cout, C/g,
 *  KH, KW] for Conv, and [Cout, C/g, KH, KW] = [C_in, M/g, KH, KW] for ConvTranspose). */
const group = (a: { groups?: number }): Attrs => (a.groups !== undefined && a.groups !== 1 ? { group: a.groups } : {});

const pool =
  (onnx: "MaxPool" | "AveragePool"): Lower<"max_pool2d" | "avg_pool2d"> =>
  (c) => {
    const a = c.attrs;
    const attrs: Attrs = { kernel_shape: a.window, pads: onnxPads(a.padding), strides: a.strides };
    // Kiln's average divides by the window's valid elements, not its padded size.
    return back(c, c.op(onnx, [nchw(c, c.x[0])], onnx === "AveragePool" ? { ...attrs, count_include_pad: 0 } : attrs));
  };

const conv2dGradInput: Lower<"conv2d_grad_input"> = (c) => {
  const a = c.attrs;
  const [kh, kw] = dims(c.ins[1].shape);
  const [, h, w] = dims(a.shape);
  const [, oh, ow] = dims(c.ins[0].shape.map((d, i) => (i === 0 ? 1 : d)));
  const y = c.op("ConvTranspose", [nchw(c, c.x[0]), c.oihw(1)], {
    kernel_shape: [kh, kw],
    pads: onnxPads(a.padding),
    strides: a.strides,
    dilations: a.dilations,
    output_padding: outputPadding([h, w], [kh, kw], [oh, ow], a),
    ...group(a),
  });
  return back(c, y);
};

const conv2dGradFilter: Lower<"conv2d_grad_filter"> = (c) => {
  const a = c.attrs;
  // Swapping roles puts the batch in the channels, where ONNX's groups would mix the blocks.
  if ((a.groups ?? 1) !== 1) throw new Error(`a grouped conv2d_grad_filter (groups ${a.groups}) has no ONNX lowering`);
  const [kh, kw] = dims(a.shape);
  const [, oh, ow] = c.ins[1].shape as [unknown, number, number];
  const swap = [3, 0, 1, 2]; // NHWC → C, N, H, W: channels become the batch
  const y = c.op("Conv", [c.op("Transpose", [c.x[0]], { perm: swap }), c.op("Transpose", [c.x[1]], { perm: swap })], {
    kernel_shape: [oh, ow],
    pads: onnxPads(a.padding),
    strides: a.dilations,
    dilations: a.strides,
  });
  const cut = c.op("Slice", [y, c.w.ints([0, 0]), c.w.ints([kh, kw]), c.w.ints([2, 3])]);
  return c.op("Transpose", [cut], { perm: [2, 3, 0, 1] }, true);
};

/** The number of valid (unpadded) elements in each window, [OH, OW]. */
function windowCounts(hw: Pair, a: OpAttrs["avg_pool2d"], out: Pair): number[] {
  const span = (i: number, ax: 0 | 1) => {
    const start = i * a.strides[ax] - a.padding[2 * ax];
    return Math.min(start + a.window[ax], hw[ax]) - Math.max(start, 0);
  };
  const counts: number[] = [];
  for (let i = 0; i < out[0]; i++) for (let j = 0; j < out[1]; j++) counts.push(span(i, 0) * span(j, 1));
  return counts;
}

/** A depthwise ConvTranspose scattering `src` [N, C·K, OH, OW] (K inputs per channel) back to
 *  the pool's input [N, H, W, C], with the filter `taps` [C·K, 1, KH, KW]. */
function scatterWindows(
  c: LowerCtx<"avg_pool2d_grad" | "max_pool2d_grad">,
  src: string,
  k: number,
  taps: number[],
  shape: Shape,
  out: Pair,
): string {
  const a = c.attrs;
  const [, h, w, ch] = dims(shape.map((d, i) => (i === 0 ? 1 : d)));
  const filter = c.w.constant(Elem.FLOAT, [ch * k, 1, ...a.window], taps);
  const y = c.op("ConvTranspose", [src, filter], {
    group: ch,
    kernel_shape: a.window,
    pads: onnxPads(a.padding),
    strides: a.strides,
    output_padding: outputPadding([h, w], a.window, out, a),
  });
  return back(c, y);
}

const avgPool2dGrad: Lower<"avg_pool2d_grad"> = (c) => {
  const a = c.attrs;
  const [, h, w, ch] = dims(a.shape.map((d, i) => (i === 0 ? 1 : d)));
  const [, oh, ow] = dims(c.ins[0].shape.map((d, i) => (i === 0 ? 1 : d)));
  const counts = c.w.constant(Elem.FLOAT, [1, oh, ow, 1], windowCounts([h, w], a, [oh, ow]));
  const share = nchw(c, c.op("Div", [c.x[0], counts]));
  // Every position of a window gets its share: a [C, 1, KH, KW] filter of ones.
  return scatterWindows(c, share, 1, new Array<number>(ch * a.window[0] * a.window[1]).fill(1), a.shape, [oh, ow]);
};

const maxPool2dGrad: Lower<"max_pool2d_grad"> = (c) => {
  const a = c.attrs;
  const x = c.ins[0];
  const ch = x.shape[3] as number;
  const [, oh, ow] = dims(c.ins[1].shape.map((d, i) => (i === 0 ? 1 : d)));
  const [t, b, l, r] = a.padding;
  const m = c.op(
    "Transpose",
    [c.op("MaxPool", [nchw(c, c.x[0])], { kernel_shape: a.window, pads: onnxPads(a.padding), strides: a.strides })],
    {
      perm: TO_NHWC,
    },
  );
  // NaN padding: it equals nothing, so a padded position is never a window's maximum.
  const xp = c.op("Pad", [c.x[0], c.w.ints([0, t, l, 0, 0, b, r, 0]), c.w.scalar(NaN, Elem.FLOAT)], { mode: "constant" });
  const terms: string[] = [];
  let taken: string | undefined;
  for (let wy = 0; wy < a.window[0]; wy++) {
    for (let wx = 0; wx < a.window[1]; wx++) {
      const ends = [wy + (oh - 1) * a.strides[0] + 1, wx + (ow - 1) * a.strides[1] + 1];
      const at = c.op("Slice", [xp, c.w.ints([wy, wx]), c.w.ints(ends), c.w.ints([1, 2]), c.w.ints(a.strides)]);
      const hit = c.op("Equal", [at, m]);
      const first = taken ? c.op("And", [hit, c.op("Not", [taken])]) : hit;
      taken = taken ? c.op("Or", [taken, hit]) : hit;
      terms.push(c.op("Unsqueeze", [c.op("Where", [first, c.x[1], c.w.scalar(0, Elem.FLOAT)]), c.w.ints([4])]));
    }
  }
  // [N, OH, OW, C, K] → [N, C·K, OH, OW]: group c holds its K taps, in window order.
  const k = terms.length;
  const stacked = c.op("Reshape", [c.op("Concat", terms, { axis: 4 }), c.w.shape([x.shape[0], oh, ow, ch * k])]);
  const taps: number[] = [];
  for (let cc = 0; cc < ch; cc++) for (let j = 0; j < k; j++) for (let p = 0; p < k; p++) taps.push(p === j ? 1 : 0);
  return scatterWindows(c, nchw(c, stacked), k, taps, x.shape, [oh, ow]);
};

export const CONV_OPS = {
  conv2d,
  max_pool2d: pool("MaxPool"),
  avg_pool2d: pool("AveragePool"),
  conv2d_grad_input: conv2dGradInput,
  conv2d_grad_filter: conv2dGradFilter,
  max_pool2d_grad: maxPool2dGrad,
  avg_pool2d_grad: avgPool2dGrad,
} satisfies {
  [K in
    | "conv2d"
    | "max_pool2d"
    | "avg_pool2d"
    | "conv2d_grad_input"
    | "conv2d_grad_filter"
    | "max_pool2d_grad"
    | "avg_pool2d_grad"]: Lower<K>;
};
