/** ONNX's movement and shape ops. Their shapes, axes, pads, starts and repeats must be known at
 *  import time (attributes, initializers, constants or shape arithmetic): Kiln's shapes are
 *  static or symbolic, never computed by the graph. On known values (a shape being assembled)
 *  Shape, Gather, Concat, Slice, Squeeze, Unsqueeze and Reshape fold at import time.
 *  What Kiln's primitives lack is composed: a negative-step Slice and the reflect, edge and
 *  wrap modes of Pad are gathers with constant indices, Tile an expand between reshapes. */
import { concat } from "../../src/api/builder.ts";
import { broadcastShapes, isStatic, sizeOf } from "../../src/ir/shape.ts";
import type { Dim, DType } from "../../src/ir/types.ts";
import { product, Val, type Emitted, type OpCtx, type OpTable } from "./import-context.ts";
import { dtypeOf, elemName } from "./import-tensor.ts";

const FOLD_LIMIT = 4096;
const foldable = (v: Val): boolean => v.known !== undefined && isStatic(v.shape) && v.known.length <= FOLD_LIMIT && v.dtype !== "f32";

/** The same known values under a new shape, or the tensor reshaped. */
function reshaped(c: OpCtx, v: Val, shape: Dim[]): Emitted {
  if (foldable(v) && isStatic(shape)) return c.known(v.dtype, shape, Array.from(v.known!));
  return v.tensor().reshape(shape);
}

/** Reshape's target: 0 copies the input's dim (unless allowzero), −1 takes what is left. */
function reshapeTarget(c: OpCtx, from: readonly Dim[], target: readonly Dim[], allowzero: boolean): Dim[] {
  const out = target.map((d, i) => {
    if (d === 0 && !allowzero) {
      if (i >= from.length) c.fail(`shape entry ${i} is 0 (copy), but the input has rank ${from.length}`);
      return from[i];
    }
    if (typeof d === "number" && d < -1) c.fail(`shape entry ${i} is ${d}`);
    return d;
  });
  const holes = out.filter((d) => d === -1).length;
  if (holes > 1) c.fail(`shape [${target}] has more than one −1`);
  if (holes === 0) return out;
  const have = sizeOf(from);
  const rest = sizeOf(out.filter((d) => d !== -1));
  const syms = [...have.syms];
  for (const s of rest.syms) {
    const k = syms.indexOf(s);
    if (k < 0) c.refuse(`cannot infer the −1 of [${target}] from [${from}]: Kiln's dims are numbers or single symbols`);
    syms.splice(k, 1);
  }
  const k = rest.k === 0 ? Number.NaN : have.k / rest.k;
  const fill = syms.length === 0 && Number.isInteger(k) ? k : syms.length === 1 && k === 1 ? syms[0] : undefined;
  if (fill === undefined) c.refuse(`cannot infer the −1 of [${target}] from [${from}]`);
  return out.map((d) => (d === -1 ? fill : d));
}

function reshape(c: OpCtx): Emitted[] {
  const v = c.val(0);
  const target = c.version < 5 ? (c.attr.ints("shape") ?? c.fail("no shape")) : c.dims(1, "shape");
  const allowzero = c.version >= 14 && c.attr.int("allowzero", 0) === 1;
  return [reshaped(c, v, reshapeTarget(c, v.shape, target, allowzero))];
}

function flatten(c: OpCtx): Emitted[] {
  const v = c.val(0);
  const r = v.shape.length;
  const axis = c.attr.int("axis", 1);
  const a = axis < 0 ? axis + r : axis;
  if (a < 0 || a > r) c.fail(`axis ${axis} is out of range for rank ${r}`);
  const [lead, rest] = [product(v.shape.slice(0, a)), product(v.shape.slice(a))];
  if (lead === undefined || rest === undefined) c.refuse(`flattening [${v.shape}] at axis ${a} makes a product of symbolic dims`);
  return [reshaped(c, v, [lead, rest])];
}

