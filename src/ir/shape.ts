/** Shapes with symbolic dims: formatting, products, binding to concrete sizes. */
import type { Dim, Shape, TensorType } from "./types.ts";

/** Sizes bound to symbolic dims when a graph runs, e.g. { B: 128 }. */
export type DimEnv = Readonly<Record<string, number>>;

/** A product of a static factor and symbolic dims: how many elements, as data a manifest can hold. */
export interface Size {
  readonly k: number;
  readonly syms: readonly string[]; // sorted, with repeats
}

export const formatShape = (s: Shape): string => `[${s.join(",")}]`;
export const formatType = (t: TensorType): string => `${t.dtype}${formatShape(t.shape)}`;

export const isStatic = (s: Shape): s is readonly number[] => s.every((d) => typeof d === "number");

export function sizeOf(dims: Shape): Size {
  let k = 1;
  const syms: string[] = [];
  for (const d of dims) typeof d === "number" ? (k *= d) : syms.push(d);
  return { k, syms: syms.sort() };
}

export const numel = (s: Shape): Size => sizeOf(s);

export function sizeEq(a: Size, b: Size): boolean {
  return a.k === b.k && a.syms.length === b.syms.length && a.syms.every((s, i) => s === b.syms[i]);
}

export function formatSize(s: Size): string {
  return [...(s.k !== 1 || s.syms.length === 0 ? [String(s.k)] : []), ...s.syms].join("*");
}

export function evalSize(s: Size, env: DimEnv): number {
  let n = s.k;
  for (const sym of s.syms) n *= bindDim(sym, env);
  return n;
}

export function bindDim(d: Dim, env: DimEnv): number {
  if (typeof d === "number") return d;
  const v = env[d];
  if (v === undefined) throw new Error(`symbolic dim ${d} is not bound (bound: ${JSON.stringify(env)})`);
  return v;
}

export const bindShape = (s: Shape, env: DimEnv): number[] => s.map((d) => bindDim(d, env));

export function shapeEq(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Row-major strides of a concrete shape. */
export function strides(shape: readonly number[]): number[] {
  const st = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= shape[i];
  }
  return st;
}

/** numpy broadcasting of several shapes; undefined if they do not broadcast. */
export function broadcastShapes(shapes: readonly Shape[]): Dim[] | undefined {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    let d: Dim = 1;
    for (const s of shapes) {
      const e = s[s.length - rank + i] ?? 1;
      if (e === 1) continue;
      if (d === 1) d = e;
      else if (d !== e) return undefined;
    }
    out.push(d);
  }
  return out;
}

/** Normalize a possibly negative axis; undefined when out of range. */
export function normAxis(axis: number, rank: number): number | undefined {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) return undefined;
  return axis < 0 ? axis + rank : axis;
}

export const isSymbol = (d: Dim): d is string => typeof d === "string";

/** A symbolic dim name: a letter or underscore, then letters, digits, underscores. */
export const SYMBOL_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function isValidDim(d: unknown): d is Dim {
  return (typeof d === "number" && Number.isSafeInteger(d) && d >= 0) || (typeof d === "string" && SYMBOL_RE.test(d));
}
