/** Reductions (reduce_sum, reduce_mean, reduce_max, reduce_min) and argmax. One of two
 *  shapes, chosen from the sizes (a symbolic extent counts as large) and the target (a CPU
 *  rasterizer always loops):
 *
 *  loop: one thread per output element walks its reduced elements (many outputs or short
 *  reductions), e.g. reduce_sum f32[B,10] axes=[1]:
 *      let i0 = (wid.y * nwg.x + wid.x) * 64u + lid;
 *      if (i0 >= u.B) { return; }
 *      var acc: f32 = 0f;
 *      for (var j = 0u; j < 10u; j++) { acc = acc + v1[i0 * 10u + j]; }
 *      v2[i0] = acc;
 *
 *  tree: one workgroup of 256 threads per output element (few outputs, long reductions): the
 *  threads stride over the reduced range, then halve their partial results in workgroup memory,
 *  e.g. reduce_sum f32[B,10] axes=[0]:
 *      for (var j = lid; j < u.B; j += 256u) { acc = acc + v1[j * 10u + o]; }
 *      acc_wg[lid] = acc;  workgroupBarrier();
 *      for (var s = 128u; s > 0u; s >>= 1u) {
 *        if (lid < s) { acc_wg[lid] = acc_wg[lid] + acc_wg[lid + s]; }  workgroupBarrier();
 *      }
 *      if (lid == 0u) { v2[o] = acc_wg[0]; }
 *
 *  The input is read through `kb.value`, so an inlined permute or broadcast is index arithmetic
 *  inside the loop. With the `subgroups` feature the tree ends in subgroup operations instead of
 *  its halving rounds (./reduce-subgroup.ts). Sums accumulate in the dtype (f32 error bound: test/ops/reduce.test.ts;
 *  i32/u32 wrap, as the reference does). Max and min keep NaN; argmax counts NaN as the largest
 *  value and keeps the first index among equals. */
import { sizeOf } from "../../../src/ir/shape.ts";
import type { DType, Dim, OpAttrs, OpKind } from "../../../src/ir/types.ts";
import { highest, lowest } from "../../../src/ops/reduce.ts";
import { lit } from "../../../src/ops/wgsl.ts";
import type { Kernel } from "../../program.ts";
import type { KernelBuilder } from "../kernel-builder.ts";
import { type Target, uses } from "../../target.ts";
import { IS_NAN, subgroupTree } from "./reduce-subgroup.ts";

const PER_GROUP = 64;
const TREE = 256;
/** The tree pays off once each thread has a few elements and the outputs alone would leave the
 *  GPU idle; both bounds are static element counts. */
const TREE_MIN_REDUCED = 256;
const TREE_MAX_OUTPUTS = 2048;

/** Per-thread state, how elements fold into it and how two states merge. */
interface Accumulator {
  /** [name, WGSL type, initial value] per variable. */
  readonly vars: readonly (readonly [string, string, string])[];
  /** Statement folding element `x` at reduced index `j` into state `s` (indices only grow). */
  fold(s: readonly string[], x: string, j: string): string;
  /** Statement merging state `b` into state `a` (b's indices may be smaller). */
  merge(a: readonly string[], b: readonly string[]): string;
  /** The output element from a final state. */
  result(s: readonly string[]): string;
  /** Module-scope functions the statements call. */
  readonly helpers: readonly string[];
}

// WGSL leaves max/min of a NaN to the driver; the reference propagates it.
const nanSafe = (f: "max" | "min") => `fn nan_${f}(a: f32, b: f32) -> f32 {
  if (is_nan(a)) { return a; }
  if (is_nan(b)) { return b; }
  return ${f}(a, b);
}`;
// argmax's order: NaN beats every number (numpy's rule); equal values tie.
const BEATS = `fn beats(x: f32, y: f32) -> bool {
  return (is_nan(x) && !is_nan(y)) || x > y;
}`;
const TIES = `fn ties(x: f32, y: f32) -> bool {
  return x == y || (is_nan(x) && is_nan(y));
}`;