function transpose(c: OpCtx): Emitted[] {
  const x = c.t(0);
  const perm = c.attr.ints("perm") ?? x.shape.map((_, a) => x.rank - 1 - a);
  if (perm.length !== x.rank || new Set(perm).size !== perm.length || perm.some((p) => p < 0 || p >= x.rank)) {
    c.fail(`perm [${perm}] is not a permutation of rank ${x.rank}`);
  }
  return [perm.every((p, i) => p === i) ? x : x.permute(perm)];
}

function concatOp(c: OpCtx): Emitted[] {
  const vs = Array.from({ length: c.inputCount }, (_, i) => c.val(i));
  if (!vs.length) c.fail("needs at least one input");
  const rank = vs[0].shape.length;
  const axis = c.axis(c.attr.int("axis", c.version < 4 ? 1 : 0), rank);
  if (rank === 1 && vs.every(foldable)) {
    const values = vs.flatMap((v) => Array.from(v.known!));
    return [c.known(vs[0].dtype, [values.length], values)];
  }
  const ts = vs.map((v) => v.tensor());
  return [ts.length === 1 ? ts[0] : concat(ts, axis)];
}

/** The static size of axis `a` of `shape`, or a refusal naming why it is needed. */
function staticDim(c: OpCtx, shape: readonly Dim[], a: number, why: string): number {
  const d = shape[a];
  if (typeof d !== "number") c.refuse(`${why} needs axis ${a} to be static, but it is the symbolic dim ${d}`);
  return d;
}

/** Elements `idx` of `v` along `axis`, from known values when they are (rank 1), else a gather
 *  with constant indices. */
function take(c: OpCtx, v: Val, axis: number, idx: readonly number[]): Emitted {
  if (v.shape.length === 1 && foldable(v))
    return c.known(
      v.dtype,
      [idx.length],
      idx.map((i) => v.known![i]),
    );
  return v.tensor().gather(c.g.constant([...idx], "i32", [idx.length]), axis);
}

function sliceAxis(c: OpCtx, v: Val, axis: number, begin: number, end: number, step: number): Emitted {
  const idx: number[] = [];
  for (let i = begin; step > 0 ? i < end : i > end; i += step) idx.push(i);
  const d = v.shape[axis];
  if (step === 1 && !(v.shape.length === 1 && foldable(v))) {
    const x = v.tensor();
    if (begin === 0 && end === d) return x;
    const b = x.shape.map((_, a) => (a === axis ? begin : 0));
    const e = x.shape.map((s, a) => (a === axis ? Math.max(begin, end) : s));
    return x.slice(b, e);
  }
  if (step > 0 && !(v.shape.length === 1 && foldable(v))) {
    const x = v.tensor();
    const b = x.shape.map((_, a) => (a === axis ? begin : 0));
    const e = x.shape.map((s, a) => (a === axis ? Math.max(begin, end) : s));
    const s = x.shape.map((_, a) => (a === axis ? step : 1));
    return x.slice(b, e, s);
  }
  return take(c, v, axis, idx);
}

function slice(c: OpCtx): Emitted[] {
  let v = c.val(0);
  const rank = v.shape.length;
  const [starts, ends] = c.version < 10 ? [c.attr.ints("starts"), c.attr.ints("ends")] : [c.ints(1, "starts"), c.ints(2, "ends")];
  if (!starts || !ends || starts.length !== ends.length) c.fail("starts and ends must be given, of one length");
  const axes = c.axes((c.version < 10 ? c.attr.ints("axes") : c.has(3) ? c.ints(3, "axes") : undefined) ?? starts.map((_, i) => i), rank);
  const steps = (c.version >= 10 && c.has(4) ? c.ints(4, "steps") : undefined) ?? starts.map(() => 1);
  if (axes.length !== starts.length || steps.length !== starts.length) c.fail("starts, ends, axes and steps differ in length");
  let out: Emitted = undefined;
  axes.forEach((a, k) => {
    const step = steps[k];
    if (step === 0) c.fail("a step is 0");
    const d = v.shape[a];
    if (typeof d === "string") {
      if (starts[k] === 0 && ends[k] >= 2147483647 && step === 1) return;
      c.refuse(`slicing the symbolic axis ${a} (${d}): only the whole axis can be kept`);
    }
    const norm = (i: number) => (i < 0 ? i + d : i);
    const [b, e] =
      step > 0
        ? [Math.min(Math.max(norm(starts[k]), 0), d), Math.min(Math.max(norm(ends[k]), 0), d)]
        : [Math.min(Math.max(norm(starts[k]), 0), d - 1), Math.min(Math.max(norm(ends[k]), -1), d - 1)];
    out = sliceAxis(c, v, a, b, e, step);
    v = out instanceof Val ? out : Val.of(out!);
  });
  return [out ?? v];
}

