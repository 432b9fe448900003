/** foldConstants: evaluate, with the ops' float64 references, every node whose inputs are all
 *  constants, and put a constant in its place.
 *      %1 = const value=2;  %2 = const value=3;  %3 = mul %1, %2   →   %3 = const value=6
 *  Splats stay splats whatever their shape (symbolic too): elementwise ops of splats, and
 *  reshape/expand/permute/slice of a splat. Anything else folds when its shape is static and
 *  small (≤ 4096 elements), becoming a splat if all its values agree. f32 results are rounded
 *  to f32, the value a kernel would have stored. */
import { bindShape, isStatic } from "../src/ir/shape.ts";
import type { Node, OpAttrs } from "../src/ir/types.ts";
import { tensor64, type Tensor64 } from "../src/ops/tensor64.ts";
import { lowering, OPS, pattern } from "../src/ops/table.ts";
import type { Pass } from "./pass.ts";
import { rewrite, type Rebuilder } from "./rewrite.ts";

const MAX_FOLD = 4096;

/** The reference's result, or undefined where it refuses (e.g. an out-of-range gather index:
 *  folding must not turn the GPU's defined behaviour into a compile error). */
function evaluate(ref: Ref, ins: readonly Tensor64[], attrs: unknown, out: unknown): Tensor64 | undefined {
  try {
    return ref(ins, attrs, out);
  } catch {
    return undefined;
  }
}
/** A splat stays a splat through a broadcast and through the index maps whose record says so
 *  (reshape, permute, slice: `pattern.splat`). */
const splatThrough = (n: Node): boolean => {
  const p = pattern(n);
  return p.kind === "broadcast" || (p.kind === "injective" && p.splat);
};

const constOf = (b: Rebuilder, id: number): OpAttrs["const"] | undefined => {
  const n = b.node(id);
  return n.op === "const" ? (n.attrs as OpAttrs["const"]) : undefined;
};

type Ref = (i: readonly Tensor64[], a: unknown, o: unknown) => Tensor64;

export const foldConstants: Pass = {
  name: "fold-constants",
  run(graph) {
    return rewrite(graph, (n: Node, b) => {
      if (n.inputs.length === 0 || n.op === "stop_gradient") return undefined;
      const cs = n.inputs.map((i) => constOf(b, i));
      if (cs.some((c) => !c)) return undefined;
      const ref = OPS[n.op].reference as Ref;
      const round = (v: number) => (n.type.dtype === "f32" ? Math.fround(v) : v);
      const put = (value: number | number[]) => b.add("const", [], { dtype: n.type.dtype, shape: n.type.shape, value }, n.site);
      const splats = cs.every((c) => typeof c!.value === "number");
      if (splats && (lowering(n).kind === "elementwise" || splatThrough(n))) {
        const ins = cs.map((c) => tensor64(c!.dtype, [], [c!.value as number]));
        const scalarOut = lowering(n).kind === "elementwise" ? evaluate(ref, ins, n.attrs, { dtype: n.type.dtype, shape: [] }) : ins[0];
        return scalarOut && put(round(scalarOut.data[0]));
      }
      if (!isStatic(n.type.shape) || cs.some((c) => !isStatic(c!.shape))) return undefined;
      const size = (s: readonly number[]) => s.reduce((a, d) => a * d, 1);
      if (size(n.type.shape) > MAX_FOLD) return undefined;
      const ins = cs.map((c) => {
        const shape = bindShape(c!.shape, {});
        return tensor64(c!.dtype, shape, typeof c!.value === "number" ? new Array<number>(size(shape)).fill(c!.value) : c!.value);
      });
      const r = evaluate(ref, ins, n.attrs, { dtype: n.type.dtype, shape: n.type.shape });
      if (!r) return undefined;
      const out = Array.from(r.data, round);
      return put(out.every((v) => Object.is(v, out[0])) && out.length > 0 ? out[0] : out);
    });
  },
};
