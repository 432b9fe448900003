/** verify: reject malformed graphs with a message naming the node. Checks, per node: its id is
 *  its index, the op exists, the arity, the attributes against the op's schema, the inputs come
 *  earlier (a later input is a cycle or an ordering error, told apart), and the stored type is
 *  what the op's rule infers from the inputs (dtype and shape mismatches). Then the outputs. */
import { describeNode, VerifyError } from "./errors.ts";
import { formatType, isValidDim, shapeEq } from "./shape.ts";
import { DTYPES, type Graph, type Node, type OpKind } from "./types.ts";
import type { AttrKind } from "../ops/def.ts";
import { isOpKind, OPS } from "../ops/table.ts";

const isInt = (v: unknown): v is number => Number.isInteger(v);
const ints = (v: unknown, n?: number): boolean => Array.isArray(v) && v.every(isInt) && (n === undefined || v.length === n);

const ATTR_CHECKS: Readonly<Record<AttrKind, (v: unknown) => boolean>> = {
  string: (v) => typeof v === "string",
  int: isInt,
  number: (v) => typeof v === "number",
  bool: (v) => typeof v === "boolean",
  dtype: (v) => DTYPES.includes(v as never),
  shape: (v) => Array.isArray(v) && v.every(isValidDim),
  dims: (v) => Array.isArray(v) && v.every(isValidDim),
  ints: (v) => ints(v),
  pair: (v) => ints(v, 2),
  pads4: (v) => ints(v, 4),
  "number|numbers": (v) => typeof v === "number" || (Array.isArray(v) && v.every((x) => typeof x === "number")),
};

/** Problems with a node's attributes against its op's schema, or undefined. */
export function checkAttrs(op: OpKind, attrs: Readonly<Record<string, unknown>>): string | undefined {
  const schema = OPS[op].attrs as Readonly<Record<string, AttrKind | `${AttrKind}?`>>;
  for (const [k, spec] of Object.entries(schema)) {
    const kind = spec.replace(/\?$/, "") as AttrKind;
    if (!Object.hasOwn(attrs, k)) {
      if (kind !== spec) continue;
      return `missing attribute ${k} (${kind})`;
    }
    if (!ATTR_CHECKS[kind](attrs[k])) return `attribute ${k}=${shortJson(attrs[k])} is not a valid ${kind}`;
  }
  for (const k of Object.keys(attrs)) if (!Object.hasOwn(schema, k)) return `unknown attribute ${k}`;
  return undefined;
}

export function verify(g: Graph): void {
  const inputNames = new Set<string>();
  g.nodes.forEach((n, index) => {
    const fail = (msg: string): never => {
      throw new VerifyError(`${describeNode(n.op, n.id, n.site)}: ${msg}`);
    };
    if (n.id !== index) fail(`id %${n.id} stands at position ${index}`);
    if (!isOpKind(n.op)) fail(`unknown op "${n.op}"`);
    const def = OPS[n.op];
    const arity = def.arity === "variadic" ? undefined : def.arity;
    if (arity !== undefined ? n.inputs.length !== arity : n.inputs.length === 0) {
      fail(`takes ${arity ?? "one or more"} input${arity === 1 ? "" : "s"}, got ${n.inputs.length}`);
    }
    for (const i of n.inputs) {
      if (!isInt(i) || i < 0 || i >= g.nodes.length) fail(`input %${i} does not exist`);
      if (i >= n.id) fail(findCycle(g, n.id) ?? `input %${i} comes after the node (nodes must be in topological order)`);
    }
    const bad = checkAttrs(n.op, n.attrs as Readonly<Record<string, unknown>>);
    if (bad) fail(bad);
    if (n.op === "input") {
      const name = (n as Node<"input">).attrs.name;
      if (inputNames.has(name)) fail(`input name "${name}" is used twice`);
      inputNames.add(name);
    }
    let want;
    try {
      want = (def.infer as (i: unknown, a: unknown) => Node["type"])(
        n.inputs.map((i) => g.nodes[i].type),
        n.attrs,
      );
    } catch (e) {
      fail((e as Error).message);
    }
    if (want!.dtype !== n.type.dtype || !shapeEq(want!.shape, n.type.shape)) {
      fail(`type is ${formatType(n.type)} but the op gives ${formatType(want!)}`);
    }
  });
  if (g.outputs.length === 0) throw new VerifyError("graph has no outputs");
  const names = new Set<string>();
  for (const o of g.outputs) {
    if (!isInt(o.id) || o.id < 0 || o.id >= g.nodes.length) throw new VerifyError(`output ${o.name}=%${o.id} does not exist`);
    if (names.has(o.name)) throw new VerifyError(`output name "${o.name}" is used twice`);
    // Any name round-trips through the text IR (quoted where it must be); an empty one names nothing.
    if (typeof o.name !== "string" || o.name === "") throw new VerifyError(`output %${o.id} has no name`);
    names.add(o.name);
  }
}

/** "cycle: %2 -> %4 -> %2" if `start` reaches itself through its inputs. A depth-first search
 *  with an explicit stack: a chain of a million nodes must not overflow the call stack. */
function findCycle(g: Graph, start: number): string | undefined {
  const seen = new Set<number>([start]);
  const path: number[] = [start];
  const next: number[] = [0];
  while (path.length) {
    const id = path[path.length - 1];
    const ins = g.nodes[id]?.inputs ?? [];
    const k = next[next.length - 1]++;
    if (k >= ins.length) {
      path.pop();
      next.pop();
      continue;
    }
    const i = ins[k];
    if (i === start) return `cycle: ${[...path, start].map((v) => `%${v}`).join(" -> ")}`;
    if (seen.has(i)) continue;
    seen.add(i);
    path.push(i);
    next.push(0);
  }
  return undefined;
}

/** A value as JSON, cut short: an error message must not repeat a megabyte of attribute. */
function shortJson(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
