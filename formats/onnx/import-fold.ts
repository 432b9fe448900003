/** Import-time arithmetic on known integer values: the shape computations exporters write
 *  (Shape → Gather → Mul → Concat → Reshape) evaluated while importing, so the Reshape gets a
 *  static shape. Only integer and bool values are folded, and only small ones: float work stays
 *  in the graph, and an initializer used as a tensor stays a parameter. */
import { broadcastShapes, isStatic } from "../../src/ir/shape.ts";
import type { DType, Dim } from "../../src/ir/types.ts";
import { forEachIndex } from "../../src/ops/tensor64.ts";
import type { OpCtx, Val } from "./import-context.ts";

const FOLD_LIMIT = 4096;

const foldable = (v: Val): v is Val & { known: ArrayLike<Dim>; shape: readonly number[] } =>
  v.known !== undefined && (v.dtype === "i32" || v.dtype === "bool") && isStatic(v.shape) && v.known.length <= FOLD_LIMIT;

/** Reads of `v` at an index of the broadcast shape `out`. */
function broadcastReader(v: { known: ArrayLike<Dim>; shape: readonly number[] }, out: readonly number[]) {
  const off = out.length - v.shape.length;
  const st: number[] = [];
  let acc = 1;
  for (let a = v.shape.length - 1; a >= 0; a--) {
    st[a] = v.shape[a] === 1 ? 0 : acc;
    acc *= v.shape[a];
  }
  return (idx: readonly number[]) => {
    let f = 0;
    for (let a = 0; a < v.shape.length; a++) f += idx[a + off] * st[a];
    return v.known[f];
  };
}

/** f over the inputs' known values with numpy broadcasting, or undefined when any is not known
 *  (or f cannot say, e.g. a symbolic dim times 2). */
export function foldElementwise(c: OpCtx, ins: readonly Val[], dtype: DType, f: (xs: Dim[]) => Dim | undefined): Val | undefined {
  if (!ins.every(foldable)) return undefined;
  const out = broadcastShapes(ins.map((v) => v.shape)) as number[] | undefined;
  if (!out) return undefined;
  const reads = ins.map((v) => broadcastReader(v as Val & { known: ArrayLike<Dim>; shape: readonly number[] }, out));
  const values: Dim[] = [];
  let ok = true;
  forEachIndex(out, (idx) => {
    if (!ok) return;
    const r = f(reads.map((read) => read(idx)));
    if (r === undefined) ok = false;
    else values.push(r);
  });
  return ok ? c.known(dtype, out, values) : undefined;
}

const num =
  (f: (a: number, b: number) => number) =>
  ([a, b]: Dim[]) =>
    typeof a === "number" && typeof b === "number" ? f(a, b) : undefined;

/** Integer arithmetic as ONNX defines it, with the symbolic dims it can keep (N·1, N+0). */
export const FOLD_BINARY: Readonly<Record<string, (xs: Dim[]) => Dim | undefined>> = {
  Add: (xs) => (xs[1] === 0 ? xs[0] : xs[0] === 0 ? xs[1] : num((a, b) => a + b)(xs)),
  Sub: (xs) => (xs[1] === 0 ? xs[0] : num((a, b) => a - b)(xs)),
  Mul: (xs) => (xs[1] === 1 ? xs[0] : xs[0] === 1 ? xs[1] : num((a, b) => a * b)(xs)),
  Div: (xs) =>
    xs[1] === 1 ? xs[0] : xs[0] === xs[1] && typeof xs[0] === "string" ? 1 : num((a, b) => (b === 0 ? Number.NaN : Math.trunc(a / b)))(xs),
  Max: num(Math.max),
  Min: num(Math.min),
  Equal: (xs) => (xs[0] === xs[1] ? 1 : typeof xs[0] === "number" && typeof xs[1] === "number" ? 0 : undefined),
  Less: num((a, b) => (a < b ? 1 : 0)),
  Greater: num((a, b) => (a > b ? 1 : 0)),
  And: num((a, b) => (a && b ? 1 : 0)),
  Or: num((a, b) => (a || b ? 1 : 0)),
};

/** Integer division by zero has no value: leave it to the graph (which refuses or defines it). */
export const finite = (v: Val | undefined): Val | undefined =>
  v?.known && Array.from(v.known).some((x) => typeof x === "number" && !Number.isFinite(x)) ? undefined : v;
