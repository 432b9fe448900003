/** simplify: algebraic identities that keep a value's type and every result bit-for-bit
 *  (IEEE: x·0 is not 0 for inf or NaN, so it stays).
 *      x + 0, 0 + x, x − 0, x·1, 1·x, x/1, x^1  → x          0 − x, x·(−1) → neg x
 *      neg(neg x) → x                                          select(c, x, x) → x
 *      reshape/expand/permute/slice/pad/cast/reduce that change nothing → x
 *      reshape(reshape x) → reshape x        permute(permute x) → one permute (or x)
 *      expand(expand x) → expand x           a chain of reshapes and expands of a value with
 *                                            one element → expand(reshape(x, [1,…,1]))
 *      f(expand x) → expand(f x), f unary elementwise: computed once, broadcast after
 *      x / 2^k → x · 2^-k (exact: both are the one rounding of the same real number)
 *      a splat constant of the full output shape in an elementwise op whose other operands
 *      span that shape → a scalar constant (x·c is one form, whatever shape c was folded at)
 *  A rule applies only when the result has the node's exact type, so a constant that
 *  broadcasts its partner (x[3] + 0[2,3]) stays. */
import { broadcastShapes, shapeEq } from "../src/ir/shape.ts";
import type { Node, OpAttrs, Shape, ValueId } from "../src/ir/types.ts";
import { lowering } from "../src/ops/table.ts";
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
      const elementwise = lowering(n).kind === "elementwise";
      if (elementwise && n.inputs.length === 1 && b.node(x).op === "expand") {
        const inner = b.node(x);
        return b.add("expand", [b.add(n.op, [inner.inputs[0]], n.attrs, n.site)], inner.attrs, n.site);
      }
      if (elementwise && n.inputs.length >= 2) {
        // A splat the other operands' broadcast already spans: its shape says nothing.
        const spanned = (k: number) => {
          const rest = broadcastShapes(n.inputs.filter((_, i) => i !== k).map((i) => b.node(i).type.shape));
          return rest !== undefined && shapeEq(rest, n.type.shape);
        };
        const k = n.inputs.findIndex((id, i) => fullSplat(b, id, n) && spanned(i));
        if (k >= 0) {
          const c = b.node(n.inputs[k]).attrs as OpAttrs["const"];
          const scalar = b.add("const", [], { ...c, shape: [] }, b.node(n.inputs[k]).site);
          return b.add(
            n.op,
            n.inputs.map((id, i) => (i === k ? scalar : id)),
            n.attrs,
            n.site,
          );
        }
      }
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
        case "div": {
          if (splat(b, y, 1)) return same(x);
          const c = b.node(y);
          const v = c.op === "const" && n.type.dtype === "f32" ? (c.attrs as OpAttrs["const"]).value : undefined;
          if (typeof v !== "number" || !powerOfTwo(v)) return undefined;
          return b.add("mul", [x, b.add("const", [], { ...(c.attrs as OpAttrs["const"]), value: 1 / v }, c.site)], {}, n.site);
        }
        case "pow":
          return splat(b, y, 1) ? same(x) : undefined;
        case "neg":
          return b.node(x).op === "neg" ? same(b.node(x).inputs[0]) : undefined;
        case "select":
          return n.inputs[1] === n.inputs[2] ? same(n.inputs[1]) : undefined;
        case "reshape": {
          const inner = b.node(x);
          if (inner.op === "expand") return broadcastOne(b, n) ?? same(x);
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
        case "expand": {
          const inner = b.node(x);
          if (inner.op === "expand") return b.add("expand", [inner.inputs[0]], n.attrs, n.site);
          const chain = inner.op === "reshape" && (b.node(inner.inputs[0]).op === "reshape" || b.node(inner.inputs[0]).op === "expand");
          return (chain ? broadcastOne(b, n) : undefined) ?? (noop(n, b) ? same(x) : undefined);
        }
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

/** A splat constant with exactly `n`'s shape. */
function fullSplat(b: Rebuilder, id: ValueId, n: Node): boolean {
  const c = b.node(id);
  return (
    c.op === "const" &&
    typeof (c.attrs as OpAttrs["const"]).value === "number" &&
    c.type.shape.length > 0 &&
    shapeEq(c.type.shape, n.type.shape)
  );
}

/** ±2^k whose reciprocal is a normal f32 too. */
function powerOfTwo(v: number): boolean {
  const a = Math.abs(v);
  if (!(a > 0) || !Number.isFinite(a)) return false;
  const k = Math.log2(a);
  return Number.isInteger(k) && k >= -126 && k <= 126;
}

const ones = (s: Shape): boolean => s.every((d) => d === 1);

/** `n`, a reshape or expand over a chain of reshapes and expands, as expand(reshape(x, 1s)) when
 *  the chain starts from a value x of one element (a scalar broadcast, as the gradient of a mean
 *  builds it); otherwise undefined. */
function broadcastOne(b: Rebuilder, n: Node): ValueId | undefined {
  let src = n.inputs[0];
  while (b.node(src).op === "reshape" || b.node(src).op === "expand") src = b.node(src).inputs[0];
  if (!ones(b.node(src).type.shape)) return undefined;
  const shape = n.type.shape;
  const unit = shape.map(() => 1);
  const r = shapeEq(b.node(src).type.shape, unit) ? src : b.add("reshape", [src], { shape: unit }, n.site);
  return ones(shape) ? r : b.add("expand", [r], { shape: [...shape] }, n.site);
}

/** Whether a one-input movement/cast/reduce leaves its input as it is. */
function noop(n: Node, b: Rebuilder): boolean {
  const t = b.node(n.inputs[0]).type;
  if (t.dtype !== n.type.dtype || !shapeEq(t.shape, n.type.shape)) return false;
  if (n.op === "slice")
    return (n.attrs as OpAttrs["slice"]).begin.every((v) => v === 0) && (n.attrs as OpAttrs["slice"]).stride.every((s) => s === 1);
  if (n.op === "pad") return [...(n.attrs as OpAttrs["pad"]).before, ...(n.attrs as OpAttrs["pad"]).after].every((p) => p === 0);
  return true;
}
