/** ONNX ops built from element indices (Kiln's iota) and index maps:
 *    Trilu:          x where (j − i ≥ k) (upper) or (j − i ≤ k) (lower), else 0
 *    OneHot, Hardmax, EyeLike: an iota compared with indices, an argmax or itself
 *    GatherElements: a gather from the flattened data at Σ coordinate·stride, the axis's
 *                    coordinate replaced by the index
 *    CumSum:         Hillis–Steele prefix sums, x + shift(x, 1), + shift(·, 2), …: log₂ d exact
 *                    additions (integers stay exact), reversed by a constant gather
 *    DepthToSpace, SpaceToDepth: a reshape, a permute and a reshape
 *    Range:          its values, computed at import time from static bounds */
import type { Tensor } from "../../src/api/builder.ts";
import { strides } from "../../src/ir/shape.ts";
import type { Dim } from "../../src/ir/types.ts";
import { product, type Emitted, type OpCtx, type OpTable } from "./import-context.ts";
import { dtypeOf, elemName } from "./import-tensor.ts";

const zeroOf = (c: OpCtx, x: Tensor) => c.g.constant(0, x.dtype);

function staticShape(c: OpCtx, x: Tensor, why: string): number[] {
  const sym = x.shape.find((d) => typeof d === "string");
  if (sym !== undefined) c.refuse(`${why} needs a static shape, but [${x.shape}] has the symbolic dim ${sym}`);
  return x.shape as number[];
}

function trilu(c: OpCtx): Emitted[] {
  const x = c.t(0);
  if (x.rank < 2) c.fail(`input has rank ${x.rank}; Trilu needs ≥ 2`);
  const k = c.has(1) ? c.ints(1, "k")[0] : 0;
  const upper = c.attr.int("upper", 1) === 1;
  const mn = x.shape.slice(-2);
  const diff = c.g.iota(mn, 1).sub(c.g.iota(mn, 0));
  return [(upper ? diff.ge(k) : diff.le(k)).select(x, zeroOf(c, x))];
}

function oneHot(c: OpCtx): Emitted[] {
  let idx = c.t(0);
  const [depth] = c.ints(1, "depth").map(Math.trunc);
  const values = c.t(2);
  const rank = idx.rank + 1;
  const axis = c.axis(c.attr.int("axis", -1), rank);
  if (idx.dtype === "f32") idx = idx.cast("i32");
  idx = idx.lt(0).select(idx.add(depth), idx);
  const shape = [...idx.shape.slice(0, axis), depth, ...idx.shape.slice(axis)];
  const at = idx.reshape([...idx.shape.slice(0, axis), 1, ...idx.shape.slice(axis)]);
  const [off, on] = [values.slice([0], [1]).reshape([]), values.slice([1], [2]).reshape([])];
  return [c.g.iota(shape, axis).eq(at).select(on, off)];
}

function gatherElements(c: OpCtx): Emitted[] {
  const data = c.t(0);
  let idx = c.t(1);
  const axis = c.axis(c.attr.int("axis", 0), data.rank);
  if (idx.rank !== data.rank) c.fail(`indices have rank ${idx.rank}, data ${data.rank}`);
  const ds = staticShape(c, data, "GatherElements");
  const is = staticShape(c, idx, "GatherElements");
  const st = strides(ds);
  idx = idx.lt(0).select(idx.add(ds[axis]), idx);
  let flat: Tensor | undefined;
  for (let a = 0; a < data.rank; a++) {
    const coord = a === axis ? idx : c.g.iota(is, a);
    const term = st[a] === 1 ? coord : coord.mul(st[a]);
    flat = flat ? flat.add(term) : term;
  }
  const n = ds.reduce((x, y) => x * y, 1);
  return [data.reshape([n]).gather(flat ?? c.g.constant(0, "i32", []), 0)];
}

/** x reversed along `axis` (static). */
function reverse(c: OpCtx, x: Tensor, axis: number): Tensor {
  const d = x.shape[axis] as number;
  return x.gather(
    c.g.constant(
      Array.from({ length: d }, (_, i) => d - 1 - i),
      "i32",
      [d],
    ),
    axis,
  );
}

/** x moved `s` places along `axis`, zeros coming in at the front. */
function shift(x: Tensor, axis: number, s: number): Tensor {
  const d = x.shape[axis] as number;
  const kept = x.slice(
    x.shape.map(() => 0),
    x.shape.map((e, a) => (a === axis ? d - s : e)),
  );
  return kept.pad(
    x.shape.map((_, a) => (a === axis ? s : 0)),
    x.shape.map(() => 0),
  );
}

function cumSum(c: OpCtx): Emitted[] {
  let x = c.t(0);
  const [a0] = c.ints(1, "axis");
  const axis = c.axis(a0, x.rank);
  const d = x.shape[axis];
  if (typeof d !== "number") return c.refuse(`a cumulative sum over the symbolic axis ${axis} (${d})`);
  const rev = c.attr.int("reverse", 0) === 1;
  const exclusive = c.attr.int("exclusive", 0) === 1;
  if (rev) x = reverse(c, x, axis);
  for (let s = 1; s < d; s *= 2) x = x.add(shift(x, axis, s));
  if (exclusive && d > 0) x = shift(x, axis, 1);
  return [rev ? reverse(c, x, axis) : x];
}

