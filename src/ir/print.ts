/** The text IR: the debugging UI and the format of test failures.
 *      %4:f32[B,500] = matmul %1, %2   @ mlp.ts:12
 *      %6:f32[B] = reduce_sum %5 axes=[1] keepdims=false   @ mlp.ts:14
 *      return logits=%4, loss=%6
 *  Attribute values are JSON, except non-finite numbers: nan, inf, -inf. An output name or a
 *  site that the bare form could not hold (spaces, `@`, quotes, control characters…) is
 *  written as a JSON string, so every name round-trips through src/ir/parse.ts. */
import { formatType } from "./shape.ts";
import type { Graph, Node } from "./types.ts";

export function formatValue(v: unknown): string {
  if (typeof v === "number")
    return Number.isNaN(v) ? "nan" : v === Infinity ? "inf" : v === -Infinity ? "-inf" : Object.is(v, -0) ? "-0" : JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(formatValue).join(",")}]`;
  return JSON.stringify(v);
}

/** Output names printed bare: what parse.ts reads as a name token. */
const BARE_NAME = /^[A-Za-z_][\w./-]*$/;
const outputName = (name: string): string => (BARE_NAME.test(name) ? name : JSON.stringify(name));
/** A site printed bare is the rest of the line, trimmed: quote one that would not survive that. */
const siteText = (site: string): string => (/^[^\s"][^\0-\x1f]*$/.test(site) && !/\s$/.test(site) ? site : JSON.stringify(site));

/** `dtype` and `shape` attributes equal to the node's type are implied by it and not printed. */
export function printNode(n: Node): string {
  const attrs = Object.entries(n.attrs)
    .filter(([k, v]) => !(k === "dtype" && v === n.type.dtype) && !(k === "shape" && formatValue(v) === formatValue(n.type.shape)))
    .map(([k, v]) => ` ${k}=${formatValue(v)}`)
    .join("");
  const args = n.inputs.length ? ` ${n.inputs.map((i) => `%${i}`).join(", ")}` : "";
  return `%${n.id}:${formatType(n.type)} = ${n.op}${args}${attrs}${n.site ? `   @ ${siteText(n.site)}` : ""}`;
}

export function printGraph(g: Graph): string {
  return [...g.nodes.map(printNode), `return ${g.outputs.map((o) => `${outputName(o.name)}=%${o.id}`).join(", ")}`].join("\n");
}
