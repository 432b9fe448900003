/** gather: rows of a table picked by an i32 index tensor — an index map like the movement ops
 *  (./movement.ts), inlined into its consumers' loads, whose coordinates also read the indices.
 *  Its gradient wrt the table is a one-hot contraction (a matmul), so symbolic dims work. */
import type { Tensor } from "../api/builder.ts";
import { oneHot } from "../api/one-hot.ts";
import { formatShape, normAxis } from "../ir/shape.ts";
import type { Dim, TensorType } from "../ir/types.ts";
import { defineOp, fail, type VjpCtx } from "./def.ts";
import { generate, reader } from "./movement.ts";
import { lit } from "./wgsl.ts";

/** table[…, indices, …] along `axis`: the output is table.shape[:axis] ++ indices.shape ++
 *  table.shape[axis+1:], and indices are i32 of any shape.
 *  An index out of range (negative or ≥ the dim) is an error in the reference. A kernel cannot
 *  throw, so on the GPU it reads as 0 (false for bool): the read is clamped into range and a
 *  select replaces it. */
export const gather = defineOp({
  name: "gather",
  arity: 2,
  attrs: { axis: "int" },
  infer: (ins, a) => {
    const [table, indices] = ins;
    if (indices.dtype !== "i32") fail(`gather: indices must be i32, got ${indices.dtype}`, ins);
    const r = table.shape.length;
    if (normAxis(a.axis, r) !== a.axis) fail(`gather: axis ${a.axis} out of range for a table of rank ${r}`, ins);
    return { dtype: table.dtype, shape: gatherShape(table, indices, a.axis) };
  },
  reference: ([table, indices], a, out) => {
    const read = reader(table);
    const readIndex = reader(indices);
    const n = indices.shape.length;
    const dim = table.shape[a.axis];
    return generate(out, (idx) => {
      const pos = idx.slice(a.axis, a.axis + n);
      const j = readIndex(pos);
      if (j < 0 || j >= dim)
        throw new Error(
          `gather: index ${j} at position ${formatShape(pos)} of the indices is out of range for dim ${dim} (axis ${a.axis})`,
        );
      return read([...idx.slice(0, a.axis), j, ...idx.slice(a.axis + n)]);
    });
  },
  pattern: { kind: "injective", splat: false },
  lower: {
    kind: "index",
    expr: (c) => {
      const { axis } = c.attrs;
      const n = c.inTypes[1].shape.length;
      const dim = c.inTypes[0].shape[axis];
      const zero = lit(0, c.type.dtype);
      if (dim === 0) return zero;
      // A negative i32 becomes a huge u32: one comparison checks both ends.
      const j = `bitcast<u32>(${c.at(1, c.out.slice(axis, axis + n))})`;
      // max(dim, 1): a symbolic dim bound to 0 must not wrap; the buffer still holds one element.
      const lastIndex = typeof dim === "number" ? `${dim - 1}u` : `max(${c.dim(dim)}, 1u) - 1u`;
      const clamped = `min(${j}, ${lastIndex})`;
      const row = c.at(0, [...c.out.slice(0, axis), clamped, ...c.out.slice(axis + n)]);
      return `select(${zero}, ${row}, ${j} < ${c.dim(dim)})`;
    },
  },
  vjp: (ctx) => [gatherVjp(ctx), undefined],
});

function gatherShape(table: TensorType, indices: TensorType, axis: number): Dim[] {
  return [...table.shape.slice(0, axis), ...indices.shape, ...table.shape.slice(axis + 1)];
}

/** The table's cotangent is a scatter-add of g, as a contraction with oneHot(indices) by a matmul
 *  (indices get none; an out-of-range index has a row of zeros, so it adds nothing, as the GPU
 *  reads 0 there). With table [P…, V, Q…], indices [I…] and g [P…, I…, Q…]:
 *      dtable[p, v, q] = Σ_i oneHot[i, v] · g[p, i, q]  =  oneHotᵀ [V, K] × g [P…, K, Q]
 *  where K merges the static I dims and Q the static Q dims. A symbolic dim cannot be merged with
 *  others, so a symbolic I dim becomes a batch dim of the matmul that is summed afterwards, and a
 *  symbolic Q dim a batch dim moved back into place afterwards. P stays as batch dims. */
function gatherVjp({ g, ins: [table, indices], attrs: { axis } }: VjpCtx<"gather">): Tensor {
  const v = table.shape[axis];
  if (v === 0) return g.builder.constant(0, "f32", table.shape);
  const n = indices.rank;
  const range = (from: number, len: number) => Array.from({ length: len }, (_, k) => from + k);
  const isSym = (ax: number) => typeof g.shape[ax] === "string";
  const P = range(0, axis);
  const I = range(axis, n);
  const Q = range(axis + n, table.rank - axis - 1);
  const [symI, statI] = [I.filter(isSym), I.filter((ax) => !isSym(ax))];
  const [symQ, statQ] = [Q.filter(isSym), Q.filter((ax) => !isSym(ax))];
  const dims = (axes: readonly number[]) => axes.map((ax) => g.shape[ax]);
  const product = (axes: readonly number[]) => (dims(axes) as number[]).reduce((a, d) => a * d, 1);
  const k = product(statI);

  const rhs = permuteTo(g, [...P, ...symQ, ...symI, ...statI, ...statQ]).reshape([
    ...dims(P),
    ...dims(symQ),
    ...dims(symI),
    k,
    product(statQ),
  ]);
  // oneHot's axes are I, then V (at n).
  const lhs = permuteTo(oneHot(indices, v), [...symI.map((ax) => ax - axis), n, ...statI.map((ax) => ax - axis)]).reshape([
    ...dims(symI),
    v,
    k,
  ]);
  let r = lhs.matmul(rhs); // [P…, symQ…, symI…, V, Q]
  if (symI.length) r = r.sum(range(P.length + symQ.length, symI.length));
  r = r.reshape([...dims(P), ...dims(symQ), v, ...dims(statQ)]);
  // Axes now, by g's axis numbers (V as -1): P, symQ, V, statQ; wanted: P, V, Q.
  const now = [...P, ...symQ, -1, ...statQ];
  return permuteTo(
    r,
    [...P, -1, ...Q].map((ax) => now.indexOf(ax)),
  );
}

/** t.permute(perm), or t itself when perm is the identity. */
function permuteTo(t: Tensor, perm: readonly number[]): Tensor {
  return perm.every((p, k) => p === k) ? t : t.permute(perm);
}
