/** cse: common-subexpression elimination. Two nodes with the same op, inputs and attributes
 *  compute the same value (every op is pure; random is counter-based, so even two random nodes
 *  with one seed and key agree), so the later one is replaced by the earlier.
 *      %3 = mul %0, %1;  %4 = mul %0, %1   →   %4 ↦ %3
 *  Graph inputs are never merged. Leaves the replaced nodes to dce. */
import type { Node } from "../src/ir/types.ts";
import { pattern } from "../src/ops/table.ts";
import type { Pass } from "./pass.ts";
import { rewrite } from "./rewrite.ts";

/** Attributes as text that tells NaN, ±inf and -0 apart (plain JSON would not). */
const attrText = (a: unknown): string =>
  JSON.stringify(a, (_k, v) =>
    typeof v === "number" && (!Number.isFinite(v) || Object.is(v, -0)) ? `#${Object.is(v, -0) ? "-0" : v}` : v,
  );
/** Ops whose two operands commute bit for bit (their record's `pattern.commutative`: IEEE + and
 *  × do): their key sorts the operands, so a·b meets b·a. Not max and min: WGSL leaves which
 *  NaN-less operand wins open. */
const commutes = (n: Node): boolean => {
  const p = pattern(n);
  return p.kind === "elementwise" && p.commutative;
};
const key = (n: Node): string => {
  const ins = commutes(n) ? [...n.inputs].sort((a, b) => a - b) : n.inputs;
  return `${n.op}(${ins.join(",")})${attrText(n.attrs)}`;
};

export const cse: Pass = {
  name: "cse",
  run(graph) {
    const seen = new Map<string, number>();
    return rewrite(graph, (n) => {
      if (n.op === "input") return undefined;
      const k = key(n);
      const prev = seen.get(k);
      if (prev !== undefined) return prev;
      seen.set(k, n.id);
      return undefined;
    });
  },
};
