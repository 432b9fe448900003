/** The end of a reduction tree (./reduce.ts) with the `subgroups` feature: instead of eight
 *  rounds of halving in workgroup memory, each a barrier, the threads of a subgroup combine
 *  their states with one subgroup operation, one thread a subgroup writes the total, and after
 *  the one barrier every subgroup folds those totals and combines again:
 *      acc = subgroupAdd(acc);                                  every lane: its subgroup's sum
 *      acc_wg[lid] = select(0f, acc, rank == 0u);  workgroupBarrier();
 *      var t = 0f;  for (var j = rank; j < 256u; j += lanes) { t = t + acc_wg[j]; }
 *      t = subgroupAdd(t);  if (lid == 0u) { v2[o] = t; }
 *  `rank` and `lanes` count the subgroup's active lanes (subgroupExclusiveAdd(1u),
 *  subgroupAdd(1u)), so nothing depends on the subgroup size (4–128), on which invocations
 *  form a subgroup, or on every subgroup being full: each slot of acc_wg belongs to one
 *  invocation, and the second fold visits every slot once.
 *
 *  What a subgroup combines, per op (WGSL leaves subgroupMax/Min of a NaN to the driver, so
 *  f32 goes through an order key, a u32 whose unsigned order is the floats' with NaN beyond
 *  every number and −0 as +0):
 *      sum, mean       the partial sum (f32, i32, u32; integers wrap as the reference does)
 *      max, min f32    max_key / min_key: NaN above / below everything, so it propagates
 *      max, min int    the value
 *      argmax          (key, index): the largest key, then the smallest index holding it — the
 *                      first among equals, NaN the largest (numpy's rule, as ./reduce.ts) */
import type { DType, OpKind } from "../../../src/ir/types.ts";
import { highest, lowest } from "../../../src/ops/reduce.ts";
import { lit } from "../../../src/ops/wgsl.ts";
import type { KernelBuilder } from "../kernel-builder.ts";

// NaN by its bits: a driver that assumes no NaNs may fold `x != x` to false.
export const IS_NAN = `fn is_nan(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}`;
const ORDER_KEY = `fn order_key(x: f32) -> u32 {
  let b = bitcast<u32>(select(x, 0.0f, x == 0.0f));
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}`;
const MAX_KEY = `fn max_key(x: f32) -> u32 {
  return select(order_key(x), 0xffffffffu, is_nan(x));
}`;
const MIN_KEY = `fn min_key(x: f32) -> u32 {
  return select(order_key(x), 0u, is_nan(x));
}`;
const FROM_KEY = `fn from_key(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}`;

/** How a thread's state becomes what the subgroup combines, and back. */
interface Form {
  /** [name, WGSL type, identity] per variable. */
  readonly vars: readonly (readonly [string, string, string])[];
  /** Expressions for the variables from the thread's state. */
  lift(state: readonly string[]): string[];
  /** Expressions for `into`, the variables `from` combined over the subgroup (each lane gets
   *  the result); a later one may read an earlier one of `into`. */
  reduce(from: readonly string[], into: readonly string[]): string[];
  /** Statement merging workgroup slot `b` into `a`. */
  merge(a: readonly string[], b: readonly string[]): string;
  /** The reduced value as the reduction's state (what ./reduce.ts's `result` takes). */
  state(v: readonly string[]): string[];
  readonly helpers: readonly string[];
}

const U32_MAX = "0xffffffffu";

