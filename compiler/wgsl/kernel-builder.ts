/** KernelBuilder: what every kernel generator writes WGSL with.
 *
 *  The heart is `value(id, coords)`: the WGSL expression for node `id` at an element. A node
 *  that lives in a buffer becomes a load; a node computed inside this kernel (an inlined index
 *  map, an elementwise op fused in) becomes its op's expression over its inputs' values, found
 *  the same way. So a fused kernel is just a bigger expression, and a permute or broadcast is
 *  index arithmetic inside the consumer's load, never a copy:
 *      value(%6 = add(%4, permute(%5)), [c0, c1])  →  (v4[c0 * 3u + c1] + v5[c1 * 2u + c0])
 *  Bindings, uniforms and helpers are collected while the body is written, then `finish`
 *  assembles the shader. */
import type { IndexCtx, LowerCtx } from "../../src/ops/def.ts";
import { lowering } from "../../src/ops/table.ts";
import { WGSL_HELPERS, wgslType } from "../../src/ops/wgsl.ts";
import { formatType } from "../../src/ir/shape.ts";
import type { DType, Dim, Graph, Node, OpKind, Shape, ValueId } from "../../src/ir/types.ts";
import type { Binding, Dispatch, Kernel } from "../program.ts";
import { GPU_TARGET, type Target } from "../target.ts";
import { Writer } from "./writer.ts";

export const storageType = (d: DType): string => (d === "bool" ? "u32" : d);

export class KernelBuilder {
  /** The body of `main`; generators write into it. */
  readonly w = new Writer();
  private readonly reads = new Map<ValueId, "read" | "read_write">();
  private readonly syms = new Set<string>();
  private readonly flatOf = new Map<string, string>();
  private tmp = 0;
  /** While an epilogue is written: the GEMM's value at the store's coordinates (`result`). */
  private acc?: { coords: string; expr: string };
  /** With `alias`: its loads since the last store (flat index, and coordinates when known). */
  private pending: { flat: string; at?: string }[] = [];
  private aliasOk = true;
  private stores = 0;

  constructor(
    readonly graph: Graph,
    readonly name: string,
    readonly output: ValueId,
    /** Nodes computed inside this kernel instead of loaded from their buffers. */
    private readonly inline: ReadonlySet<ValueId>,
    /** The device kind: generators with more than one way to write a kernel ask it. */
    readonly target: Target = GPU_TARGET,
    /** The node whose kernel generator writes this kernel: the output, or a GEMM whose
     *  epilogue computes the output (../fuse.ts) — then `result` stores the epilogue. */
    readonly op: ValueId = output,
    /** An in-place update: the store goes to this input's buffer (bound once, read_write)
     *  instead of the output's. Safe only if every load of it reads the element the next store
     *  writes; `aliasSafe` says whether the written kernel did. */
    readonly alias?: ValueId,
  ) {}

  /** Whether the aliased input was read only at the element each store writes (by the same
   *  coordinates or the same flat index expression), and the output itself never. */
  get aliasSafe(): boolean {
    return this.alias !== undefined && this.aliasOk && this.pending.length === 0 && this.stores > 0;
  }

  node(id: ValueId): Node {
    return this.graph.nodes[id];
  }

  /** A dim as a u32 expression: literal, or the uniform field of a symbolic dim. */
  dim(d: Dim): string {
    if (typeof d === "number") return `${d}u`;
    this.syms.add(d);
    return `u.${d}`;
  }

  /** The element count of `shape` as a u32 expression. */
  size(shape: Shape): string {
    const stat = shape.reduce<number>((a, d) => (typeof d === "number" ? a * d : a), 1);
    const parts = shape.filter((d) => typeof d === "string").map((d) => this.dim(d));
    if (stat !== 1 || parts.length === 0) parts.push(`${stat}u`);
    return parts.length === 1 ? parts[0] : `(${parts.join(" * ")})`;
  }

