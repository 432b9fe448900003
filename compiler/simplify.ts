/** simplify: algebraic identities that keep a value's type and every result bit-for-bit
 *  (IEEE: x·0 is not 0 for inf or NaN, so it stays).
 *      x + 0, 0 + x, x − 0, x·1, 1·x, x/1, x^1  → x          0 − x, x·(−1) → neg x
 *      neg(neg x) → x                                          select(c, x, x) → x
 *      reshape/expand/permute/slice/pad/cast/reduce that change nothing → x
 *      reshape(reshape x) → reshape x        permute(permute x) → one permute (or x)
 *  A rule applies only when the result has the node's exact type, so a constant that
 *  broadcasts its partner (x[3] + 0[2,3]) stays. */
import { shapeEq } from "../src/ir/shape.ts";
import type { Node, OpAttrs, ValueId } from "../src/ir/types.ts";
import type { Pass } from "./pass.ts";
import { rewrite, type Rebuilder } from "./rewrite.ts";

const splat = (b: Rebuilder, id: ValueId, v: number): boolean => {
  const n = b.node(id);
  return n.op === "const" && Object.is((n.attrs as OpAttrs["const"]).value, v);
};

export const simplify: Pass = {
  name: "simplify",
  run(graph) {
    return rewrite(graph, (n: Node, b) => {
      const same = (id: ValueId | undefined): ValueId | undefined => {
        if (id === undefined) return undefined;
        const t = b.node(id).type;
        return t.dtype === n.type.dtype && shapeEq(t.shape, n.type.shape) ? id : undefined;
      };
      const [x, y] = n.inputs;
      const isZero = (id: ValueId) => splat(b, id, 0) || splat(b, id, -0);
      switch (n.op) {
        case "add":
          return (isZero(y) ? same(x) : undefined) ?? (isZero(x) ? same(y) : undefined);
        case "sub":
          if (isZero(y)) return same(x);
          return isZero(x) && same(y) !== undefined ? b.add("neg", [y], {}, n.site) : undefined;
        case "mul":
          if (splat(b, y, 1) || splat(b, x, 1)) return same(splat(b, y, 1) ? x : y);
          if (splat(b, y, -1) && same(x) !== undefined) return b.add("neg", [x], {}, n.site);
          return splat(b, x, -1) && same(y) !== undefined ? b.add("neg", [y], {}, n.site) : undefined;
        case "div":
        case "pow":
          return splat(b, y, 1) ? same(x) : undefined;
        case "neg":
          return b.node(x).op === "neg" ? same(b.node(x).inputs[0]) : undefined;
        case "select":
          return n.inputs[1] === n.inputs[2] ? same(n.inputs[1]) : undefined;
        case "reshape": {
          const inner = b.node(x);
          if (inner.op === "reshape") return b.add("reshape", [inner.inputs[0]], n.attrs, n.site);
          return same(x);
        }
        case "permute": {
          const perm = (n.attrs as OpAttrs["permute"]).perm;
          const inner = b.node(x);
          if (inner.op !== "permute") return perm.every((p, i) => p === i) ? same(x) : undefined;
          const composed = perm.map((p) => (inner.attrs as OpAttrs["permute"]).perm[p]);
          const src = inner.inputs[0];
          return composed.every((p, i) => p === i) ? same(src) : b.add("permute", [src], { perm: composed }, n.site);
        }
        case "expand":
        case "slice":
        case "pad":
        case "cast":
        case "concat":
        case "reduce_sum":
        case "reduce_mean":
        case "reduce_max":
        case "reduce_min":
          // Each is the identity exactly when it keeps the type: same shape means nothing
          // was expanded, sliced, padded, concatenated (one input) or reduced (no axis > 1).
          return n.inputs.length === 1 && noop(n, b) ? same(x) : undefined;
        default:
          return undefined;
      }
    });
  },
};

/** Whether a one-input movement/cast/reduce leaves its input as it is. */
function noop(n: Node, b: Rebuilder): boolean {
  const t = b.node(n.inputs[0]).type;
  if (t.dtype !== n.type.dtype || !shapeEq(t.shape, n.type.shape)) return false;
  if (n.op === "slice") return (n.attrs as OpAttrs["slice"]).begin.every((v) => v === 0) && (n.attrs as OpAttrs["slice"]).stride.every((s) => s === 1);
  if (n.op === "pad") return [...(n.attrs as OpAttrs["pad"]).before, ...(n.attrs as OpAttrs["pad"]).after].every((p) => p === 0);
  return true;
}
