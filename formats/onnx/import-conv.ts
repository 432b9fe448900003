/** ONNX's convolutions, pools and LRN as Kiln ops. ONNX computes NCHW with OIHW filters; Kiln's
 *  conv2d and pools compute NHWC with HWIO filters (src/ops/conv.ts), so each node permutes its
 *  input to NHWC and its result back — index maps that fuse into the kernels' loads, not copies.
 *  A 1-D node ([N, C, L]) runs as 2-D with H = 1; 3-D (rank-5) nodes are refused.
 *    - Conv: conv2d with ONNX's pads [x1_begin, x2_begin, x1_end, x2_end] as Kiln's
 *      [top, bottom, left, right], its group as `groups` (depthwise included) and auto_pad
 *      SAME_UPPER / SAME_LOWER / VALID resolved to pads here.
 *    - ConvTranspose: the transposed convolution is conv2d's input gradient, so it is Kiln's
 *      conv2d_grad_input (one implicit GEMM, no zero-stuffed input): ONNX's W [C, M/g, kH, kW]
 *      is the HWIO filter [kH, kW, M/g, C] of the conv from M channels to C that it transposes.
 *    - MaxPool, AveragePool: Kiln's pools, which skip padded positions (ONNX's max, and the
 *      average with count_include_pad = 0). ceil_mode adds the overhang of the last window to
 *      the end pads — skipped the same way — after dropping a last window that would start in
 *      the end padding (ONNX's rule since opset 19, PyTorch's always). count_include_pad = 1
 *      pads the input with explicit zeros, which the pool then counts. Dilated pools are a
 *      composite: one strided slice of the padded input per window tap, combined by max or by
 *      sum over a constant count.
 *    - LRN: x / (bias + α/size · Σ x² over `size` neighbouring channels)^β, the window a sum
 *      of slices of the zero-padded square. */
import type { Tensor } from "../../src/api/builder.ts";
import type { Emitted, OpCtx, OpTable } from "./import-context.ts";

type Pads4 = [number, number, number, number];

/** What a node's spatial attributes say about one spatial axis. */
interface Axis {
  len: number;
  readonly k: number;
  readonly s: number;
  readonly d: number;
  begin: number;
  end: number;
}

const ones = (n: number): number[] => new Array<number>(n).fill(1);

/** The input's spatial rank (1 or 2), with static spatial sizes. */
function spatial(c: OpCtx, x: Tensor, what = "X"): number[] {
  if (x.rank === 5) c.refuse(`${what} has rank 5: 3-D ${c.node.op} is not supported (Kiln's convolutions and pools are 2-D)`);
  if (x.rank !== 3 && x.rank !== 4) c.fail(`${what} has rank ${x.rank}; ${c.node.op} needs [N, C, L] or [N, C, H, W]`);
  const sizes = x.shape.slice(2);
  if (!sizes.every((d) => typeof d === "number")) c.refuse(`${what}'s spatial dims ${JSON.stringify(sizes)} must be static`);
  if (x.dtype !== "f32") c.refuse(`${what} is ${x.dtype}; Kiln's ${c.node.op} computes f32`);
  return sizes as number[];
}

/** An ints attribute of one entry per spatial axis, or its default. */
function perAxis(c: OpCtx, name: string, n: number, def: number, min: number): number[] {
  const v = c.attr.ints(name) ?? new Array<number>(n).fill(def);
  if (v.length !== n) c.fail(`${name} has ${v.length} entries for ${n} spatial axes`);
  if (v.some((e) => e < min)) c.refuse(`${name} ${JSON.stringify(v)}: Kiln needs values ≥ ${min}`);
  return v;
}

