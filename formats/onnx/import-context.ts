/** What an op record of the importer sees: its node's inputs as values, its attributes through a
 *  reader that notes which were read (an attribute no record reads is refused, never ignored),
 *  and the graph builder its Kiln nodes go to. An op record is one entry of an `OpTable`:
 *      Relu: { since: [6, 13, 14], emit: (c) => [c.t(0).relu()] }
 *  `since` lists the ONNX versions of the op whose meaning the record knows; a model's opset
 *  picks the newest one at or below it, and a model older than the first is refused. */
import { AttributeProto_AttributeType as AT, type AttributeProto, type TensorProto } from "onnx-buf";
import type { GraphBuilder, Tensor } from "../../src/api/builder.ts";
import { normAxis } from "../../src/ir/shape.ts";
import type { DType, Dim, Shape } from "../../src/ir/types.ts";
import { OnnxImportError, type OnnxNodeRef } from "./import-error.ts";
import { decodeTensor, type OnnxTensor } from "./import-tensor.ts";

/** One ONNX value at import time: a Kiln tensor, made when first asked for, and where they are
 *  known at import time its row-major values (an entry may be a symbolic dim: Shape of a
 *  tensor with a dim "N" gives ["N", 3]). Initializers, constants and shape arithmetic are known. */
export class Val {
  private made?: Tensor;
  /** For a value computed at run time: a graph input it is computed from, which, given in
   *  options.constants, might make it known. */
  dependsOn?: string;
  constructor(
    readonly dtype: DType,
    readonly shape: Shape,
    private readonly make: () => Tensor,
    readonly known?: ArrayLike<Dim>,
    /** A graph input (not an initializer): the name to give in options.constants to make it known. */
    readonly graphInput?: string,
  ) {}
  static of(t: Tensor): Val {
    const v = new Val(t.dtype, t.shape, () => t);
    v.made = t;
    return v;
  }
  tensor(): Tensor {
    this.made ??= this.make();
    return this.made;
  }
}

/** A value of `dtype` and static `shape` whose elements are known; as a tensor, a Kiln constant. */
export function knownVal(g: GraphBuilder, dtype: DType, shape: readonly number[], values: readonly Dim[], where: string): Val {
  return new Val(
    dtype,
    shape,
    () => {
      const sym = values.find((v) => typeof v === "string");
      if (sym !== undefined) {
        throw new OnnxImportError(
          `${where}: a value holding the symbolic dim ${sym} is used as a tensor; Kiln reads symbolic dims only as static shapes`,
          undefined,
          true,
        );
      }
      const wide = dtype === "i32" ? (values as number[]).find((v) => v < -2147483648 || v > 2147483647) : undefined;
      if (wide !== undefined) throw new OnnxImportError(`${where}: the value ${wide} does not fit Kiln's i32`, undefined, true);
      return g.constant(values as number[], dtype, shape);
    },
    values,
  );
}

export type Emitted = Tensor | Val | undefined;

export interface OpRecord {
  /** The op's ONNX versions whose meaning the record knows, oldest first. */
  readonly since: readonly number[];
  /** The Kiln values of the node's outputs, in order (undefined: an optional output not made). */
  readonly emit: (c: OpCtx) => readonly Emitted[];
}
export type OpTable = Readonly<Record<string, OpRecord>>;

export interface AttrReader {
  has(name: string): boolean;
  int(name: string, def: number): number;
  intOr(name: string): number | undefined;
  float(name: string, def: number): number;
  string(name: string, def: string): string;
  ints(name: string): number[] | undefined;
  floats(name: string): number[] | undefined;
  strings(name: string): string[] | undefined;
  tensor(name: string): OnnxTensor | undefined;
}

