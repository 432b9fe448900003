/** parse: the text IR back into a Graph (the inverse of printGraph). Lines may come in any
 *  order; ids must be 0..n-1. The result is not verified: run `verify` to catch cycles,
 *  arity, attribute and type errors. Syntax errors give line and column:
 *      parse error at 3:17: expected a dtype, got "f33"
 *  Any text gives a Graph or a ParseError — never another exception — in time linear in its
 *  length: one left-to-right scan per line with sticky (anchored) tokens, no backtracking
 *  pattern over a whole line, and no recursion (attribute values are scalars or flat lists).
 *  A line is  %id:type = op %in, … attr=value …  [@ site], where the site is the rest of the
 *  line after the first `@` outside a string (or a JSON string, when it needs quoting). */
import { KilnError } from "./errors.ts";
import { DTYPES, type DType, type Dim, type Graph, type Node, type OpKind, type Output } from "./types.ts";
import { OPS, isOpKind } from "../ops/table.ts";

export class ParseError extends KilnError {
  override name = "ParseError";
}

/** Ids and dims above this are refused while parsing (ids index lines; dims must be safe integers). */
const MAX_ID = 2 ** 31 - 1;

const TOKEN = {
  id: /%(\d{1,10})/y,
  dim: /\d{1,16}|[A-Za-z_][A-Za-z0-9_]*/y,
  dtype: /[a-z0-9]{1,8}/y,
  op: /[a-z_][a-z0-9_]*/y,
  attr: /[A-Za-z_][A-Za-z0-9_]*/y,
  name: /[A-Za-z_][\w./-]*/y,
  word: /-?inf|nan|true|false/y,
  number: /-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/y,
};

const ESCAPES: Readonly<Record<string, string>> = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };

class Cursor {
  pos = 0;
  constructor(
    readonly text: string,
    readonly line: number,
  ) {}