function split(c: OpCtx): Emitted[] {
  const v = c.val(0);
  const axis = c.axis(c.attr.int("axis", 0), v.shape.length);
  const n = c.outputs.length;
  let sizes = c.version >= 13 ? (c.has(1) ? c.ints(1, "split") : undefined) : c.attr.ints("split");
  const count = c.version >= 18 ? c.attr.intOr("num_outputs") : undefined;
  const d = staticDim(c, v.shape, axis, "Split");
  if (!sizes) {
    if (count !== undefined) {
      if (count !== n) c.fail(`num_outputs is ${count}, but the node has ${n} outputs`);
      const chunk = Math.ceil(d / n);
      sizes = Array.from({ length: n }, (_, k) => Math.max(0, Math.min(chunk, d - chunk * k)));
    } else {
      if (d % n !== 0) c.fail(`axis ${axis} (${d}) does not split into ${n} equal parts`);
      sizes = Array<number>(n).fill(d / n);
    }
  }
  if (sizes.length !== n || sizes.some((s) => s < 0) || sizes.reduce((a, b) => a + b, 0) !== d) {
    c.fail(`split sizes [${sizes}] do not cover axis ${axis} (${d}) with ${n} outputs`);
  }
  let at = 0;
  return sizes.map((s) => {
    const r = sliceAxis(c, v, axis, at, at + s, 1);
    at += s;
    return r;
  });
}

function squeeze(c: OpCtx): Emitted[] {
  const v = c.val(0);
  const rank = v.shape.length;
  const list = c.intsOf(1, "axes");
  const axes = list ? c.axes(list, rank) : v.shape.map((_, a) => a).filter((a) => v.shape[a] === 1);
  for (const a of axes) if (v.shape[a] !== 1) c.fail(`axis ${a} has size ${v.shape[a]}, not 1`);
  return [
    reshaped(
      c,
      v,
      v.shape.filter((_, a) => !axes.includes(a)),
    ),
  ];
}

function unsqueeze(c: OpCtx): Emitted[] {
  const v = c.val(0);
  const list = c.intsOf(1, "axes") ?? c.fail("axes are required");
  const rank = v.shape.length + list.length;
  const axes = c.axes(list, rank);
  const shape: Dim[] = [];
  let k = 0;
  for (let a = 0; a < rank; a++) shape.push(axes.includes(a) ? 1 : v.shape[k++]);
  return [reshaped(c, v, shape)];
}

function expand(c: OpCtx): Emitted[] {
  const x = c.t(0);
  const shape = c.dims(1, "shape");
  const out = broadcastShapes([x.shape, shape]);
  if (!out) c.fail(`[${x.shape}] does not broadcast with [${shape}]`);
  return [out.length === x.rank && out.every((d, a) => d === x.shape[a]) ? x : x.expand(out)];
}

/** Each axis a repeated r times: [d0, d1] → [1, d0, 1, d1] → [r0, d0, r1, d1] → [r0·d0, r1·d1]. */
function tile(c: OpCtx): Emitted[] {
  const x = c.t(0);
  const reps = c.ints(1, "repeats");
  if (reps.length !== x.rank || reps.some((r) => r < 0)) c.fail(`repeats [${reps}] do not fit rank ${x.rank}`);
  if (reps.every((r) => r === 1)) return [x];
  const out = x.shape.map((d, a) => (reps[a] === 1 ? d : reps[a] * staticDim(c, x.shape, a, "Tile")));
  const spread = x.reshape(x.shape.flatMap((d) => [1, d]));
  return [spread.expand(x.shape.flatMap((d, a) => [reps[a], d])).reshape(out)];
}