/** The spatial axes of a conv or pool node with their pads, from `pads` or `auto_pad`. */
function axes(c: OpCtx, lens: readonly number[], kernel: readonly number[]): Axis[] {
  const n = lens.length;
  const strides = perAxis(c, "strides", n, 1, 1);
  const dil = perAxis(c, "dilations", n, 1, 1);
  const auto = c.attr.string("auto_pad", "NOTSET");
  const pads = c.attr.ints("pads");
  const out = lens.map((len, i): Axis => ({ len, k: kernel[i], s: strides[i], d: dil[i], begin: 0, end: 0 }));
  if (auto === "NOTSET") {
    if (pads) {
      if (pads.length !== 2 * n) c.fail(`pads has ${pads.length} entries for ${n} spatial axes`);
      if (pads.some((p) => p < 0)) c.refuse(`negative pads ${JSON.stringify(pads)} (cropping) are not supported`);
      out.forEach((a, i) => ((a.begin = pads[i]), (a.end = pads[n + i])));
    }
  } else if (auto === "SAME_UPPER" || auto === "SAME_LOWER") {
    // The output is ceil(len / s); the pads make up the rest, the odd one at the end (UPPER) or the start.
    for (const a of out) {
      const total = Math.max(0, (Math.ceil(a.len / a.s) - 1) * a.s + (a.k - 1) * a.d + 1 - a.len);
      const half = Math.floor(total / 2);
      [a.begin, a.end] = auto === "SAME_UPPER" ? [half, total - half] : [total - half, half];
    }
  } else if (auto !== "VALID") {
    c.fail(`auto_pad "${auto}" is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID`);
  }
  return out;
}

/** [N, C, L] as [N, C, 1, L]; the axes list gains the unit H axis. */
function as2d(x: Tensor, ax: Axis[]): { x: Tensor; ax: Axis[] } {
  if (x.rank === 4) return { x, ax };
  return { x: x.reshape([x.shape[0], x.shape[1], 1, x.shape[2]]), ax: [{ len: 1, k: 1, s: 1, d: 1, begin: 0, end: 0 }, ...ax] };
}
const nhwc = (x: Tensor): Tensor => x.permute([0, 2, 3, 1]);
/** An NHWC result back to NCHW, and to [N, C, L] for a 1-D node. */
const back = (y: Tensor, rank: number): Tensor => {
  const t = y.permute([0, 3, 1, 2]);
  return rank === 3 ? t.reshape([t.shape[0], t.shape[1], t.shape[3]]) : t;
};
const kilnPads = (ax: readonly Axis[]): Pads4 => [ax[0].begin, ax[0].end, ax[1].begin, ax[1].end];
const pair = (ax: readonly Axis[], f: (a: Axis) => number): [number, number] => [f(ax[0]), f(ax[1])];

/** The weight's static shape, kernel_shape checked against it. */
function weight(c: OpCtx, w: Tensor, rank: number): number[] {
  if (w.rank !== rank) c.fail(`W has rank ${w.rank}, X has rank ${rank}`);
  if (!w.shape.every((d) => typeof d === "number")) c.refuse(`W's shape ${JSON.stringify(w.shape)} must be static`);
  const shape = w.shape as number[];
  const ks = c.attr.ints("kernel_shape");
  if (ks && ks.join() !== shape.slice(2).join())
    c.fail(`kernel_shape ${JSON.stringify(ks)} differs from W's spatial dims ${JSON.stringify(shape.slice(2))}`);
  return shape;
}

/** A bias [M] added over the channels of an [N, M, …] result. */
function withBias(c: OpCtx, y: Tensor, m: number): Tensor {
  if (!c.has(2)) return y;
  const b = c.t(2);
  if (b.rank !== 1 || b.shape[0] !== m) c.fail(`B has shape ${JSON.stringify(b.shape)}; the output has ${m} channels`);
  return y.add(b.reshape([m, ...ones(y.rank - 2)]));
}