  fail(msg: string, at = this.pos): never {
    const shown = this.text.length > 200 ? `${this.text.slice(Math.max(0, at - 80), at + 80)}` : this.text;
    const caret = this.text.length > 200 ? Math.min(at, 80) : at;
    throw new ParseError(`parse error at ${this.line}:${at + 1}: ${msg}\n  ${shown}\n  ${" ".repeat(caret)}^`);
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
  got(): string {
    return JSON.stringify(this.text.slice(this.pos, this.pos + 12));
  }
  expect(s: string): void {
    if (!this.eat(s)) this.fail(`expected "${s}", got ${this.got()}`);
  }
  /** The token `re` (sticky) matches here, or undefined. */
  try(re: RegExp): RegExpExecArray | undefined {
    this.ws();
    re.lastIndex = this.pos;
    const m = re.exec(this.text);
    if (!m) return undefined;
    this.pos += m[0].length;
    return m;
  }
  match(re: RegExp, what: string): RegExpExecArray {
    return this.try(re) ?? this.fail(`expected ${what}, got ${this.got()}`);
  }
  done(): boolean {
    this.ws();
    return this.pos >= this.text.length;
  }

  id(): number {
    const start = (this.ws(), this.pos);
    const n = Number(this.match(TOKEN.id, "a value like %3")[1]);
    if (n > MAX_ID) this.fail(`value id %${n} is too large`, start);
    return n;
  }
  dim(): Dim {
    const start = (this.ws(), this.pos);
    const s = this.match(TOKEN.dim, "a dim")[0];
    if (!/^\d/.test(s)) return s;
    const d = Number(s);
    if (!Number.isSafeInteger(d)) this.fail(`dim ${s} is too large`, start);
    return d;
  }
  type(): { dtype: DType; shape: Dim[] } {
    const start = (this.ws(), this.pos);
    const dtype = this.match(TOKEN.dtype, "a dtype")[0];
    if (!DTYPES.includes(dtype as DType)) this.fail(`unknown dtype "${dtype}"`, start);
    this.expect("[");
    const shape: Dim[] = [];
    if (!this.eat("]")) {
      do shape.push(this.dim());
      while (this.eat(","));
      this.expect("]");
    }
    return { dtype: dtype as DType, shape };
  }
  /** A JSON string literal (a raw tab is taken as it is). */
  string(): string {
    this.expect('"');
    let out = "";
    for (let run = this.pos; ; ) {
      const ch = this.text[this.pos];
      if (ch === undefined) this.fail("unterminated string");
      if (ch === '"' || ch === "\\") {
        out += this.text.slice(run, this.pos);
        this.pos++;
        if (ch === '"') return out;
        const e = this.text[this.pos];
        if (e === "u") {
          const hex = this.text.slice(this.pos + 1, this.pos + 5);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail(`bad escape \\u${hex}`, this.pos - 1);
          out += String.fromCharCode(Number.parseInt(hex, 16));
          this.pos += 5;
        } else {
          if (e === undefined || !Object.hasOwn(ESCAPES, e)) this.fail(`bad escape \\${e ?? ""}`, this.pos - 1);
          out += ESCAPES[e];
          this.pos++;
        }
        run = this.pos;
      } else if (ch < " " && ch !== "\t") {
        this.fail(`control character U+${ch.charCodeAt(0).toString(16).padStart(4, "0")} in a string: write it escaped`);
      } else this.pos++;
    }
  }
  /** A scalar: a JSON number or string, true, false, nan, inf, -inf. */
  scalar(): number | string | boolean {
    if (this.peek('"')) return this.string();
    const w = this.try(TOKEN.word);
    if (w) return { nan: NaN, inf: Infinity, "-inf": -Infinity, true: true, false: false }[w[0]]!;
    return Number(this.match(TOKEN.number, "a value")[0]);
  }
  /** An attribute value: a scalar or a flat list of scalars. */
  value(): unknown {
    if (!this.eat("[")) return this.scalar();
    const out: unknown[] = [];
    if (this.eat("]")) return out;
    do {
      if (this.peek("[")) this.fail("nested lists are not attribute values");
      out.push(this.scalar());
    } while (this.eat(","));
    this.expect("]");
    return out;
  }
  /** The site after `@`: a JSON string, or the rest of the line without its surrounding space. */
  site(): string {
    if (this.peek('"')) {
      const s = this.string();
      if (!this.done()) this.fail("unexpected text after the site");
      return s;
    }
    let end = this.text.length;
    while (end > this.pos && (this.text[end - 1] === " " || this.text[end - 1] === "\t")) end--;
    const s = this.text.slice(this.pos, end);
    this.pos = this.text.length;
    return s;
  }
}

export function parseGraph(text: string): Graph {
  if (typeof text !== "string") throw new ParseError(`parse error: the text IR must be a string, got ${typeof text}`);
  const nodes: Node[] = [];
  let outputs: Output[] | undefined;
  let lineNo = 0;
  for (let start = 0; start <= text.length; ) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    const raw = text.slice(start, end > start && text[end - 1] === "\r" ? end - 1 : end);
    start = end + 1;
    const c = new Cursor(raw, ++lineNo);
    if (c.done() || c.peek("#")) continue;
    if (c.eat("return")) {
      if (outputs) c.fail("a second return");
      outputs = [];
      do {
        const name = c.peek('"') ? c.string() : c.match(TOKEN.name, "an output name")[0];
        c.expect("=");
        outputs.push({ name, id: c.id() });
      } while (c.eat(","));
      if (!c.done()) c.fail("unexpected text after the outputs");
      continue;
    }
    nodes.push(parseNode(c));
  }
  if (!outputs) throw new ParseError("parse error: no return line");
  // Distinct ids, n of them: all in 0..n-1 exactly when none below n is missing.
  const byId = new Map<number, Node>();
  for (const n of nodes) {
    if (byId.has(n.id)) throw new ParseError(`parse error: %${n.id} is defined twice`);
    byId.set(n.id, n);
  }
  for (let i = 0; i < nodes.length; i++)
    if (!byId.has(i)) throw new ParseError(`parse error: %${i} is missing (ids must be 0..${nodes.length - 1})`);
  return { nodes: nodes.map((_, i) => byId.get(i)!), outputs };
}

function parseNode(c: Cursor): Node {
  const id = c.id();
  c.expect(":");
  const type = c.type();
  c.expect("=");
  const opAt = (c.ws(), c.pos);
  const op = c.match(TOKEN.op, "an op name")[0];
  if (!isOpKind(op)) c.fail(`unknown op "${op}"`, opAt);
  const inputs: number[] = [];
  if (c.peek("%")) {
    do inputs.push(c.id());
    while (c.eat(","));
  }
  const attrs = new Map<string, unknown>();
  let site = "";
  while (!c.done()) {
    if (c.eat("@")) {
      site = c.site();
      break;
    }
    const k = c.match(TOKEN.attr, "an attribute name")[0];
    c.expect("=");
    if (attrs.has(k)) c.fail(`attribute ${k} given twice`);
    attrs.set(k, c.value());
  }
  // dtype and shape attributes equal to the type are not printed: restore them.
  const schema = OPS[op as OpKind].attrs as Readonly<Record<string, string>>;
  if (Object.hasOwn(schema, "dtype") && !attrs.has("dtype")) attrs.set("dtype", type.dtype);
  if (Object.hasOwn(schema, "shape") && !attrs.has("shape")) attrs.set("shape", type.shape);
  return { id, op: op as OpKind, inputs, attrs: Object.fromEntries(attrs) as never, type, site };
}