function gather(c: OpCtx): Emitted[] {
  const data = c.val(0);
  const ind = c.val(1);
  const axis = c.axis(c.attr.int("axis", 0), data.shape.length);
  const d = data.shape[axis];
  if (ind.known && isStatic(ind.shape)) {
    const dim = staticDim(c, data.shape, axis, "Gather with constant indices");
    const idx = Array.from(ind.known, (i) => {
      if (typeof i !== "number" || i < -dim || i >= dim) c.fail(`index ${i} is out of range for axis ${axis} (${dim})`);
      return i < 0 ? i + dim : i;
    });
    if (data.shape.length === 1 && foldable(data)) {
      return [
        c.known(
          data.dtype,
          ind.shape as number[],
          idx.map((i) => data.known![i]),
        ),
      ];
    }
    return [data.tensor().gather(c.g.constant(idx, "i32", ind.shape), axis)];
  }
  const t = ind.tensor();
  if (typeof d !== "number") c.refuse(`run-time indices into the symbolic axis ${axis} (${d}): a negative index needs its size`);
  return [data.tensor().gather(t.lt(0).select(t.add(d), t), axis)];
}

/** Source index along an axis of size d for output position j (−before ≤ j < d + after). */
const PAD_MODES: Readonly<Record<string, (j: number, d: number) => number>> = {
  edge: (j, d) => Math.min(Math.max(j, 0), d - 1),
  reflect: (j, d) => {
    if (d === 1) return 0;
    const p = 2 * (d - 1);
    const m = ((j % p) + p) % p;
    return m < d ? m : p - m;
  },
  wrap: (j, d) => ((j % d) + d) % d,
};

function pad(c: OpCtx): Emitted[] {
  let x = c.t(0);
  const mode = c.attr.string("mode", "constant");
  const pads = c.version < 11 ? (c.attr.ints(c.version < 2 ? "paddings" : "pads") ?? c.fail("pads are required")) : c.ints(1, "pads");
  let value = 0;
  if (c.version < 11) value = c.attr.float("value", 0);
  else if (c.has(2)) value = Number(c.dims(2, "constant_value")[0] ?? 0);
  const axes = c.version >= 18 && c.has(3) ? c.axes(c.ints(3, "axes"), x.rank) : x.shape.map((_, a) => a);
  if (pads.length !== 2 * axes.length) c.fail(`pads has ${pads.length} entries for ${axes.length} axes`);
  if (mode !== "constant" && !(mode in PAD_MODES)) c.refuse(`mode "${mode}"`);
  if (mode === "wrap" && c.version < 19) c.fail(`mode "wrap" needs opset 19`);
  const before = x.shape.map(() => 0);
  const after = x.shape.map(() => 0);
  axes.forEach((a, k) => {
    before[a] = pads[k];
    after[a] = pads[k + axes.length];
  });
  // Negative pads crop.
  if ([...before, ...after].some((p) => p < 0)) {
    const b = x.shape.map((_, a) => Math.max(0, -before[a]));
    const e = x.shape.map((d, a) => (after[a] < 0 ? staticDim(c, x.shape, a, "a negative pad") + after[a] : d));
    x = x.slice(b, e);
  }
  const [pb, pa] = [before.map((p) => Math.max(p, 0)), after.map((p) => Math.max(p, 0))];
  if (pb.every((p) => p === 0) && pa.every((p) => p === 0)) return [x];
  if (mode === "constant") {
    for (let a = 0; a < x.rank; a++) if (pb[a] || pa[a]) staticDim(c, x.shape, a, "Pad");
    return [x.pad(pb, pa, value)];
  }
  for (let a = 0; a < x.rank; a++) {
    if (!pb[a] && !pa[a]) continue;
    const d = staticDim(c, x.shape, a, `Pad mode ${mode}`);
    if (d === 0) c.fail(`mode "${mode}" cannot pad the empty axis ${a}`);
    const idx = Array.from({ length: d + pb[a] + pa[a] }, (_, j) => PAD_MODES[mode](j - pb[a], d));
    x = x.gather(c.g.constant(idx, "i32", [idx.length]), a);
  }
  return [x];
}