  /** Bind `expr` to a fresh `let` in the body; returns its name. */
  let(expr: string, prefix = "t"): string {
    let name = `${prefix}${this.tmp++}`;
    // "f" or "i" with counter 32 would shadow a WGSL type (`let f32 = …` does not compile).
    while (WGSL_TYPE_NAMES.has(name)) name = `${prefix}${this.tmp++}`;
    this.w.line(`let ${name} = ${expr};`);
    return name;
  }

  /** Row-major flat index of `coords` in `shape` (Horner form; size-1 axes drop out). */
  linear(coords: readonly string[], shape: Shape): string {
    const known = this.flatOf.get(key(coords, shape));
    if (known) return known;
    let acc = "";
    shape.forEach((d, a) => {
      if (d === 1) return;
      acc = acc ? `(${acc} * ${this.dim(d)} + ${coords[a]})` : coords[a];
    });
    return acc || "0u";
  }

  /** Coordinates of flat index `flat` in `shape`, as `let`s in the body. */
  unravel(flat: string, shape: Shape, prefix = "c"): string[] {
    const coords = new Array<string>(shape.length).fill("0u");
    // An empty tensor has no element to locate, and `% 0u` would not compile.
    if (shape.includes(0)) return coords;
    let rest = flat;
    for (let a = shape.length - 1; a >= 0; a--) {
      const d = shape[a];
      if (d === 1) continue;
      const first = shape.slice(0, a).every((e) => e === 1);
      coords[a] = this.let(first ? rest : `${rest} % ${this.dim(d)}`, prefix);
      if (!first) rest = this.let(`${rest} / ${this.dim(d)}`, "q");
    }
    this.flatOf.set(key(coords, shape), flat);
    return coords;
  }

  /** Raw load of element `flat` of a buffer-backed value; bool comes back as a WGSL bool. */
  load(id: ValueId, flat: string, at?: string): string {
    if (id === this.alias) this.pending.push({ flat, at });
    if (id === this.output && this.alias !== undefined) this.aliasOk = false;
    if (!this.reads.has(id)) this.reads.set(id, "read");
    const e = `v${id}[${flat}]`;
    return this.node(id).type.dtype === "bool" ? `(${e} != 0u)` : e;
  }

  /** The value of node `id` at `coords` (one u32 expression per axis of its shape). */
  value(id: ValueId, coords: readonly string[]): string {
    const node = this.node(id);
    if (id === this.op && id !== this.output) {
      // The epilogue reads its GEMM only at the store's coordinates (../fuse.ts keeps the chain
      // elementwise and of one shape), so this is the accumulator.
      if (this.acc?.coords !== unitZero(coords, node.type.shape)) throw new Error(`${node.op} %${id} read outside its epilogue's store`);
      return this.acc.expr;
    }
    if (!this.inline.has(id)) return this.load(id, this.linear(coords, node.type.shape), unitZero(coords, node.type.shape));
    const low = lowering(node);
    const ctx = this.lowerCtx(node);
    switch (low.kind) {
      case "elementwise": {
        const e = low.expr(
          node.inputs.map((i) => this.value(i, broadcastCoords(coords, node.type.shape, this.node(i).type.shape))),
          ctx,
        );
        // A value fused in from another node gets a name: the expression stays flat when an
        // op's WGSL uses an argument twice, and a reader sees the chain step by step.
        return id === this.output || node.op === "const" ? e : this.let(e, "e");
      }
      case "index":
        return low.expr({
          ...ctx,
          out: coords,
          at: (i, c) => this.value(node.inputs[i], c),
          linear: (c, s) => this.linear(c, s),
          unravel: (f, s) => this.unravel(this.let(f, "f"), s),
        } satisfies IndexCtx<OpKind>);
      default:
        throw new Error(`${node.op} %${id} cannot be computed inside another kernel`);
    }
  }