function conv(c: OpCtx): Emitted[] {
  const x0 = c.t(0);
  const lens = spatial(c, x0);
  const ws = weight(c, c.t(1), x0.rank);
  const group = c.attr.int("group", 1);
  const cin = x0.shape[1];
  if (group < 1 || typeof cin !== "number" || cin % group !== 0 || ws[0] % group !== 0 || ws[1] * group !== cin) {
    c.fail(`group ${group} does not fit X's ${cin} channels and W ${JSON.stringify(ws)} ([M, C/group, …])`);
  }
  const { x, ax } = as2d(x0, axes(c, lens, ws.slice(2)));
  const w0 = c.t(1);
  const w = w0.rank === 3 ? w0.reshape([ws[0], ws[1], 1, ws[2]]) : w0;
  const y = nhwc(x).conv2d(w.permute([2, 3, 1, 0]), {
    strides: pair(ax, (a) => a.s),
    dilations: pair(ax, (a) => a.d),
    padding: kilnPads(ax),
    groups: group,
  });
  return [withBias(c, back(y, x0.rank), ws[0])];
}

function convTranspose(c: OpCtx): Emitted[] {
  const x0 = c.t(0);
  const lens = spatial(c, x0);
  const ws = weight(c, c.t(1), x0.rank);
  const group = c.attr.int("group", 1);
  const [cin, mg] = ws;
  if (group < 1 || x0.shape[1] !== cin || cin % group !== 0) {
    c.fail(`group ${group} does not fit X's ${String(x0.shape[1])} channels and W ${JSON.stringify(ws)} ([C, M/group, …])`);
  }
  const n = lens.length;
  const opad = perAxis(c, "output_padding", n, 0, 0);
  let outShape = c.attr.ints("output_shape");
  if (outShape && outShape.length === n + 2) outShape = outShape.slice(2);
  if (outShape && outShape.length !== n) c.fail(`output_shape ${JSON.stringify(outShape)} does not give ${n} spatial sizes`);
  const auto = c.attr.string("auto_pad", "NOTSET");
  const strides = perAxis(c, "strides", n, 1, 1);
  const dil = perAxis(c, "dilations", n, 1, 1);
  const pads = c.attr.ints("pads");
  const ax = lens.map((len, i): Axis => ({ len, k: ws[2 + i], s: strides[i], d: dil[i], begin: 0, end: 0 }));
  const full = (a: Axis, i: number) => a.s * (a.len - 1) + opad[i] + (a.k - 1) * a.d + 1;
  const out: number[] = [];
  if (outShape || auto === "SAME_UPPER" || auto === "SAME_LOWER") {
    // ONNX: total = s·(in − 1) + output_padding + (k − 1)·d + 1 − out; SAME_UPPER puts the odd
    // one at the end, otherwise at the start. An output longer than that (total < 0) gains
    // rows at the end that no tap reaches: zeros, as ONNX's reference gives.
    ax.forEach((a, i) => {
      out.push(outShape ? outShape[i] : a.len * a.s);
      const total = full(a, i) - out[i];
      const half = Math.floor(total / 2);
      [a.begin, a.end] = total < 0 ? [0, total] : auto === "SAME_UPPER" ? [half, total - half] : [total - half, half];
    });
  } else {
    if (auto !== "NOTSET" && auto !== "VALID") c.fail(`auto_pad "${auto}" is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID`);
    if (pads && auto === "NOTSET") {
      if (pads.length !== 2 * n) c.fail(`pads has ${pads.length} entries for ${n} spatial axes`);
      if (pads.some((p) => p < 0)) c.refuse(`negative pads ${JSON.stringify(pads)} are not supported`);
      ax.forEach((a, i) => ((a.begin = pads[i]), (a.end = pads[n + i])));
    }
    ax.forEach((a, i) => out.push(full(a, i) - a.begin - a.end));
  }
  ax.forEach((a, i) => {
    // Rows past the last window's reach: output_padding, and an output_shape's surplus.
    const past = opad[i] - Math.min(a.end, 0);
    if (past >= a.s)
      c.refuse(`the output extends ${past} past the last window along spatial axis ${i}; Kiln needs less than the stride ${a.s}`);
    if (out[i] < 1) c.fail(`the output would have size ${out[i]} along spatial axis ${i}`);
    a.end = Math.max(a.end, 0);
  });
  const { x, ax: ax2 } = as2d(x0, ax);
  const out2 = n === 1 ? [1, out[0]] : out;
  const w0 = c.t(1);
  const w = w0.rank === 3 ? w0.reshape([ws[0], ws[1], 1, ws[2]]) : w0;
  const y = c.g.add("conv2d_grad_input", [nhwc(x), w.permute([2, 3, 1, 0])], {
    strides: pair(ax2, (a) => a.s),
    padding: kilnPads(ax2),
    dilations: pair(ax2, (a) => a.d),
    ...(group !== 1 ? { groups: group } : {}),
    shape: [x.shape[0], out2[0], out2[1], mg * group],
  });
  return [withBias(c, back(y, x0.rank), mg * group)];
}

