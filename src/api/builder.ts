/** Building graphs in TypeScript. Each call adds a node, infers its type at once and records
 *  where it was made, so a shape error points at the user's line:
 *      const g = new GraphBuilder();
 *      const x = g.input("x", "f32", ["B", 784]);
 *      const h = x.matmul(g.input("W", "f32", [784, 500])).relu();
 *      const graph = g.build({ h });                                                      */
import { describeNode, KilnError, ShapeError } from "../ir/errors.ts";
import { formatShape, normAxis } from "../ir/shape.ts";
import type { DType, Dim, Graph, Node, OpAttrs, OpKind, Output, Shape, TensorType, ValueId } from "../ir/types.ts";
import { OPS } from "../ops/table.ts";
import { callSite } from "./site.ts";

export type Operand = Tensor | number;

/** A gradient rule attached to one value by `customGradient` (src/api/grad.ts). */
export interface CustomVjp {
  readonly inputs: readonly Tensor[];
  readonly vjp: (g: Tensor) => readonly (Tensor | undefined)[];
}

export class GraphBuilder {
  private readonly nodes: Node[] = [];
  /** Values whose gradient `grad` takes from a rule of their own rather than from the nodes
   *  that compute them. A build-time notion, like JAX's custom_vjp: the built Graph holds only
   *  the nodes, and the rule's backward nodes when `grad` ran. */
  readonly customVjps = new Map<ValueId, CustomVjp>();

  /** Add a node; its type comes from the op's shape rule. */
  add<K extends OpKind>(op: K, inputs: readonly Tensor[], attrs: OpAttrs[K]): Tensor {
    const id = this.nodes.length;
    const site = callSite();
    for (const t of inputs) {
      if (t.builder !== this) throw new KilnError(`${describeNode(op, id, site)}: an input belongs to another graph`);
    }
    let type: TensorType;
    try {
      type = OPS[op].infer(
        inputs.map((t) => t.type),
        attrs,
      );
    } catch (e) {
      if (e instanceof ShapeError) throw new ShapeError(`${describeNode(op, id, site)}: ${e.message}`);
      throw e;
    }
    this.nodes.push({ id, op, inputs: inputs.map((t) => t.id), attrs, type, site });
    return new Tensor(this, id);
  }

  type(id: ValueId): TensorType {
    return this.nodes[id].type;
  }

  node(id: ValueId): Node {
    return this.nodes[id];
  }

  tensor(id: ValueId): Tensor {
    if (!this.nodes[id]) throw new KilnError(`no value %${id} in this graph`);
    return new Tensor(this, id);
  }

  /** A builder that continues `graph`: its nodes keep their ids, new ones follow. */
  static from(graph: Graph): GraphBuilder {
    const b = new GraphBuilder();
    b.nodes.push(...graph.nodes);
    return b;
  }

  input(name: string, dtype: DType, shape: Shape): Tensor {
    if (this.nodes.some((n) => n.op === "input" && (n.attrs as OpAttrs["input"]).name === name)) {
      throw new KilnError(`input "${name}" is declared twice`);
    }
    return this.add("input", [], { name, dtype, shape: [...shape] });
  }

  /** A number fills `shape` (inlined as a literal); an array is the row-major data. An f32
   *  constant holds the f32 nearest the given number, as the GPU will. */
  constant(value: number | readonly number[], dtype: DType = "f32", shape?: Shape): Tensor {
    const s = shape ?? (typeof value === "number" ? [] : [value.length]);
    const f = dtype === "f32" ? Math.fround : (v: number) => v;
    return this.add("const", [], { dtype, shape: [...s], value: typeof value === "number" ? f(value) : value.map(f) });
  }

  iota(shape: Shape, axis: number, dtype: DType = "i32"): Tensor {
    return this.add("iota", [], { dtype, shape: [...shape], axis: normAxis(axis, shape.length) ?? axis });
  }

  /** Uniform [0, 1) of `shape`; a u32 scalar `key` (e.g. the step) picks a fresh stream. */
  random(shape: Shape, seed: number, key: Tensor | number = 0): Tensor {
    const k = typeof key === "number" ? this.constant(key, "u32") : key;
    return this.add("random", [k], { shape: [...shape], seed });
  }

  build(outputs: Readonly<Record<string, Tensor>> | Tensor): Graph {
    const outs: Output[] = Object.entries(outputs instanceof Tensor ? { out: outputs } : outputs).map(([name, t]) => ({ name, id: t.id }));
    if (outs.length === 0) throw new KilnError("a graph needs at least one output");
    return { nodes: [...this.nodes], outputs: outs };
  }
}

/** conv2d's options (NHWC, HWIO): padding [top, bottom, left, right]; groups 1 when left out. */
export interface ConvOptions {
  readonly strides?: readonly [number, number];
  readonly padding?: readonly [number, number, number, number];
  readonly dilations?: readonly [number, number];
  readonly groups?: number;
}

export class Tensor {
  constructor(
    readonly builder: GraphBuilder,
    readonly id: ValueId,
  ) {}

