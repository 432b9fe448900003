/** The text IR: the debugging UI and the format of test failures.
 *      %4:f32[B,500] = matmul %1, %2   @ mlp.ts:12
 *      %6:f32[B] = reduce_sum %5 axes=[1] keepdims=false   @ mlp.ts:14
 *      return logits=%4, loss=%6
 *  Attribute values are JSON, except non-finite numbers: nan, inf, -inf. */
import { formatType } from "./shape.ts";
import type { Graph, Node } from "./types.ts";

export function formatValue(v: unknown): string {
  if (typeof v === "number")
    return Number.isNaN(v) ? "nan" : v === Infinity ? "inf" : v === -Infinity ? "-inf" : Object.is(v, -0) ? "-0" : JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(formatValue).join(",")}]`;
  return JSON.stringify(v);
}

/** `dtype` and `shape` attributes equal to the node's type are implied by it and not printed. */
export function printNode(n: Node): string {
  const attrs = Object.entries(n.attrs)
    .filter(([k, v]) => !(k === "dtype" && v === n.type.dtype) && !(k === "shape" && formatValue(v) === formatValue(n.type.shape)))
    .map(([k, v]) => ` ${k}=${formatValue(v)}`)
    .join("");
  const args = n.inputs.length ? ` ${n.inputs.map((i) => `%${i}`).join(", ")}` : "";
  return `%${n.id}:${formatType(n.type)} = ${n.op}${args}${attrs}${n.site ? `   @ ${n.site}` : ""}`;
}

export function printGraph(g: Graph): string {
  return [...g.nodes.map(printNode), `return ${g.outputs.map((o) => `${o.name}=%${o.id}`).join(", ")}`].join("\n");
}