function hardmax(c: OpCtx): Emitted[] {
  const x = c.t(0);
  if (c.version >= 13) {
    const axis = c.axis(c.attr.int("axis", -1), x.rank);
    return [c.g.iota(x.shape, axis).eq(x.argmax(axis, true)).select(1, 0).cast(x.dtype)];
  }
  const axis = c.axis(c.attr.int("axis", 1), x.rank);
  const [lead, rest] = [product(x.shape.slice(0, axis)), product(x.shape.slice(axis))];
  if (lead === undefined || rest === undefined) return c.refuse(`flattening [${x.shape}] at axis ${axis} makes a product of symbolic dims`);
  const flat = x.reshape([lead, rest]);
  const r = c.g.iota(flat.shape, 1).eq(flat.argmax(1, true)).select(1, 0).cast(x.dtype);
  return [r.reshape(x.shape)];
}

function eyeLike(c: OpCtx): Emitted[] {
  const x = c.val(0);
  if (x.shape.length !== 2) c.fail(`input has rank ${x.shape.length}; EyeLike needs 2`);
  const to = c.attr.intOr("dtype");
  const dtype = to === undefined ? x.dtype : dtypeOf(to);
  if (typeof dtype !== "string") return c.refuse(`dtype ${elemName(to!)}: Kiln does not support ${dtype.refuse}`);
  const k = c.attr.int("k", 0);
  const diff = c.g.iota(x.shape, 1).sub(c.g.iota(x.shape, 0));
  return [diff.eq(k).cast(dtype)];
}

function depthToSpace(c: OpCtx): Emitted[] {
  const x = c.t(0);
  const b = c.attr.int("blocksize", 0);
  const mode = c.version >= 11 ? c.attr.string("mode", "DCR") : "DCR";
  if (x.rank !== 4 || b < 1) c.fail(`needs a 4-D input and blocksize ≥ 1 (rank ${x.rank}, blocksize ${b})`);
  const [n, ch, h, w] = x.shape;
  if (typeof ch !== "number" || ch % (b * b) !== 0) return c.fail(`channels ${ch} are not a static multiple of ${b * b}`);
  const [hh, ww] = [h, w].map((d) => (typeof d === "number" ? d * b : c.refuse(`a symbolic spatial dim ${d}`)));
  const cc = ch / (b * b);
  const t =
    mode === "DCR"
      ? x.reshape([n, b, b, cc, h, w]).permute([0, 3, 4, 1, 5, 2])
      : mode === "CRD"
        ? x.reshape([n, cc, b, b, h, w]).permute([0, 1, 4, 2, 5, 3])
        : c.refuse(`mode "${mode}"`);
  return [t.reshape([n, cc, hh, ww])];
}

function spaceToDepth(c: OpCtx): Emitted[] {
  const x = c.t(0);
  const b = c.attr.int("blocksize", 0);
  if (x.rank !== 4 || b < 1) c.fail(`needs a 4-D input and blocksize ≥ 1 (rank ${x.rank}, blocksize ${b})`);
  const [n, ch, h, w] = x.shape;
  const dims = [ch, h, w].map((d) => (typeof d === "number" ? d : c.refuse(`a symbolic dim ${d}`)));
  if (dims[1] % b || dims[2] % b) c.fail(`spatial dims ${h}×${w} are not multiples of ${b}`);
  const [hb, wb] = [dims[1] / b, dims[2] / b];
  const t = x.reshape([n, dims[0], hb, b, wb, b]).permute([0, 3, 5, 1, 2, 4]);
  return [t.reshape([n, dims[0] * b * b, hb, wb])];
}

function range(c: OpCtx): Emitted[] {
  const [start, limit, delta] = [0, 1, 2].map((i) => {
    const v = c.dims(i, ["start", "limit", "delta"][i]);
    if (v.length !== 1 || typeof v[0] !== "number") c.fail(`input ${i} must be a static scalar`);
    return v[0] as number;
  });
  if (delta === 0) c.fail("delta is 0");
  const n = Math.max(Math.ceil((limit - start) / delta), 0);
  const dtype = c.val(0).dtype;
  const values: Dim[] = Array.from({ length: n }, (_, i) => start + i * delta);
  if (dtype === "f32") return [c.g.constant(values as number[], "f32", [n])];
  return [c.known(dtype, [n], values)];
}

export const INDEX_OPS: OpTable = {
  Trilu: { since: [14], emit: trilu },
  OneHot: { since: [9, 11], emit: oneHot },
  GatherElements: { since: [11, 13], emit: gatherElements },
  CumSum: { since: [11, 14], emit: cumSum },
  Hardmax: { since: [1, 11, 13], emit: hardmax },
  EyeLike: { since: [9, 22], emit: eyeLike },
  DepthToSpace: { since: [1, 11, 13], emit: depthToSpace },
  SpaceToDepth: { since: [1, 13], emit: spaceToDepth },
  Range: { since: [11], emit: range },
};