  get type(): TensorType {
    return this.builder.type(this.id);
  }
  get shape(): Shape {
    return this.type.shape;
  }
  get dtype(): DType {
    return this.type.dtype;
  }
  get rank(): number {
    return this.shape.length;
  }

  private un<K extends OpKind>(op: K): Tensor {
    return this.builder.add(op, [this], {} as OpAttrs[K]);
  }

  private bin<K extends OpKind>(op: K, other: Operand): Tensor {
    return this.builder.add(op, [this, this.lift(other)], {} as OpAttrs[K]);
  }

  /** A number becomes a scalar constant of this tensor's dtype. */
  lift(v: Operand): Tensor {
    return typeof v === "number" ? this.builder.constant(v, this.dtype === "bool" ? "f32" : this.dtype) : v;
  }

  private axes(axes: number | readonly number[] | undefined): number[] {
    const list = axes === undefined ? this.shape.map((_, i) => i) : typeof axes === "number" ? [axes] : axes;
    return list.map((a) => normAxis(a, this.rank) ?? a);
  }

  neg() {
    return this.un("neg");
  }
  abs() {
    return this.un("abs");
  }
  sign() {
    return this.un("sign");
  }
  exp() {
    return this.un("exp");
  }
  log() {
    return this.un("log");
  }
  sqrt() {
    return this.un("sqrt");
  }
  rsqrt() {
    return this.un("rsqrt");
  }
  recip() {
    return this.un("recip");
  }
  sin() {
    return this.un("sin");
  }
  cos() {
    return this.un("cos");
  }
  tanh() {
    return this.un("tanh");
  }
  erf() {
    return this.un("erf");
  }

  sigmoid() {
    return this.un("sigmoid");
  }
  relu() {
    return this.un("relu");
  }
  floor() {
    return this.un("floor");
  }
  ceil() {
    return this.un("ceil");
  }
  not() {
    return this.un("not");
  }
  cast(dtype: DType) {
    return this.builder.add("cast", [this], { dtype });
  }
  /** The same value, through which no gradient flows. */
  stopGradient() {
    return this.un("stop_gradient");
  }

  add(o: Operand) {
    return this.bin("add", o);
  }
  sub(o: Operand) {
    return this.bin("sub", o);
  }
  mul(o: Operand) {
    return this.bin("mul", o);
  }
  div(o: Operand) {
    return this.bin("div", o);
  }
  mod(o: Operand) {
    return this.bin("mod", o);
  }
  pow(o: Operand) {
    return this.bin("pow", o);
  }
  maximum(o: Operand) {
    return this.bin("max", o);
  }
  minimum(o: Operand) {
    return this.bin("min", o);
  }
  eq(o: Operand) {
    return this.bin("eq", o);
  }
  ne(o: Operand) {
    return this.bin("ne", o);
  }
  lt(o: Operand) {
    return this.bin("lt", o);
  }
  le(o: Operand) {
    return this.bin("le", o);
  }
  gt(o: Operand) {
    return this.bin("gt", o);
  }
  ge(o: Operand) {
    return this.bin("ge", o);
  }
  and(o: Tensor) {
    return this.bin("and", o);
  }
  or(o: Tensor) {
    return this.bin("or", o);
  }
  /** this ? a : b, elementwise with broadcasting. */
  select(a: Operand, b: Operand) {
    const ta = typeof a === "number" ? (typeof b === "number" ? this.builder.constant(a) : b.lift(a)) : a;
    return this.builder.add("select", [this, ta, ta.lift(b)], {});
  }

  sum(axes?: number | readonly number[], keepdims = false) {
    return this.builder.add("reduce_sum", [this], { axes: this.axes(axes), keepdims });
  }
  mean(axes?: number | readonly number[], keepdims = false) {
    return this.builder.add("reduce_mean", [this], { axes: this.axes(axes), keepdims });
  }
  max(axes?: number | readonly number[], keepdims = false) {
    return this.builder.add("reduce_max", [this], { axes: this.axes(axes), keepdims });
  }
  min(axes?: number | readonly number[], keepdims = false) {
    return this.builder.add("reduce_min", [this], { axes: this.axes(axes), keepdims });
  }
  argmax(axis = -1, keepdims = false) {
    return this.builder.add("argmax", [this], { axis: normAxis(axis, this.rank) ?? axis, keepdims });
  }

