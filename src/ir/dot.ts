/** Graphviz DOT for a graph: one node per IR value, edges from its inputs, optionally clustered
 *  (e.g. by the kernel that computes each value). Render with `dot -Tsvg`, or without a system
 *  install through cli/render.ts.
 *      %4 matmul            (inputs: blue; constants: grey; outputs: gold, named;
 *      f32[B,500]            tooltip: the call site)
 *  Every user-supplied string goes through `quote`, so a name holding quotes, backslashes or
 *  newlines stays a label and cannot inject DOT. */
import { formatValue } from "./print.ts";
import { formatType } from "./shape.ts";
import type { Graph, Node, ValueId } from "./types.ts";

export interface DotGroup {
  readonly name: string;
  readonly nodes: readonly ValueId[];
}

export interface DotOptions {
  /** Clusters; a node listed in several (an index op inlined into each consumer) is drawn in the first. */
  readonly groups?: readonly DotGroup[];
  /** The graph's title. */
  readonly title?: string;
}

/** A DOT double-quoted string of `lines` (joined by DOT's centred line break). */
export function quote(...lines: string[]): string {
  const esc = (s: string) =>
    s
      .replace(/\\/g, "\\\\")
      .replace(/"/g, '\\"')
      .replace(/\r?\n|\r/g, "\\n");
  return `"${lines.map(esc).join("\\n")}"`;
}

const MAX_ATTRS = 48;

function attrText(n: Node): string {
  const text = Object.entries(n.attrs)
    .filter(
      ([k, v]) =>
        !(k === "dtype" && v === n.type.dtype) &&
        !(k === "shape" && formatValue(v) === formatValue(n.type.shape)) &&
        !(n.op === "input" && k === "name"),
    )
    .map(([k, v]) => `${k}=${formatValue(v)}`)
    .join(" ");
  return text.length > MAX_ATTRS ? `${text.slice(0, MAX_ATTRS - 1)}…` : text;
}

function nodeLine(n: Node, outputs: ReadonlyMap<ValueId, string[]>): string {
  const names = outputs.get(n.id);
  const head = n.op === "input" ? `%${n.id} input ${(n.attrs as { name: string }).name}` : `%${n.id} ${n.op}`;
  const lines = [head, formatType(n.type)];
  const attrs = attrText(n);
  if (attrs) lines.push(attrs);
  if (names) lines.push(`→ ${names.join(", ")}`);
  const style =
    n.op === "input"
      ? ', fillcolor="#cfe2ff", shape=invhouse'
      : n.op === "const"
        ? ', fillcolor="#e9ecef", shape=note'
        : names
          ? ', fillcolor="#ffe08a", peripheries=2'
          : "";
  return `n${n.id} [label=${quote(...lines)}, tooltip=${quote(n.site || `%${n.id}`)}${style}];`;
}

export function toDot(graph: Graph, opts: DotOptions = {}): string {
  const outputs = new Map<ValueId, string[]>();
  for (const o of graph.outputs) outputs.set(o.id, [...(outputs.get(o.id) ?? []), o.name]);
  const placed = new Set<ValueId>();
  const out = [
    "digraph kiln {",
    `  graph [rankdir=TB, fontname="monospace", fontsize=10${opts.title === undefined ? "" : `, label=${quote(opts.title)}, labelloc=t`}];`,
    '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="monospace", fontsize=10];',
    "  edge [arrowsize=0.6];",
  ];
  (opts.groups ?? []).forEach((grp, i) => {
    const members = grp.nodes.filter((id) => graph.nodes[id] && !placed.has(id));
    if (!members.length) return;
    out.push(`  subgraph cluster_${i} {`, `    label=${quote(grp.name)}; style="rounded,filled"; fillcolor="#f6f8fa"; color="#adb5bd";`);
    for (const id of members) {
      placed.add(id);
      out.push(`    ${nodeLine(graph.nodes[id], outputs)}`);
    }
    out.push("  }");
  });
  for (const n of graph.nodes) if (!placed.has(n.id)) out.push(`  ${nodeLine(n, outputs)}`);
  for (const n of graph.nodes) for (const i of n.inputs) out.push(`  n${i} -> n${n.id};`);
  out.push("}");
  return out.join("\n") + "\n";
}
