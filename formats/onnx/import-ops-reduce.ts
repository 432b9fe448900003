/** ONNX's reductions. The axes are an attribute until ReduceSum-13 and the others' version 18,
 *  an optional input since; no axes reduces all of them unless noop_with_empty_axes, which
 *  makes the op the identity. ReduceProd is a tree of multiplications over halves of the axis
 *  (exact for integers, where exp Σ log would not be); ArgMin is ArgMax of −x, and
 *  select_last_index reverses the axis first. */
import { concat, type Tensor } from "../../src/api/builder.ts";
import { logsumexp } from "../../src/api/composites.ts";
import type { Emitted, OpCtx, OpRecord, OpTable } from "./import-context.ts";

/** The axes to reduce, or undefined for the identity (noop_with_empty_axes). */
function reduceAxes(c: OpCtx, rank: number, inputSince: number): number[] | undefined {
  const asInput = c.version >= inputSince;
  const list = asInput ? (c.has(1) ? c.ints(1, "axes") : undefined) : c.attr.ints("axes");
  const noop = asInput ? c.attr.int("noop_with_empty_axes", 0) : 0;
  if (!list || list.length === 0) return noop ? undefined : Array.from({ length: rank }, (_, a) => a);
  return c.axes(list, rank);
}

const reduction = (since: number[], inputSince: number, f: (x: Tensor, axes: number[], keep: boolean, c: OpCtx) => Tensor): OpRecord => ({
  since,
  emit: (c): Emitted[] => {
    const x = c.t(0);
    const keep = c.attr.int("keepdims", 1) === 1;
    const axes = reduceAxes(c, x.rank, inputSince);
    return [axes === undefined ? x : f(x, axes, keep, c)];
  },
});

/** The product over axis a, kept as size 1: pairwise products of the two halves, an odd
 *  element carried along, until one is left. */
function prodAxis(c: OpCtx, x: Tensor, a: number): Tensor {
  let d = x.shape[a];
  if (typeof d !== "number") c.refuse(`ReduceProd over the symbolic axis ${a} (${d})`);
  if (d === 0) return c.g.constant(1, x.dtype).expand(x.shape.map((s, k) => (k === a ? 1 : s)));
  const part = (t: Tensor, b: number, e: number) =>
    t.slice(
      t.shape.map((_, k) => (k === a ? b : 0)),
      t.shape.map((s, k) => (k === a ? e : s)),
    );
  let t = x;
  while (d > 1) {
    const h = Math.floor(d / 2);
    const m = part(t, 0, h).mul(part(t, h, 2 * h));
    t = d % 2 ? concat([m, part(t, 2 * h, d)], a) : m;
    d = t.shape[a] as number;
  }
  return t;
}

function prod(x: Tensor, axes: number[], keep: boolean, c: OpCtx): Tensor {
  let t = x;
  for (const a of axes) t = prodAxis(c, t, a);
  return keep ? t : t.reshape(x.shape.filter((_, a) => !axes.includes(a)));
}

const square = (x: Tensor) => x.mul(x);

/** Max and min of bools (version 20): any and all, through i32. */
const extreme = (f: (x: Tensor, axes: number[], keep: boolean) => Tensor) => (x: Tensor, axes: number[], keep: boolean) =>
  x.dtype === "bool" ? f(x.cast("i32"), axes, keep).cast("bool") : f(x, axes, keep);

function argExtreme(min: boolean): OpRecord {
  return {
    since: [1, 11, 12, 13],
    emit: (c) => {
      let x = c.t(0);
      const axis = c.axis(c.attr.int("axis", 0), x.rank);
      const keep = c.attr.int("keepdims", 1) === 1;
      const last = c.version >= 12 && c.attr.int("select_last_index", 0) === 1;
      if (min) {
        if (x.dtype === "u32") c.refuse("ArgMin of u32");
        x = x.neg();
      }
      if (!last) return [x.argmax(axis, keep)];
      const d = x.shape[axis];
      if (typeof d !== "number") return c.refuse(`select_last_index over the symbolic axis ${axis} (${d})`);
      const rev = x.gather(
        c.g.constant(
          Array.from({ length: d }, (_, i) => d - 1 - i),
          "i32",
          [d],
        ),
        axis,
      );
      return [c.g.constant(d - 1, "i32").sub(rev.argmax(axis, keep))];
    },
  };
}

export const REDUCE_OPS: OpTable = {
  ReduceSum: reduction([1, 11, 13], 13, (x, axes, keep) => x.sum(axes, keep)),
  ReduceMean: reduction([1, 11, 13, 18], 18, (x, axes, keep) => x.mean(axes, keep)),
  ReduceMax: reduction(
    [1, 11, 12, 13, 18, 20],
    18,
    extreme((x, axes, keep) => x.max(axes, keep)),
  ),
  ReduceMin: reduction(
    [1, 11, 12, 13, 18, 20],
    18,
    extreme((x, axes, keep) => x.min(axes, keep)),
  ),
  ReduceProd: reduction([1, 11, 13, 18], 18, prod),
  ReduceL1: reduction([1, 11, 13, 18], 18, (x, axes, keep) => x.abs().sum(axes, keep)),
  ReduceL2: reduction([1, 11, 13, 18], 18, (x, axes, keep) => square(x).sum(axes, keep).sqrt()),
  ReduceSumSquare: reduction([1, 11, 13, 18], 18, (x, axes, keep) => square(x).sum(axes, keep)),
  ReduceLogSum: reduction([1, 11, 13, 18], 18, (x, axes, keep) => x.sum(axes, keep).log()),
  ReduceLogSumExp: reduction([1, 11, 13, 18], 18, (x, axes, keep) => logsumexp(x, axes, keep)),
  ArgMax: argExtreme(false),
  ArgMin: argExtreme(true),
};