  /** Undo numpy broadcasting: sum over the axes that broadcasting to this shape added or
   *  stretched from 1, so the result has `shape`. */
  sumTo(shape: Shape) {
    const lead = this.rank - shape.length;
    const axes = this.shape.map((_, a) => a).filter((a) => a < lead || (shape[a - lead] === 1 && this.shape[a] !== 1));
    // Only leading axes to drop: one reduction without kept dims, no reshape after it.
    if (axes.length === lead && lead > 0) return this.sum(axes, false);
    const summed = axes.length ? this.sum(axes, true) : this;
    return lead > 0 || summed.rank !== shape.length ? summed.reshape(shape) : summed;
  }
  reshape(shape: Shape) {
    return this.builder.add("reshape", [this], { shape: [...shape] });
  }
  permute(perm: readonly number[]) {
    return this.builder.add("permute", [this], { perm: perm.map((a) => normAxis(a, this.rank) ?? a) });
  }
  /** Swap the last two axes (a matrix transpose, batched). */
  transpose() {
    const perm = this.shape.map((_, i) => i);
    if (perm.length < 2) throw new KilnError(`transpose needs rank ≥ 2, got a tensor of rank ${perm.length}`);
    [perm[perm.length - 2], perm[perm.length - 1]] = [perm[perm.length - 1], perm[perm.length - 2]];
    return this.permute(perm);
  }
  expand(shape: Shape) {
    return this.builder.add("expand", [this], { shape: [...shape] });
  }
  slice(begin: readonly number[], end: readonly Dim[], stride?: readonly number[]) {
    return this.builder.add("slice", [this], { begin: [...begin], end: [...end], stride: stride ? [...stride] : begin.map(() => 1) });
  }
  pad(before: readonly number[], after: readonly number[], value = 0) {
    return this.builder.add("pad", [this], { before: [...before], after: [...after], value });
  }
  gather(indices: Tensor, axis = 0) {
    return this.builder.add("gather", [this, indices], { axis: normAxis(axis, this.rank) ?? axis });
  }

  matmul(o: Tensor) {
    return this.builder.add("matmul", [this, o], {});
  }
  /** NHWC input, HWIO filter; padding [top, bottom, left, right]. With `groups` g the filter
   *  is [KH, KW, Cin/g, Cout] and output channel o reads input block ⌊o/(Cout/g)⌋. */
  conv2d(filter: Tensor, opts: ConvOptions = {}) {
    return this.builder.add("conv2d", [this, filter], {
      strides: opts.strides ?? [1, 1],
      padding: opts.padding ?? [0, 0, 0, 0],
      dilations: opts.dilations ?? [1, 1],
      // groups = 1 is left out, so an ungrouped conv has one form (CSE, the text IR).
      ...(opts.groups !== undefined && opts.groups !== 1 ? { groups: opts.groups } : {}),
    });
  }
  /** The transposed convolution, as conv2d's input gradient (one implicit GEMM): this NHWC
   *  [N, H, W, C] and the HWIO filter [KH, KW, M/g, C] of the conv from M channels to C that it
   *  transposes (ONNX's ConvTranspose weight [C, M/g, KH, KW] permuted [2, 3, 1, 0]); gives
   *  [N, OH, OW, M] with OH = (H − 1)·s + d·(KH − 1) + 1 − top − bottom + outputPadding[0],
   *  outputPadding below the stride. */
  conv2dTranspose(filter: Tensor, opts: ConvOptions & { outputPadding?: readonly [number, number] } = {}) {
    const s: readonly [number, number] = opts.strides ?? [1, 1];
    const p: readonly [number, number, number, number] = opts.padding ?? [0, 0, 0, 0];
    const d: readonly [number, number] = opts.dilations ?? [1, 1];
    const op = opts.outputPadding ?? [0, 0];
    const groups = opts.groups ?? 1;
    const [, h, w] = this.shape;
    const [kh, kw, mg] = filter.shape;
    if (typeof h !== "number" || typeof w !== "number" || typeof kh !== "number" || typeof kw !== "number" || typeof mg !== "number") {
      throw new KilnError(
        `conv2dTranspose needs a static H and W and a static filter, got ${formatShape(this.shape)} and ${formatShape(filter.shape)}`,
      );
    }
    const len = (n: number, k: number, ax: 0 | 1) => (n - 1) * s[ax] + d[ax] * (k - 1) + 1 - p[2 * ax] - p[2 * ax + 1] + op[ax];
    return this.builder.add("conv2d_grad_input", [this, filter], {
      strides: s,
      padding: p,
      dilations: d,
      ...(groups !== 1 ? { groups } : {}),
      shape: [this.shape[0], len(h, kh, 0), len(w, kw, 1), mg * groups],
    });
  }
  maxPool2d(
    window: readonly [number, number],
    strides: readonly [number, number] = window,
    padding: readonly [number, number, number, number] = [0, 0, 0, 0],
  ) {
    return this.builder.add("max_pool2d", [this], { window, strides, padding });
  }
  avgPool2d(
    window: readonly [number, number],
    strides: readonly [number, number] = window,
    padding: readonly [number, number, number, number] = [0, 0, 0, 0],
  ) {
    return this.builder.add("avg_pool2d", [this], { window, strides, padding });
  }
}

export function concat(tensors: readonly Tensor[], axis = 0): Tensor {
  if (tensors.length === 0) throw new KilnError("concat needs at least one tensor");
  const t = tensors[0];
  return t.builder.add("concat", tensors, { axis: normAxis(axis, t.rank) ?? axis });
}

export function where(cond: Tensor, a: Operand, b: Operand): Tensor {
  return cond.select(a, b);
}