  lowerCtx(node: Node): LowerCtx<OpKind> {
    return { attrs: node.attrs, type: node.type, inTypes: node.inputs.map((i) => this.node(i).type), dim: (d) => this.dim(d) };
  }

  /** `v<out>[flat] = expr;`, converting a bool to its stored u32. */
  store(flat: string, expr: string, at?: string): void {
    const dest = this.alias ?? this.output;
    if (this.alias !== undefined) {
      if (!this.pending.every((p) => p.flat === flat || (p.at !== undefined && p.at === at))) this.aliasOk = false;
      this.pending = [];
      this.stores++;
    }
    this.reads.set(dest, "read_write");
    const v = this.node(this.output).type.dtype === "bool" ? `select(0u, 1u, ${expr})` : expr;
    this.w.line(`v${dest}[${flat}] = ${v};`);
  }

  /** A kernel op's store of `acc`, its value at `coords()` (element `flat` of its shape): the
   *  output itself, or, when the op is a GEMM with an epilogue, the output's expression with
   *  the GEMM's value taken to be `acc` (same shape, so the same flat index). */
  result(coords: () => readonly string[], flat: string, acc: string): void {
    if (this.op === this.output) return this.store(flat, acc);
    const at = coords();
    this.acc = { coords: unitZero(at, this.node(this.op).type.shape), expr: acc };
    this.store(flat, this.value(this.output, at), unitZero(at, this.node(this.output).type.shape));
    this.acc = undefined;
  }

  /** While `write` runs, the kernel op's value at `coords` is `acc`: a reduction's row epilogue
   *  (wgsl/kernels/reduce.ts) reads it broadcast back over the row it reduced. */
  withValue(coords: readonly string[], acc: string, write: () => void): void {
    this.acc = { coords: unitZero(coords, this.node(this.op).type.shape), expr: acc };
    write();
    this.acc = undefined;
  }

  /** The global invocation index of a linear dispatch (folded over x and y). */
  linearIndex(perGroup: number): string {
    return this.let(`(wid.y * nwg.x + wid.x) * ${perGroup}u + lid`, "i");
  }

  /** Assemble the shader: header comment, helpers, bindings, then `main` around the body. */
  finish(opts: { what: string; workgroupSize: readonly number[]; dispatch: Dispatch; shared?: readonly string[] }): Kernel {
    const out = this.node(this.output);
    const body = pruneLets(this.w.toString());
    const dest = this.alias ?? this.output;
    // Hand-written WGSL naming the output's binding cannot be redirected.
    if (this.alias !== undefined && new RegExp(`\\bv${this.output}\\[`).test(body)) this.aliasOk = false;
    const bindings: Binding[] = [...this.reads].filter(([v]) => v !== dest).map(([value, access]) => ({ value, access }));
    bindings.push({ value: dest, access: "read_write" });
    const uniforms = [...this.syms].sort();
    const head = new Writer();
    head.line(`// ${this.name} = ${opts.what} -> %${out.id}, ${formatType(out.type)}${out.site ? ` @ ${out.site}` : ""}`);
    if (this.alias !== undefined) head.line(`// in place: %${out.id} is stored over %${this.alias}, read only at the element stored`);
    bindings.forEach((b, i) => head.line(`${bindingDecl(i, b)}: array<${storageType(this.node(b.value).type.dtype)}>;`));
    if (uniforms.length) {
      head.line(`struct Dims { ${uniforms.map((s) => `${s}: u32`).join(", ")} }`);
      head.line(`@group(0) @binding(${bindings.length}) var<uniform> u: Dims;`);
    }
    for (const s of opts.shared ?? []) head.line(s);
    for (const src of helpersFor(body)) head.line("", src);
    head.line("", `@compute @workgroup_size(${opts.workgroupSize.join(", ")})`);
    head.line("fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,");
    head.line("        @builtin(local_invocation_index) lid: u32, @builtin(local_invocation_id) lid3: vec3<u32>) {");
    const wgsl = `${head}\n${body.replace(/^/gm, "  ")}\n}\n`;
    const k: Kernel = { name: this.name, output: this.output, wgsl, bindings, uniforms, dispatch: opts.dispatch };
    return this.alias === undefined ? k : { ...k, inPlace: this.alias };
  }
}