/** The pool's output length along `a`, after moving ceil_mode's overhang into the end pad. */
function poolLen(c: OpCtx, a: Axis, ceil: boolean, i: number): number {
  const span = (a.k - 1) * a.d + 1;
  const room = a.len + a.begin + a.end - span;
  if (room < 0) c.fail(`the window spans ${span} along spatial axis ${i}, more than the padded ${a.len + a.begin + a.end}`);
  let o = (ceil ? Math.ceil(room / a.s) : Math.floor(room / a.s)) + 1;
  // A last window starting in the end padding is dropped (ONNX ≥ 19, PyTorch).
  if (ceil && (o - 1) * a.s >= a.len + a.begin) o -= 1;
  a.end = Math.max(a.end, (o - 1) * a.s + span - a.len - a.begin);
  return o;
}

const pool =
  (kind: "max" | "avg") =>
  (c: OpCtx): Emitted[] => {
    const x0 = c.t(0);
    const lens = spatial(c, x0);
    if (kind === "max" && c.wants(1)) c.refuse("the Indices output is not supported (Kiln's max pool gives the values only)");
    if (kind === "max" && c.version >= 8) c.attr.int("storage_order", 0);
    const kernel = c.attr.ints("kernel_shape");
    if (!kernel || kernel.length !== lens.length) c.fail(`kernel_shape ${JSON.stringify(kernel)} must give ${lens.length} sizes`);
    const ceil = c.version >= 10 && c.attr.int("ceil_mode", 0) !== 0;
    const countPad = kind === "avg" && c.attr.int("count_include_pad", 0) !== 0;
    const given = axes(c, lens, kernel);
    const { x, ax } = as2d(x0, given);
    const declared = ax.map((a) => [a.begin, a.end]);
    const outs = ax.map((a, i) => poolLen(c, a, ceil, i));
    let xh = nhwc(x);
    const dilated = ax.some((a) => a.d > 1);
    if (countPad) {
      // Explicit zeros for the declared pads: the pool counts them; only the overhang is skipped.
      xh = xh.pad([0, ax[0].begin, ax[1].begin, 0], [0, declared[0][1], declared[1][1], 0]);
      ax.forEach((a, i) => ((a.len += a.begin + declared[i][1]), (a.end -= declared[i][1]), (a.begin = 0)));
    }
    let y: Tensor;
    if (dilated) y = dilatedPool(xh, ax, outs, kind);
    else {
      ax.forEach((a, i) => {
        if (a.begin >= a.k || a.end >= a.k) c.refuse(`pads (${a.begin}, ${a.end}) along spatial axis ${i} reach a whole window of ${a.k}`);
      });
      const [win, st, pads] = [pair(ax, (a) => a.k), pair(ax, (a) => a.s), kilnPads(ax)];
      y = kind === "max" ? xh.maxPool2d(win, st, pads) : xh.avgPool2d(win, st, pads);
    }
    return [back(y, x0.rank)];
  };

