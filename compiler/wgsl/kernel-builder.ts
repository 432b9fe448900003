/** KernelBuilder: what every kernel generator writes WGSL with.
 *
 *  The heart is `value(id, coords)`: the WGSL expression for node `id` at an element. A node
 *  that lives in a buffer becomes a load; a node computed inside this kernel (an inlined index
 *  map, an elementwise op fused in) becomes its op's expression over its inputs' values, found
 *  the same way. So a fused kernel is just a bigger expression, and a permute or broadcast is
 *  index arithmetic inside the consumer's load, never a copy:
 *      value(%6 = add(%4, permute(%5)), [c0, c1])  →  (v4[c0 * 3u + c1] + v5[c1 * 2u + c0])
 *
 *  A kernel is written in passes over the same generator (../codegen.ts `generate`), and its
 *  text is never edited afterwards:
 *    1. analysis (no `render`): records what the generator loads and stores (the bindings, in
 *       order of first use; whether an in-place store is safe) and each `let` it makes with the
 *       names its expression reads;
 *    2. `plan` turns that into data: the bindings with their final access modes (read_write for
 *       values in the shared arena, decided by codegen from the program's structure, see
 *       ../plan-memory.ts) and, per `let`, whether it is used (by a statement or a used `let`,
 *       transitively), an alias of another name (`let a = b;`: uses read `b`), or unused;
 *    3. render: the same generator again with that plan — unused `let`s are never written,
 *       aliases are read through — once with the values' names (`Kernel.wgsl`, what the device
 *       compiles) and once with canonical names (`Kernel.key`: kernels over other values with the
 *       same key share one pipeline, runtime/pipelines.ts). */
import type { IndexCtx, LowerCtx } from "../../src/ops/def.ts";
import { lowering } from "../../src/ops/table.ts";
import { WGSL_HELPERS, wgslType } from "../../src/ops/wgsl.ts";
import { formatType } from "../../src/ir/shape.ts";
import type { DType, Dim, Graph, Node, OpKind, Shape, ValueId } from "../../src/ir/types.ts";
import type { Binding, Dispatch, Kernel } from "../program.ts";
import { F16_FEATURE } from "../precision.ts";
import { GPU_TARGET, type KernelFeature, type Target } from "../target.ts";
import { Writer } from "./writer.ts";

/** What a `let` becomes when rendered (see the header). */
export type LetFate = { readonly kind: "emit" } | { readonly kind: "drop" } | { readonly kind: "alias" };

/** The decisions a render pass writes: made from the analysis pass, before any WGSL is written. */
export interface RenderPlan {
  /** The storage bindings in order, access modes final; the store's destination last. */
  readonly bindings: readonly Binding[];
  /** By `let` name (every name the analysis pass made with `let`). */
  readonly lets: ReadonlyMap<string, LetFate>;
  /** Name buffers by binding index (vv0, vv1, …) and leave comment lines blank: the pipeline key. */
  readonly canonical: boolean;
  /** Bindings declared `array<vec4<f32>>` because the generator read four elements at once
   *  (`value4`); their scalar loads pick a component. */
  readonly vec4: ReadonlySet<ValueId>;
}

/** What the analysis pass saw. */
interface Analysis {
  /** Buffers in order of first load. */
  readonly reads: ValueId[];
  /** Buffers read four elements at a time somewhere (`value4`). */
  readonly vec4: Set<ValueId>;
  /** Per `let` the builder made: its expression's identifiers. */
  readonly lets: Map<string, { readonly expr: string; readonly refs: readonly string[] }>;
}

export const storageType = (d: DType): string => (d === "bool" ? "u32" : d);

