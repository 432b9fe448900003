/** parse: the text IR back into a Graph (the inverse of printGraph). Lines may come in any
 *  order; ids must be 0..n-1. The result is not verified: run `verify` to catch cycles,
 *  arity, attribute and type errors. Syntax errors give line and column:
 *      parse error at 3:17: expected a dtype, got "f33" */
import { KilnError } from "./errors.ts";
import { DTYPES, type DType, type Dim, type Graph, type Node, type OpKind, type Output } from "./types.ts";
import { OPS, isOpKind } from "../ops/table.ts";

export class ParseError extends KilnError {
  override name = "ParseError";
}

class Cursor {
  pos = 0;
  constructor(
    readonly text: string,
    readonly line: number,
  ) {}

  fail(msg: string): never {
    throw new ParseError(`parse error at ${this.line}:${this.pos + 1}: ${msg}\n  ${this.text}\n  ${" ".repeat(this.pos)}^`);
  }
  ws(): void {
    while (this.text[this.pos] === " " || this.text[this.pos] === "\t") this.pos++;
  }
  peek(s: string): boolean {
    this.ws();
    return this.text.startsWith(s, this.pos);
  }
  eat(s: string): boolean {
    if (!this.peek(s)) return false;
    this.pos += s.length;
    return true;
  }
  expect(s: string): void {
    if (!this.eat(s)) this.fail(`expected "${s}", got "${this.text.slice(this.pos, this.pos + 12)}"`);
  }
  match(re: RegExp, what: string): string {
    this.ws();
    const m = re.exec(this.text.slice(this.pos));
    if (!m || m.index !== 0) this.fail(`expected ${what}, got "${this.text.slice(this.pos, this.pos + 12)}"`);
    this.pos += m[0].length;
    return m[0];
  }
  /** Step back over a token just matched, so an error points at its start. */
  back(token: string): this {
    this.pos -= token.length;
    return this;
  }
  done(): boolean {
    this.ws();
    return this.pos >= this.text.length;
  }

  id(): number {
    return Number(this.match(/%\d+/, "a value like %3").slice(1));
  }
  dim(): Dim {
    const s = this.match(/\d+|[A-Za-z_][A-Za-z0-9_]*/, "a dim");
    return /^\d/.test(s) ? Number(s) : s;
  }
  type(): { dtype: DType; shape: Dim[] } {
    const dtype = this.match(/[a-z0-9]+/, "a dtype");
    if (!DTYPES.includes(dtype as DType)) this.back(dtype).fail(`unknown dtype "${dtype}"`);
    this.expect("[");
    const shape: Dim[] = [];
    if (!this.eat("]")) {
      do shape.push(this.dim());
      while (this.eat(","));
      this.expect("]");
    }
    return { dtype: dtype as DType, shape };
  }
  /** JSON values, plus nan, inf and -inf. */
  value(): unknown {
    this.ws();
    if (this.eat("[")) {
      const out: unknown[] = [];
      if (this.eat("]")) return out;
      do out.push(this.value());
      while (this.eat(","));
      this.expect("]");
      return out;
    }
    if (this.peek('"')) return JSON.parse(this.match(/"(?:[^"\\]|\\.)*"/, "a string"));
    const tok = this.match(/-?inf|nan|true|false|-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/, "a value");
    return tok === "nan" ? NaN : tok === "inf" ? Infinity : tok === "-inf" ? -Infinity : tok === "-0" ? -0 : JSON.parse(tok);
  }
}

export function parseGraph(text: string): Graph {
  const nodes: Node[] = [];
  let outputs: Output[] | undefined;
  text.split("\n").forEach((raw, i) => {
    const at = raw.search(/\s+@ /);
    const body = (at < 0 ? raw : raw.slice(0, at)).replace(/\s+$/, "");
    const site =
      at < 0
        ? ""
        : raw
            .slice(at)
            .replace(/^\s+@ /, "")
            .trim();
    const c = new Cursor(body, i + 1);
    if (c.done() || c.peek("#")) return;
    if (c.eat("return")) {
      if (outputs) c.fail("a second return");
      outputs = [];
      do {
        const name = c.match(/[A-Za-z_][\w./-]*/, "an output name");
        c.expect("=");
        outputs.push({ name, id: c.id() });
      } while (c.eat(","));
      if (!c.done()) c.fail("unexpected text after the outputs");
      return;
    }
    nodes.push(parseNode(c, site));
  });
  if (!outputs) throw new ParseError("parse error: no return line");
  const byId: Node[] = [];
  for (const n of nodes) {
    if (byId[n.id]) throw new ParseError(`parse error: %${n.id} is defined twice`);
    byId[n.id] = n;
  }
  for (let i = 0; i < byId.length; i++)
    if (!byId[i]) throw new ParseError(`parse error: %${i} is missing (ids must be 0..${byId.length - 1})`);
  return { nodes: byId, outputs };
}

function parseNode(c: Cursor, site: string): Node {
  const id = c.id();
  c.expect(":");
  const type = c.type();
  c.expect("=");
  const op = c.match(/[a-z_][a-z0-9_]*/, "an op name");
  if (!isOpKind(op)) c.back(op).fail(`unknown op "${op}"`);
  const inputs: number[] = [];
  if (c.peek("%")) {
    do inputs.push(c.id());
    while (c.eat(","));
  }
  const attrs: Record<string, unknown> = {};
  while (!c.done()) {
    const k = c.match(/[a-z_][a-z0-9_]*/i, "an attribute name");
    c.expect("=");
    if (k in attrs) c.fail(`attribute ${k} given twice`);
    attrs[k] = c.value();
  }
  // dtype and shape attributes equal to the type are not printed: restore them.
  const schema = OPS[op as OpKind].attrs as Readonly<Record<string, string>>;
  if ("dtype" in schema && !("dtype" in attrs)) attrs.dtype = type.dtype;
  if ("shape" in schema && !("shape" in attrs)) attrs.shape = type.shape;
  return { id, op: op as OpKind, inputs, attrs: attrs as never, type, site };
}