function reduceAccumulator(op: OpKind, dtype: DType, kb: KernelBuilder, count: Dim[]): Accumulator {
  const f32 = dtype === "f32";
  const combine = (a: string, b: string): string => {
    if (op === "reduce_sum" || op === "reduce_mean") return `${a} + ${b}`;
    const f = op === "reduce_max" ? "max" : "min";
    return f32 ? `nan_${f}(${a}, ${b})` : `${f}(${a}, ${b})`;
  };
  const init = op === "reduce_max" ? lowest(dtype) : op === "reduce_min" ? highest(dtype) : 0;
  return {
    vars: [["acc", dtype, lit(init, dtype)]],
    fold: ([acc], x) => `${acc} = ${combine(acc, x)};`,
    merge: ([a], [b]) => `${a} = ${combine(a, b)};`,
    result: ([acc]) => (op === "reduce_mean" ? mean(kb, acc, count) : acc),
    helpers: f32 && (op === "reduce_max" || op === "reduce_min") ? [IS_NAN, nanSafe(op === "reduce_max" ? "max" : "min")] : [],
  };
}

/** sum / count; a count that is 0 gives NaN explicitly (WGSL leaves 0/0 to the driver). */
function mean(kb: KernelBuilder, acc: string, count: Dim[]): string {
  const n = sizeOf(count);
  if (n.syms.length === 0) return n.k === 0 ? lit(NaN, "f32") : `${acc} / ${lit(n.k, "f32")}`;
  const c = kb.size(count);
  return `select(${acc} / f32(${c}), ${lit(NaN, "f32")}, ${c} == 0u)`;
}

function argmaxAccumulator(dtype: DType): Accumulator {
  const f32 = dtype === "f32";
  const beats = (x: string, y: string) => (f32 ? `beats(${x}, ${y})` : `${x} > ${y}`);
  const ties = (x: string, y: string) => (f32 ? `ties(${x}, ${y})` : `${x} == ${y}`);
  // Starting from (lowest, 0) is safe: if nothing beats `lowest`, every element equals it and
  // index 0 is the first of them; an empty axis gives 0.
  return {
    vars: [
      ["best", dtype, lit(lowest(dtype), dtype)],
      ["at", "u32", "0u"],
    ],
    fold: ([best, at], x, j) => `if (${beats(x, best)}) { ${best} = ${x}; ${at} = ${j}; }`,
    merge: ([best, at], [b, bAt]) => `if (${beats(b, best)} || (${ties(b, best)} && ${bAt} < ${at})) { ${best} = ${b}; ${at} = ${bAt}; }`,
    result: ([, at]) => `i32(${at})`,
    helpers: f32 ? [IS_NAN, BEATS, TIES] : [],
  };
}

const helpers = (acc: Accumulator): string[] => acc.helpers.flatMap((h) => ["", h]);