export class KernelBuilder {
  /** The body of `main`; generators write into it. */
  readonly w: Writer;
  private readonly seen: Analysis = { reads: [], vec4: new Set(), lets: new Map() };
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
     *  writes; `aliasSafe` says, after the analysis pass, whether the generator's loads were. */
    readonly alias?: ValueId,
    /** The render pass's decisions; without it this is the analysis pass. */
    private readonly render?: RenderPlan,
    /** Values stored as f16 (mixed precision, ../precision.ts): declared `array<f16>`, each load
     *  widened to f32 and each store narrowed, so all arithmetic stays f32. */
    readonly half: ReadonlySet<ValueId> = NO_VALUES,
  ) {
    // Statements sit inside `main`, one level in.
    this.w = new Writer(1);
  }

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

  /** Bind `expr` to a fresh `let` in the body; returns the name to read it by. A render pass
   *  writes only the `let`s the analysis pass saw used, and reads an alias (`let a = b;`)
   *  through to `b`. */
  let(expr: string, prefix = "t"): string {
    let name = `${prefix}${this.tmp++}`;
    // "f" or "i" with counter 32 would shadow a WGSL type (`let f32 = …` does not compile).
    while (WGSL_TYPE_NAMES.has(name)) name = `${prefix}${this.tmp++}`;
    if (!this.render) {
      this.seen.lets.set(name, { expr, refs: identifiers(expr) });
      this.w.line(`let ${name} = ${expr};`);
      return name;
    }
    const fate = this.render.lets.get(name)?.kind ?? "emit";
    if (fate === "alias") return expr;
    if (fate === "emit") this.w.line(`let ${name} = ${expr};`);
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

  /** The name of a bound value: `v<id>`, or `vv<binding index>` when rendering the key. */
  private buffer(id: ValueId): string {
    if (!this.render?.canonical) return `v${id}`;
    const i = this.render.bindings.findIndex((b) => b.value === id);
    if (i < 0) throw new Error(`${this.name}: %${id} is not among the bindings its analysis found`);
    return `vv${i}`;
  }

  /** Raw load of element `flat` of a buffer-backed value; bool comes back as a WGSL bool. */
  load(id: ValueId, flat: string, at?: string): string {
    if (id === this.alias) this.pending.push({ flat, at });
    if (id === this.output && this.alias !== undefined) this.aliasOk = false;
    if (!this.seen.reads.includes(id)) this.seen.reads.push(id);
    const e = this.render?.vec4.has(id) ? `${this.buffer(id)}[(${flat}) / 4u][(${flat}) % 4u]` : `${this.buffer(id)}[${flat}]`;
    if (this.half.has(id)) return `f32(${e})`;
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

  /** Whether node `id` is computed inside this kernel (an index map or elementwise op fused in)
   *  rather than loaded from its buffer. */
  inlined(id: ValueId): boolean {
    return this.inline.has(id);
  }

  /** Whether `value4` can read node `id`: an f32 value in a buffer of its own (not computed in
   *  this kernel, not the GEMM's accumulator, not stored as f16, not stored over), whose last
   *  axis is a static multiple of 4, so that four elements from a coordinate that is a multiple
   *  of 4 along it are one aligned vec4 (every binding starts at a multiple of 16 bytes: the
   *  arena's offsets are WebGPU's minStorageBufferOffsetAlignment, at least 16). */
  canValue4(id: ValueId): boolean {
    const { type } = this.node(id);
    const last = type.shape[type.shape.length - 1];
    return (
      !this.inline.has(id) &&
      id !== this.op &&
      id !== this.alias &&
      id !== this.output &&
      type.dtype === "f32" &&
      !this.half.has(id) &&
      typeof last === "number" &&
      last > 0 &&
      last % 4 === 0
    );
  }

  /** The elements of node `id` at `coords` and the next three along its last axis, as one
   *  vec4<f32> load: `coords`' last entry must be a multiple of 4 and `canValue4(id)` true. The
   *  binding is then declared `array<vec4<f32>>` (the render plan's `vec4`) and every scalar load
   *  of it picks a component: on lavapipe each storage load is a loop over the SIMD lanes
   *  (../kernels/gemm-register.ts), so one vec4 load costs about what one f32 load does. */
  value4(id: ValueId, coords: readonly string[]): string {
    if (!this.canValue4(id)) throw new Error(`${this.name}: %${id} cannot be read four elements at a time`);
    if (!this.seen.reads.includes(id)) this.seen.reads.push(id);
    this.seen.vec4.add(id);
    return `${this.buffer(id)}[(${this.linear(coords, this.node(id).type.shape)}) / 4u]`;
  }

  lowerCtx(node: Node): LowerCtx<OpKind> {
    return { attrs: node.attrs, type: node.type, inTypes: node.inputs.map((i) => this.node(i).type), dim: (d) => this.dim(d) };
  }

  /** `v<out>[flat] = expr;`, converting a bool to its stored u32 and an f32 to a stored f16. */
  store(flat: string, expr: string, at?: string): void {
    const dest = this.alias ?? this.output;
    if (this.alias !== undefined) {
      if (!this.pending.every((p) => p.flat === flat || (p.at !== undefined && p.at === at))) this.aliasOk = false;
      this.pending = [];
      this.stores++;
    }
    const v = this.half.has(dest) ? `f16(${expr})` : this.node(this.output).type.dtype === "bool" ? `select(0u, 1u, ${expr})` : expr;
    this.w.line(`${this.buffer(dest)}[${flat}] = ${v};`);
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

  /** The analysis pass's result as a render plan (see the header): the bindings in order of
   *  first load, then the destination, read_write where `readWrite` says (values bound in the
   *  shared arena) and for the destination; the fate of every `let`. */
  plan(readWrite: (v: ValueId) => boolean, canonical = false): RenderPlan {
    if (this.render) throw new Error(`${this.name}: plan() belongs to the analysis pass`);
    return {
      bindings: this.bindings(readWrite),
      lets: letFates(this.seen.lets, this.w.toString()),
      canonical,
      vec4: new Set(this.seen.vec4),
    };
  }

  private bindings(readWrite: (v: ValueId) => boolean): Binding[] {
    const dest = this.alias ?? this.output;
    const bindings: Binding[] = this.seen.reads
      .filter((v) => v !== dest)
      .map((value) => ({ value, access: readWrite(value) ? "read_write" : "read" }));
    bindings.push({ value: dest, access: "read_write" });
    return bindings;
  }

  /** Assemble the shader: header comment, helpers, bindings, then `main` around the body. In the
   *  analysis pass the bindings are provisional (all read); only render passes' kernels are kept. */
  finish(opts: {
    what: string;
    workgroupSize: readonly number[];
    dispatch: Dispatch;
    shared?: readonly string[];
    /** WebGPU features the body uses (enabled at the top); with "subgroups", main also gets
     *  the builtins `sid` (subgroup_invocation_id) and `ssize` (subgroup_size) the body reads. */
    features?: readonly KernelFeature[];
    /** WGSL diagnostic filters for the module, e.g. "off, subgroup_uniformity" where subgroup
     *  operations run under branches WGSL's analysis cannot see are uniform across a subgroup. */
    diagnostics?: readonly string[];
  }): Kernel {
    const out = this.node(this.output);
    const body = this.w.toString();
    const bindings = this.render?.bindings ?? this.bindings(() => false);
    const uniforms = [...this.syms].sort();
    const canonical = this.render?.canonical ?? false;
    const head = new Writer();
    // Comments are blank lines in the key: line numbers stay those of the WGSL.
    const comment = (text: string) => head.line(canonical ? "" : `// ${text}`);
    comment(`${this.name} = ${opts.what} -> %${out.id}, ${formatType(out.type)}${out.site ? ` @ ${out.site}` : ""}`);
    // Directives come before every declaration. Only kernels binding an f16 value (mixed
    // precision) need `enable f16;`, only subgroup variants `enable subgroups;`.
    const f16 = bindings.some((b) => this.half.has(b.value));
    const features: KernelFeature[] = [...(f16 ? [F16_FEATURE] : []), ...(opts.features ?? [])];
    for (const f of features) head.line(`enable ${f === F16_FEATURE ? "f16" : f};`);
    for (const d of opts.diagnostics ?? []) head.line(`diagnostic(${d});`);
    if (this.alias !== undefined) comment(`in place: %${out.id} is stored over %${this.alias}, read only at the element stored`);
    const vec4 = this.render?.vec4 ?? this.seen.vec4;
    const element = (v: ValueId) => (vec4.has(v) ? "vec4<f32>" : this.half.has(v) ? "f16" : storageType(this.node(v).type.dtype));
    bindings.forEach((b, i) =>
      head.line(`@group(0) @binding(${i}) var<storage, ${b.access}> ${this.buffer(b.value)}: array<${element(b.value)}>;`),
    );
    if (uniforms.length) {
      head.line(`struct Dims { ${uniforms.map((s) => `${s}: u32`).join(", ")} }`);
      head.line(`@group(0) @binding(${bindings.length}) var<uniform> u: Dims;`);
    }
    for (const s of opts.shared ?? []) head.line(s);
    for (const src of helpersFor(body)) head.line("", src);
    head.line("", `@compute @workgroup_size(${opts.workgroupSize.join(", ")})`);
    head.line("fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,");
    // The subgroup builtins a body reads (`sid`, `ssize`), on a line of their own.
    const builtins = [
      ["sid", "subgroup_invocation_id"],
      ["ssize", "subgroup_size"],
    ].filter(([name]) => features.includes("subgroups") && identifiers(body).includes(name));
    const sub = builtins.length ? `,\n        ${builtins.map(([name, b]) => `@builtin(${b}) ${name}: u32`).join(", ")}` : "";
    head.line(`        @builtin(local_invocation_index) lid: u32, @builtin(local_invocation_id) lid3: vec3<u32>${sub}) {`);
    const wgsl = `${head}\n${body}\n}\n`;
    const k: Kernel = {
      name: this.name,
      output: this.output,
      wgsl,
      key: wgsl,
      what: opts.what,
      nodes: [],
      bindings,
      uniforms,
      dispatch: opts.dispatch,
      ...(features.length ? { features } : {}),
    };
    return this.alias === undefined ? k : { ...k, inPlace: this.alias };
  }
}

/** The fate of each `let` the analysis pass made, given the whole body it wrote: used when a
 *  statement (any line that is not one of these `let`s) or a used `let` reads its name, an alias
 *  when its expression is one name (read through to it), else dropped. */
function letFates(
  lets: ReadonlyMap<string, { readonly expr: string; readonly refs: readonly string[] }>,
  body: string,
): Map<string, LetFate> {
  const used = new Set<string>();
  const visit = (name: string) => {
    const l = lets.get(name);
    if (!l || used.has(name)) return;
    used.add(name);
    for (const r of l.refs) visit(resolve(r));
  };
  // An alias's own name is never written: a use of it is a use of what it names.
  const resolve = (name: string): string => {
    const l = lets.get(name);
    return l && isIdentifier(l.expr) ? resolve(l.expr) : name;
  };
  for (const line of body.split("\n")) {
    const t = line.trimStart();
    const own = t.startsWith("let ") ? t.slice(4, t.indexOf(" = ")) : undefined;
    if (own !== undefined && lets.has(own)) continue;
    for (const r of identifiers(line)) visit(resolve(r));
  }
  const fates = new Map<string, LetFate>();
  for (const [name, l] of lets) fates.set(name, { kind: isIdentifier(l.expr) ? "alias" : used.has(name) ? "emit" : "drop" });
  return fates;
}

const isWordChar = (c: string): boolean => (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || c === "_";
/** One word: a name or a literal (`let a = b;`, `let c = 0u;` are aliases, as `\w+` would say). */
const isIdentifier = (s: string): boolean => s.length > 0 && [...s].every(isWordChar);

/** The identifiers in a line of WGSL (words not starting with a digit; `1u`, `0.5f` are not). */
function identifiers(text: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; ) {
    if (!isWordChar(text[i])) {
      i++;
      continue;
    }
    let j = i;
    while (j < text.length && isWordChar(text[j])) j++;
    // A word after a '.' is a field or swizzle (u.B, wid.x), not a name.
    if (!(text[i] >= "0" && text[i] <= "9") && text[i - 1] !== ".") out.push(text.slice(i, j));
    i = j;
  }
  return out;
}

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

const NO_VALUES: ReadonlySet<ValueId> = new Set();

const WGSL_TYPE_NAMES = new Set(["f16", "f32", "i32", "u32"]);

/** Coordinates as a key, size-1 axes as 0u (as `broadcastCoords` writes them). */
const unitZero = (coords: readonly string[], shape: Shape): string => coords.map((c, a) => (shape[a] === 1 ? "0u" : c)).join(",");

const key = (coords: readonly string[], shape: Shape): string => `${coords.join(",")}|${shape.join(",")}`;

export { wgslType };