/** The start of binding `i`'s declaration, as `finish` writes it. */
const bindingDecl = (i: number, b: Binding): string => `@group(0) @binding(${i}) var<storage, ${b.access}> v${b.value}`;

/** `k` with the bindings of `values` declared read_write, in its WGSL and its bindings. WebGPU
 *  rejects a dispatch that binds one buffer read-only and writable, even on disjoint ranges, so
 *  every value placed in a shared arena is bound read_write (see compiler/plan-memory.ts).
 *  A binding whose declaration is not in `finish`'s form (hand-written WGSL) is left as it is;
 *  `canDeclareReadWrite` says which are. */
export function declareReadWrite(k: Kernel, values: ReadonlySet<ValueId>): Kernel {
  let wgsl = k.wgsl;
  const bindings = k.bindings.map((b, i): Binding => {
    if (b.access === "read_write" || !values.has(b.value) || !canDeclareReadWrite(k, i)) return b;
    const rw: Binding = { value: b.value, access: "read_write" };
    wgsl = wgsl.replace(`${bindingDecl(i, b)}:`, `${bindingDecl(i, rw)}:`);
    return rw;
  });
  return { ...k, wgsl, bindings };
}

/** Whether binding `i` of `k` is declared as `finish` writes it (so its access can be changed). */
export const canDeclareReadWrite = (k: Kernel, i: number): boolean => k.wgsl.includes(`${bindingDecl(i, k.bindings[i])}:`);

/** Coordinates into an input broadcast (numpy, right-aligned) to the output's shape. */
export function broadcastCoords(coords: readonly string[], outShape: Shape, inShape: Shape): string[] {
  const off = outShape.length - inShape.length;
  return inShape.map((d, a) => (d === 1 ? "0u" : coords[a + off]));
}

/** The helper functions `body` calls, and those they call. */
function helpersFor(body: string): string[] {
  const used: string[] = [];
  for (let text = body, grew = true; grew; ) {
    grew = false;
    for (const [name, src] of Object.entries(WGSL_HELPERS)) {
      if (!used.includes(src) && text.includes(`${name}(`)) {
        used.push(src);
        text += src;
        grew = true;
      }
    }
  }
  return used;
}

/** Drop `let`s nobody reads, and fold `let a = b;` aliases into their uses. */
export function pruneLets(body: string): string {
  let lines = body.split("\n");
  for (let changed = true; changed; ) {
    changed = false;
    const text = lines.join("\n");
    lines = lines.filter((l) => {
      const m = /^\s*let (\w+) = (.*);$/.exec(l);
      if (!m || new RegExp(`\\b${m[1]}\\b`).test(text.replace(l, ""))) return true;
      changed = true;
      return false;
    });
    for (let i = 0; i < lines.length; i++) {
      const m = /^\s*let (\w+) = (\w+);$/.exec(lines[i]);
      if (!m) continue;
      const re = new RegExp(`\\b${m[1]}\\b`, "g");
      lines = lines.filter((_, j) => j !== i).map((l) => l.replace(re, m[2]));
      changed = true;
      break;
    }
  }
  return lines.join("\n");
}

const WGSL_TYPE_NAMES = new Set(["f16", "f32", "i32", "u32"]);

/** Coordinates as a key, size-1 axes as 0u (as `broadcastCoords` writes them). */
const unitZero = (coords: readonly string[], shape: Shape): string => coords.map((c, a) => (shape[a] === 1 ? "0u" : c)).join(",");

const key = (coords: readonly string[], shape: Shape): string => `${coords.join(",")}|${shape.join(",")}`;

export { wgslType };