/** A constant's values; of a dtype Kiln cannot compute in, still readable as a static list. */
function constant(c: OpCtx): Emitted[] {
  const t = c.attr.tensor("value");
  const f = c.attr.floats("value_floats") ?? (c.attr.has("value_float") ? [c.attr.float("value_float", 0)] : undefined);
  const i = c.attr.ints("value_ints") ?? (c.attr.has("value_int") ? [c.attr.int("value_int", 0)] : undefined);
  for (const a of ["sparse_value", "value_string", "value_strings"]) if (c.attr.has(a)) c.refuse(`attribute ${a}`);
  if (t) {
    const dtype = dtypeOf(t.elem);
    if (typeof dtype !== "string") c.refuse(`a ${elemName(t.elem)} value: Kiln does not support ${dtype.refuse}`);
    return [c.known(dtype, t.dims, Array.from(dtype === "f32" ? Float32Array.from(t.values) : t.values))];
  }
  if (f) return [c.known("f32", c.attr.has("value_float") ? [] : [f.length], Array.from(Float32Array.from(f)))];
  if (i) return [c.known("i32", c.attr.has("value_int") ? [] : [i.length], i)];
  return c.fail("has no value");
}

function constantOfShape(c: OpCtx): Emitted[] {
  const shape = c.dims(0, "shape");
  const t = c.attr.tensor("value");
  let dtype: DType = "f32";
  let value = 0;
  if (t) {
    const d = dtypeOf(t.elem);
    if (typeof d !== "string") c.refuse(`a ${elemName(t.elem)} value: Kiln does not support ${d.refuse}`);
    if (t.values.length !== 1) c.fail(`value has ${t.values.length} elements, not 1`);
    [dtype, value] = [d, t.values[0]];
  }
  if (dtype !== "f32" && isStatic(shape)) {
    const n = (shape as number[]).reduce((a, b) => a * b, 1);
    if (n <= FOLD_LIMIT) return [c.known(dtype, shape as number[], Array<number>(n).fill(value))];
  }
  return [c.g.constant(value, dtype, shape)];
}

function shapeOp(c: OpCtx): Emitted[] {
  const s = c.val(0).shape;
  const r = s.length;
  const clamp = (i: number) => Math.min(Math.max(i < 0 ? i + r : i, 0), r);
  const [b, e] = c.version >= 15 ? [clamp(c.attr.int("start", 0)), clamp(c.attr.intOr("end") ?? r)] : [0, r];
  const dims = s.slice(b, Math.max(b, e));
  return [c.known("i32", [dims.length], dims)];
}

function size(c: OpCtx): Emitted[] {
  const n = product(c.val(0).shape);
  if (n === undefined) c.refuse(`the size of [${c.val(0).shape}] is a product of symbolic dims`);
  return [c.known("i32", [], [n])];
}

export const SHAPE_OPS: OpTable = {
  Reshape: { since: [5, 13, 14, 19, 21, 23, 24, 25], emit: reshape },
  Flatten: { since: [1, 9, 11, 13, 21, 23, 24, 25], emit: flatten },
  Transpose: { since: [1, 13, 21, 23, 24, 25], emit: transpose },
  Concat: { since: [4, 11, 13], emit: concatOp },
  Split: { since: [2, 11, 13, 18], emit: split },
  Slice: { since: [1, 10, 11, 13], emit: slice },
  Squeeze: { since: [1, 11, 13, 21, 23, 24, 25], emit: squeeze },
  Unsqueeze: { since: [1, 11, 13, 21, 23, 24, 25], emit: unsqueeze },
  Expand: { since: [8, 13], emit: expand },
  Tile: { since: [6, 13], emit: tile },
  Gather: { since: [1, 11, 13], emit: gather },
  Pad: { since: [2, 11, 13, 18, 19, 21, 23, 24, 25], emit: pad },
  Constant: { since: [1, 9, 11, 12, 13, 19, 21, 23, 24, 25], emit: constant },
  ConstantOfShape: { since: [9, 20, 21, 23, 24, 25], emit: constantOfShape },
  Shape: { since: [1, 13, 15, 19, 21, 23, 24, 25], emit: shapeOp },
  Size: { since: [1, 13, 19, 21, 23, 24, 25], emit: size },
};