function form(op: OpKind, dtype: DType): Form {
  if (op === "argmax") {
    const key =
      dtype === "f32"
        ? (x: string) => `max_key(${x})`
        : dtype === "i32"
          ? (x: string) => `(bitcast<u32>(${x}) ^ 0x80000000u)`
          : (x: string) => x;
    return {
      vars: [
        ["key", "u32", "0u"],
        ["at", "u32", U32_MAX],
      ],
      lift: ([best, at]) => [key(best), at],
      reduce: ([k, at], [top]) => [`subgroupMax(${k})`, `subgroupMin(select(${U32_MAX}, ${at}, ${k} == ${top}))`],
      merge: ([k, at], [bk, bAt]) => `if (${bk} > ${k} || (${bk} == ${k} && ${bAt} < ${at})) { ${k} = ${bk}; ${at} = ${bAt}; }`,
      // argmax's result reads the index only.
      state: ([, at]) => ["", at],
      helpers: dtype === "f32" ? [IS_NAN, ORDER_KEY, MAX_KEY] : [],
    };
  }
  if (op === "reduce_sum" || op === "reduce_mean")
    return {
      vars: [["acc", dtype, dtype === "f32" ? "0f" : dtype === "i32" ? "0i" : "0u"]],
      lift: ([acc]) => [acc],
      reduce: ([acc]) => [`subgroupAdd(${acc})`],
      merge: ([a], [b]) => `${a} = ${a} + ${b};`,
      state: (v) => [...v],
      helpers: [],
    };
  const f = op === "reduce_max" ? "max" : "min";
  const Sub = op === "reduce_max" ? "subgroupMax" : "subgroupMin";
  if (dtype === "f32")
    return {
      vars: [["key", "u32", op === "reduce_max" ? "0u" : U32_MAX]],
      lift: ([acc]) => [`${f}_key(${acc})`],
      reduce: ([k]) => [`${Sub}(${k})`],
      merge: ([a], [b]) => `${a} = ${f}(${a}, ${b});`,
      state: ([k]) => [`from_key(${k})`],
      helpers: [IS_NAN, ORDER_KEY, op === "reduce_max" ? MAX_KEY : MIN_KEY, FROM_KEY],
    };
  // The identity of the slots that hold no subgroup's total: the dtype's lowest for max.
  const identity = lit(op === "reduce_max" ? lowest(dtype) : highest(dtype), dtype);
  return {
    vars: [["acc", dtype, identity]],
    lift: ([acc]) => [acc],
    reduce: ([acc]) => [`${Sub}(${acc})`],
    merge: ([a], [b]) => `${a} = ${f}(${a}, ${b});`,
    state: (v) => [...v],
    helpers: [],
  };
}

/** Write the subgroup end of the tree for the thread's `state` (after its strided walk over the
 *  reduced range with `threads` invocations) and store `result(state)` from invocation 0.
 *  Returns the module-scope declarations and helpers it needs. */
export function subgroupTree(
  kb: KernelBuilder,
  op: OpKind,
  dtype: DType,
  state: readonly string[],
  threads: number,
  store: (state: readonly string[]) => void,
): { shared: string[]; helpers: string[] } {
  const { w } = kb;
  const fm = form(op, dtype);
  const names = (suffix: string) => fm.vars.map(([name]) => `${name}_${suffix}`);
  const combine = (from: readonly string[], into: readonly string[]) =>
    fm.reduce(from, into).forEach((e, v) => w.line(`let ${into[v]} = ${e};`));
  const own = names("own");
  fm.lift(state).forEach((e, v) => w.line(`let ${own[v]} = ${e};`));
  const sub = names("sg");
  combine(own, sub);
  w.line("let rank = subgroupExclusiveAdd(1u);", "let lanes = subgroupAdd(1u);");
  fm.vars.forEach(([name, , identity], v) => w.line(`${name}_wg[lid] = select(${identity}, ${sub[v]}, rank == 0u);`));
  w.line("workgroupBarrier();");
  const folded = names("all");
  fm.vars.forEach(([, type, identity], v) => w.line(`var ${folded[v]}: ${type} = ${identity};`));
  w.block(`for (var j = rank; j < ${threads}u; j += lanes)`, () =>
    w.line(
      fm.merge(
        folded,
        names("wg").map((n) => `${n}[j]`),
      ),
    ),
  );
  const total = names("total");
  combine(folded, total);
  w.block("if (lid == 0u)", () => store(fm.state(total)));
  return {
    shared: fm.vars.map(([name, type]) => `var<workgroup> ${name}_wg: array<${type}, ${threads}>;`),
    helpers: [...fm.helpers],
  };
}