export class OpCtx {
  readonly read = new Set<string>();
  readonly attr: AttrReader;
  constructor(
    readonly g: GraphBuilder,
    readonly node: OnnxNodeRef,
    /** The version of the op the record implements (one of its `since`). */
    readonly version: number,
    private readonly inputs: readonly (Val | undefined)[],
    readonly outputs: readonly string[],
    attributes: readonly AttributeProto[],
  ) {
    const byName = new Map(attributes.map((a) => [a.name, a]));
    const get = (name: string, type: AT): AttributeProto | undefined => {
      const a = byName.get(name);
      if (!a) return undefined;
      this.read.add(name);
      if (a.refAttrName) this.refuse(`attribute ${name} refers to a function's attribute (${a.refAttrName})`);
      if (a.type !== type && a.type !== AT.UNDEFINED) this.fail(`attribute ${name} has type ${AT[a.type]}, not ${AT[type]}`);
      return a;
    };
    const int = (v: bigint, name: string) => {
      const n = Number(v);
      if (!Number.isSafeInteger(n)) this.fail(`attribute ${name} = ${v} is out of range`);
      return n;
    };
    this.attr = {
      has: (name) => byName.has(name),
      int: (name, def) => {
        const a = get(name, AT.INT);
        return a ? int(a.i, name) : def;
      },
      intOr: (name) => {
        const a = get(name, AT.INT);
        return a ? int(a.i, name) : undefined;
      },
      float: (name, def) => get(name, AT.FLOAT)?.f ?? def,
      string: (name, def) => {
        const a = get(name, AT.STRING);
        return a ? new TextDecoder().decode(a.s) : def;
      },
      ints: (name) => get(name, AT.INTS)?.ints.map((v) => int(v, name)),
      floats: (name) => get(name, AT.FLOATS)?.floats,
      strings: (name) => get(name, AT.STRINGS)?.strings.map((b) => new TextDecoder().decode(b)),
      tensor: (name) => {
        const t: TensorProto | undefined = get(name, AT.TENSOR)?.t;
        return t ? decodeTensor(t, `${this.where}: attribute ${name}`) : undefined;
      },
    };
  }

  get where(): string {
    return `${this.node.op} "${this.node.name}"`;
  }
  get inputCount(): number {
    return this.inputs.length;
  }
  /** Input i is given (optional inputs may be missing or named ""). */
  has(i: number): boolean {
    return this.inputs[i] !== undefined;
  }
  val(i: number): Val {
    const v = this.inputs[i];
    if (!v) this.fail(`input ${i} is missing`);
    return v;
  }
  t(i: number): Tensor {
    return this.val(i).tensor();
  }
  /** Output k is asked for (a later optional output may be left off or named ""). */
  wants(k: number): boolean {
    return k < this.outputs.length && this.outputs[k] !== "";
  }

  /** Input i's values, needed at import time (a shape, axes, pads …), symbolic dims allowed. */
  dims(i: number, what: string): Dim[] {
    const v = this.val(i);
    if (!v.known) {
      const from = v.graphInput ?? v.dependsOn;
      throw new OnnxImportError(
        v.graphInput
          ? `input ${i} (${what}) is the graph input "${v.graphInput}"; Kiln needs its value at import time (give it in options.constants)`
          : `input ${i} (${what}) is computed at run time${from ? ` from the graph input "${from}"` : ""}; Kiln needs its value at import time`,
        this.node,
        true,
        from,
      );
    }
    return Array.from(v.known);
  }
  /** As `dims`, all static numbers. */
  ints(i: number, what: string): number[] {
    const d = this.dims(i, what);
    const sym = d.find((x) => typeof x === "string");
    if (sym !== undefined) this.refuse(`input ${i} (${what}) holds the symbolic dim ${sym}; it must be static`);
    return d as number[];
  }
  /** An optional static input, else the attribute (opsets moved axes, pads, … from one to the other). */
  intsOf(i: number, attrName: string): number[] | undefined {
    return this.has(i) ? this.ints(i, attrName) : this.attr.ints(attrName);
  }

  axis(a: number, rank: number): number {
    const n = normAxis(a, rank);
    if (n === undefined) this.fail(`axis ${a} is out of range for rank ${rank}`);
    return n;
  }
  axes(list: readonly number[], rank: number): number[] {
    const out = list.map((a) => this.axis(a, rank));
    if (new Set(out).size !== out.length) this.fail(`axes [${list}] repeat an axis`);
    return out;
  }

  known(dtype: DType, shape: readonly number[], values: readonly Dim[]): Val {
    return knownVal(this.g, dtype, shape, values, this.where);
  }

  /** Kiln supports this op, but not what the node asks of it. */
  refuse(what: string): never {
    throw new OnnxImportError(what, this.node, true);
  }
  /** The node is malformed or inconsistent. */
  fail(what: string): never {
    throw new OnnxImportError(what, this.node, false);
  }
}

/** Static dims' product, or the one symbol when the rest multiply to 1; undefined otherwise
 *  (Kiln's dims are numbers or single symbols, never products). */
export function product(dims: readonly Dim[]): Dim | undefined {
  let k = 1;
  const syms: string[] = [];
  for (const d of dims) typeof d === "number" ? (k *= d) : syms.push(d);
  if (syms.length === 0) return k;
  if (syms.length === 1 && k === 1) return syms[0];
  if (k === 0) return 0;
  return undefined;
}