export function reduceKernel(kb: KernelBuilder, what: string): Kernel {
  // The reduction: the kernel's output, or the op whose epilogue computes it (../../fuse.ts).
  const node = kb.node(kb.op);
  const xId = node.inputs[0];
  const x = kb.node(xId).type;
  const { axes, keepdims } =
    node.op === "argmax"
      ? { axes: [(node.attrs as OpAttrs["argmax"]).axis], keepdims: (node.attrs as OpAttrs["argmax"]).keepdims }
      : (node.attrs as OpAttrs["reduce_sum"]);
  const sorted = [...axes].sort((a, b) => a - b);
  const reduced = sorted.map((a) => x.shape[a]);
  const outShape = node.type.shape;
  const acc = node.op === "argmax" ? argmaxAccumulator(x.dtype) : reduceAccumulator(node.op, x.dtype, kb, reduced);

  /** The input's coordinates from the output's and the reduced ones (in ascending axis order). */
  const inputCoords = (out: readonly string[], red: readonly string[]): string[] => {
    let r = 0;
    let k = 0;
    return x.shape.map((_, a) => (sorted.includes(a) ? red[r++] : keepdims ? out[a] : out[k++]));
  };
  /** Fold the thread's reduced elements into its state: all of them, or with `stride` threads
   *  the ones from `lid` on in steps of `stride`. */
  const walk = (out: readonly string[], stride?: number) => {
    const { w } = kb;
    for (const [name, type, init] of acc.vars) w.line(`var ${name}: ${type} = ${init};`);
    const state = acc.vars.map(([name]) => name);
    const body = (j: string) => {
      const v = kb.let(kb.value(xId, inputCoords(out, kb.unravel(j, reduced, "r"))), "x");
      w.line(acc.fold(state, v, j));
    };
    const n = kb.size(reduced);
    if (stride) w.block(`for (var j = lid; j < ${n}; j += ${stride}u)`, () => body("j"));
    else if (n === "1u") body("0u");
    else w.block(`for (var j = 0u; j < ${n}; j++)`, () => body("j"));
    return state;
  };

  const out = sizeOf(outShape);
  if (!usesTree(outShape, reduced, kb.target)) {
    const i = kb.linearIndex(PER_GROUP);
    kb.w.line(`if (${i} >= ${kb.size(outShape)}) { return; }`);
    const outCoords = kb.unravel(i, outShape);
    const state = walk(outCoords);
    if (kb.op === kb.output) kb.store(i, acc.result(state));
    else epilogue(kb, outCoords, i, kb.let(acc.result(state), "r"), (c) => inputCoords(outCoords, c), reduced, x.shape);
    return kb.finish({
      what,
      workgroupSize: [PER_GROUP],
      dispatch: { kind: "linear", total: out, perGroup: PER_GROUP },
      shared: helpers(acc),
    });
  }
  if (kb.op !== kb.output) throw new Error(`${node.op} %${node.id}: an epilogue needs the one-thread-per-output reduction (../../fuse.ts)`);

  // One workgroup per output element; the group index is folded over x and y like `linear`.
  // Every thread of a group takes the same branches around the barriers (o is uniform).
  const { w } = kb;
  const o = kb.let("wid.y * nwg.x + wid.x", "o");
  w.line(`if (${o} >= ${kb.size(outShape)}) { return; }`);
  const state = walk(kb.unravel(o, outShape), TREE);
  if (uses(kb.target, "subgroups")) {
    const sg = subgroupTree(kb, node.op, x.dtype, state, TREE, (s) => kb.store(o, acc.result(s)));
    return kb.finish({
      what,
      workgroupSize: [TREE],
      dispatch: { kind: "linear", total: out, perGroup: 1 },
      shared: [...sg.shared, ...[...new Set([...acc.helpers, ...sg.helpers])].flatMap((h) => ["", h])],
      features: ["subgroups"],
    });
  }
  const at = (k: string) => acc.vars.map(([name]) => `${name}_wg[${k}]`);
  acc.vars.forEach(([name], v) => w.line(`${name}_wg[lid] = ${state[v]};`));
  w.line("workgroupBarrier();");
  w.block(`for (var s = ${TREE / 2}u; s > 0u; s >>= 1u)`, () => {
    w.block("if (lid < s)", () => w.line(acc.merge(at("lid"), at("lid + s"))));
    w.line("workgroupBarrier();");
  });
  w.block("if (lid == 0u)", () => kb.store(o, acc.result(at("0"))));
  const shared = acc.vars.map(([name, type]) => `var<workgroup> ${name}_wg: array<${type}, ${TREE}>;`);
  return kb.finish({
    what,
    workgroupSize: [TREE],
    dispatch: { kind: "linear", total: out, perGroup: 1 },
    shared: [...shared, ...helpers(acc)],
  });
}

/** Whether a reduction to `outShape` over `reduced` runs as a workgroup tree (else a loop of one
 *  thread per output element): never on a target without trees (a CPU rasterizer). */
export function usesTree(outShape: readonly Dim[], reduced: readonly Dim[], target: Target): boolean {
  if (!target.reductionTree) return false;
  const out = sizeOf(outShape);
  const red = sizeOf(reduced);
  return out.syms.length === 0 && out.k <= TREE_MAX_OUTPUTS && (red.syms.length > 0 || red.k >= TREE_MIN_REDUCED);
}

/** A reduction's epilogue (../../fuse.ts), once the thread has its output element `r`: either
 *  the elementwise chain after it at that element (the root has the reduction's shape), or a
 *  row epilogue — the root has the reduction's input shape and reads the reduced value
 *  broadcast back (softmax's e / Σe): the thread walks its row again and writes every element.
 *      r = Σ_j exp(x[i,j] − m[i]);  for j: y[i,j] = exp(x[i,j] − m[i]) / r */
function epilogue(
  kb: KernelBuilder,
  outCoords: readonly string[],
  flat: string,
  r: string,
  rowCoords: (red: readonly string[]) => string[],
  reduced: readonly Dim[],
  inShape: readonly Dim[],
): void {
  const root = kb.node(kb.output).type.shape;
  const own = kb.node(kb.op).type.shape;
  if (root.length === own.length && root.every((d, a) => d === own[a])) return kb.result(() => outCoords, flat, r);
  const n = kb.size(reduced);
  kb.w.block(`for (var j = 0u; j < ${n}; j++)`, () => {
    const coords = rowCoords(kb.unravel("j", reduced, "s"));
    kb.withValue(outCoords, r, () => kb.store(kb.linear(coords, inShape), kb.value(kb.output, coords)));
  });
}