/** A dilated pool over NHWC `x`: tap (i, j) of every window at once is a strided slice of the
 *  padded input; max takes their maximum (−∞ padding), avg their sum (0 padding) over the
 *  number of taps inside the input, per output position. */
function dilatedPool(x: Tensor, ax: readonly Axis[], outs: readonly number[], kind: "max" | "avg"): Tensor {
  const fill = kind === "max" ? -Infinity : 0;
  const xp = x.pad([0, ax[0].begin, ax[1].begin, 0], [0, ax[0].end, ax[1].end, 0], fill);
  const [n, , , ch] = xp.shape;
  let acc: Tensor | undefined;
  for (let i = 0; i < ax[0].k; i++) {
    for (let j = 0; j < ax[1].k; j++) {
      const [y0, x0] = [i * ax[0].d, j * ax[1].d];
      const tap = xp.slice(
        [0, y0, x0, 0],
        [n, y0 + (outs[0] - 1) * ax[0].s + 1, x0 + (outs[1] - 1) * ax[1].s + 1, ch],
        [1, ax[0].s, ax[1].s, 1],
      );
      acc = acc === undefined ? tap : kind === "max" ? acc.maximum(tap) : acc.add(tap);
    }
  }
  if (kind === "max") return acc!;
  // Taps of window o along one axis inside the unpadded input [begin, begin + len).
  const inside = (a: Axis, o: number) => {
    let k = 0;
    for (let t = 0; t < a.k; t++) {
      const p = o * a.s + t * a.d;
      if (p >= a.begin && p < a.begin + a.len) k++;
    }
    return k;
  };
  const counts: number[] = [];
  for (let p = 0; p < outs[0]; p++) for (let q = 0; q < outs[1]; q++) counts.push(inside(ax[0], p) * inside(ax[1], q));
  return acc!.div(x.builder.constant(counts, "f32", [1, outs[0], outs[1], 1]));
}

function lrn(c: OpCtx): Emitted[] {
  const x = c.t(0);
  if (x.rank < 3) c.fail(`X has rank ${x.rank}; LRN needs [N, C, D1, …]`);
  if (x.dtype !== "f32") c.refuse(`X is ${x.dtype}; Kiln's LRN computes f32`);
  const size = c.attr.intOr("size");
  if (size === undefined || size < 1) c.fail(`size ${size} must be given and ≥ 1`);
  const [alpha, beta, bias] = [c.attr.float("alpha", 1e-4), c.attr.float("beta", 0.75), c.attr.float("bias", 1)];
  const ch = x.shape[1];
  if (typeof ch !== "number") c.refuse(`the channel dim ${ch} must be static`);
  // Channel c sums channels c − ⌊(size−1)/2⌋ … c + ⌈(size−1)/2⌉ that exist.
  const [lo, hi] = [Math.floor((size - 1) / 2), Math.ceil((size - 1) / 2)];
  const zeros = ones(x.rank).map(() => 0);
  const before = zeros.map((_, a) => (a === 1 ? lo : 0));
  const after = zeros.map((_, a) => (a === 1 ? hi : 0));
  const sq = x.mul(x).pad(before, after);
  let sum: Tensor | undefined;
  for (let i = 0; i < size; i++) {
    const s = sq.slice(
      zeros.map((_, a) => (a === 1 ? i : 0)),
      x.shape.map((d, a) => (a === 1 ? i + ch : d)),
    );
    sum = sum ? sum.add(s) : s;
  }
  return [
    x.div(
      sum!
        .mul(alpha / size)
        .add(bias)
        .pow(beta),
    ),
  ];
}

export const CONV_OPS: OpTable = {
  Conv: { since: [1, 11, 22], emit: conv },
  ConvTranspose: { since: [1, 11, 22], emit: convTranspose },
  MaxPool: { since: [1, 8, 10, 11, 12, 22], emit: pool("max") },
  AveragePool: { since: [1, 7, 10, 11, 19, 22], emit: pool("avg") },
  LRN: { since: [1, 13], emit: lrn },
};
