/** Movement ops: index maps from output coordinates to input coordinates (gather, which also
 *  reads an index tensor, is in ./gather.ts). None of
 *  them computes anything; each lowers to `kind: "index"` and is inlined into its consumers'
 *  loads (a kernel of its own only as a graph output):
 *      %2 = permute %1 {perm=[1,0]};  %3 = neg %2   →   v3[i] = -v1[c1 * R + c0]
 *  Lowerings never read out of bounds: where an output element has no source (pad) or a branch
 *  is not taken (concat), the read is clamped into range and a select
 *  picks the right value, since WGSL's select evaluates both sides. */
import type { Tensor } from "../api/builder.ts";
import { formatShape, formatSize, isStatic, isValidDim, normAxis, sizeEq, sizeOf, strides } from "../ir/shape.ts";
import type { DType, Shape } from "../ir/types.ts";
import { defineOp, fail, type ConcreteType, type IndexCtx, type VjpCtx } from "./def.ts";
import { forEachIndex, tensor64, type Tensor64 } from "./tensor64.ts";
import { lit } from "./wgsl.ts";

/** A tensor of `out`'s type whose element at each index is `f(index)`. */
export function generate(out: ConcreteType, f: (idx: readonly number[]) => number): Tensor64 {
  const r = tensor64(out.dtype, out.shape);
  forEachIndex(out.shape, (idx, flat) => (r.data[flat] = f(idx)));
  return r;
}

/** Element reader of `t` by index, with its strides computed once. */
export function reader(t: Tensor64): (idx: readonly number[]) => number {
  const st = strides(t.shape);
  return (idx) => {
    let f = 0;
    for (let a = 0; a < st.length; a++) f += idx[a] * st[a];
    return t.data[f];
  };
}

function checkShape(shape: Shape, what: string): void {
  if (!Array.isArray(shape) || !shape.every(isValidDim)) fail(`${what}: bad shape ${JSON.stringify(shape)}`);
}

const isCount = (v: number): boolean => Number.isInteger(v) && v >= 0;

/** A coordinate from a consumer may be any u32 expression; wrap it before using it in arithmetic
 *  unless it is a name, a literal or already one parenthesized group. */
function paren(e: string): string {
  if (/^[\w.]+$/.test(e)) return e;
  let depth = 0;
  for (let i = 0; i < e.length; i++) {
    depth += e[i] === "(" ? 1 : e[i] === ")" ? -1 : 0;
    if (depth === 0 && i < e.length - 1) return `(${e})`;
  }
  return e;
}

/** Row-major reinterpretation: same data, new shape. With symbolic dims the static product and
 *  the multiset of symbols must match ([B,4] → [4,B] is fine, [B,4] → [8,B] is not). */
export const reshape = defineOp({
  name: "reshape",
  arity: 1,
  attrs: { shape: "shape" },
  infer: (ins, a) => {
    checkShape(a.shape, "reshape");
    const [want, have] = [sizeOf(a.shape), sizeOf(ins[0].shape)];
    if (!sizeEq(want, have)) {
      fail(`reshape to ${formatShape(a.shape)} changes the element count: ${formatSize(want)} vs ${formatSize(have)}`, ins);
    }
    return { dtype: ins[0].dtype, shape: [...a.shape] };
  },
  reference: ([x], _a, out) => tensor64(out.dtype, out.shape, x.data),
  pattern: { kind: "injective", splat: true },
  lower: {
    kind: "index",
    expr: (c) => c.at(0, c.unravel(c.linear(c.out, c.type.shape), c.inTypes[0].shape)),
  },
  vjp: ({ g, ins: [x] }) => [g.reshape(x.shape)],
});

/** Output axis k is input axis perm[k]. */
export const permute = defineOp({
  name: "permute",
  arity: 1,
  attrs: { perm: "ints" },
  infer: (ins, a) => {
    const { shape } = ins[0];
    const seen = new Set(a.perm);
    if (
      a.perm.length !== shape.length ||
      seen.size !== shape.length ||
      !a.perm.every((p) => Number.isInteger(p) && p >= 0 && p < shape.length)
    ) {
      fail(`permute: perm ${JSON.stringify(a.perm)} is not a permutation of the ${shape.length} axes`, ins);
    }
    return { dtype: ins[0].dtype, shape: a.perm.map((p) => shape[p]) };
  },
  reference: ([x], a, out) => {
    const read = reader(x);
    const src = new Array<number>(a.perm.length);
    return generate(out, (idx) => {
      a.perm.forEach((p, k) => (src[p] = idx[k]));
      return read(src);
    });
  },
  pattern: { kind: "injective", splat: true },
  lower: {
    kind: "index",
    expr: (c) => {
      const src = new Array<string>(c.attrs.perm.length);
      c.attrs.perm.forEach((p, k) => (src[p] = c.out[k]));
      return c.at(0, src);
    },
  },
  // The inverse permutation: x's axis j is g's axis perm.indexOf(j).
  vjp: ({ g, attrs: { perm } }) => [g.permute(perm.map((_, k) => perm.indexOf(k)))],
});

/** numpy broadcasting to `shape`: new axes on the left, size-1 axes stretched. */
export const expand = defineOp({
  name: "expand",
  arity: 1,
  attrs: { shape: "shape" },
  infer: (ins, a) => {
    checkShape(a.shape, "expand");
    const { shape } = ins[0];
    const off = a.shape.length - shape.length;
    if (off < 0) fail(`expand to ${formatShape(a.shape)}: the target has fewer axes than the input`, ins);
    shape.forEach((d, ax) => {
      const t = a.shape[ax + off];
      if (d !== 1 && d !== t) fail(`expand to ${formatShape(a.shape)}: input axis ${ax} (${d}) is neither 1 nor ${t}`, ins);
    });
    return { dtype: ins[0].dtype, shape: [...a.shape] };
  },
  reference: ([x], _a, out) => {
    const read = reader(x);
    const off = out.shape.length - x.shape.length;
    return generate(out, (idx) => read(x.shape.map((d, ax) => (d === 1 ? 0 : idx[ax + off]))));
  },
  pattern: { kind: "broadcast" },
  lower: {
    kind: "index",
    expr: (c) => {
      const inShape = c.inTypes[0].shape;
      const off = c.out.length - inShape.length;
      return c.at(
        0,
        inShape.map((d, ax) => (d === 1 ? "0u" : c.out[ax + off])),
      );
    },
  },
  vjp: ({ g, ins: [x] }) => [g.sumTo(x.shape)],
});

/** Per axis: begin, begin+stride, … below end. A symbolic axis can only be kept whole. */
export const slice = defineOp({
  name: "slice",
  arity: 1,
  attrs: { begin: "ints", end: "dims", stride: "ints" },
  infer: (ins, a) => {
    const { shape } = ins[0];
    const r = shape.length;
    if (a.begin.length !== r || a.end.length !== r || a.stride.length !== r) {
      fail(`slice: begin, end and stride need one entry per axis (${r}), got ${a.begin.length}, ${a.end.length}, ${a.stride.length}`, ins);
    }
    const out = shape.map((d, ax) => {
      const [b, e, s] = [a.begin[ax], a.end[ax], a.stride[ax]];
      const range = `${b}:${e}:${s}`;
      if (typeof d === "string") {
        if (b !== 0 || e !== d || s !== 1)
          fail(`slice: axis ${ax} is symbolic (${d}); only the full range 0:${d}:1 is allowed, got ${range}`, ins);
        return d;
      }
      if (typeof e === "string") fail(`slice: axis ${ax} has a symbolic end ${e}, but its dim is ${d}`, ins);
      if (!isCount(b) || !isCount(e) || b > e || e > d || !Number.isInteger(s) || s < 1) {
        fail(`slice: axis ${ax} needs 0 ≤ begin ≤ end ≤ ${d} and stride ≥ 1, got ${range}`, ins);
      }
      return Math.ceil((e - b) / s);
    });
    return { dtype: ins[0].dtype, shape: out };
  },
  reference: ([x], a, out) => {
    const read = reader(x);
    return generate(out, (idx) => read(idx.map((i, ax) => a.begin[ax] + i * a.stride[ax])));
  },
  pattern: { kind: "injective", splat: true },
  lower: {
    kind: "index",
    expr: (c) =>
      c.at(
        0,
        c.out.map((o, ax) => {
          const [b, s] = [c.attrs.begin[ax], c.attrs.stride[ax]];
          const scaled = s === 1 ? o : `${paren(o)} * ${s}u`;
          return b === 0 ? scaled : `(${b}u + ${scaled})`;
        }),
      ),
  },
  vjp: sliceVjp,
});

/** The cotangent scatters g into zeros at the sliced positions: on a strided axis, s − 1 zeros
 *  after each element (the last one's trimmed), then zero padding around the taken span.
 *      x[0:7:3] of f32[8]: g = [a, b, c] → [a,0,0,b,0,0,c] → pad 0 before, 1 after
 *  Symbolic axes are kept whole, and strided ones are static: the shape rule allows no other. */
function sliceVjp({ g, ins: [x], attrs: { begin, stride } }: VjpCtx<"slice">): [Tensor] {
  let t = g;
  stride.forEach((s, ax) => {
    if (s > 1 && (g.shape[ax] as number) > 1) t = interleaveZeros(t, ax, s);
  });
  return [
    t.pad(
      begin,
      x.shape.map((d, ax) => (typeof d === "number" ? d - begin[ax] - (t.shape[ax] as number) : 0)),
    ),
  ];
}

/** s − 1 zeros after each element of static axis `ax`, none after the last: n → (n − 1)·s + 1. */
function interleaveZeros(t: Tensor, ax: number, s: number): Tensor {
  const shape = t.shape;
  const n = shape[ax] as number;
  const zeros = shape.map(() => 0);
  const spread = t
    .reshape([...shape.slice(0, ax + 1), 1, ...shape.slice(ax + 1)])
    .pad([...zeros, 0], [...zeros.slice(0, ax + 1), s - 1, ...zeros.slice(ax + 1)])
    .reshape(shape.map((d, k) => (k === ax ? n * s : d)));
  return spread.slice(
    zeros,
    shape.map((d, k) => (k === ax ? (n - 1) * s + 1 : d)),
  );
}

/** Whether `v` can be stored in `dtype` exactly (any number is an f32 literal). */
function representable(v: number, dtype: DType): boolean {
  switch (dtype) {
    case "f32":
      return typeof v === "number";
    case "i32":
      return Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31;
    case "u32":
      return Number.isInteger(v) && v >= 0 && v < 2 ** 32;
    case "bool":
      return v === 0 || v === 1;
  }
}

/** Constant padding. Symbolic axes cannot be padded. */
export const pad = defineOp({
  name: "pad",
  arity: 1,
  attrs: { before: "ints", after: "ints", value: "number" },
  infer: (ins, a) => {
    const { dtype, shape } = ins[0];
    if (a.before.length !== shape.length || a.after.length !== shape.length) {
      fail(`pad: before and after need one entry per axis (${shape.length}), got ${a.before.length} and ${a.after.length}`, ins);
    }
    if (![...a.before, ...a.after].every(isCount)) {
      fail(`pad: padding must be non-negative integers, got before ${JSON.stringify(a.before)} after ${JSON.stringify(a.after)}`, ins);
    }
    if (!representable(a.value, dtype)) fail(`pad: value ${a.value} is not a ${dtype}${dtype === "bool" ? " (0 or 1)" : ""}`, ins);
    const out = shape.map((d, ax) => {
      if (typeof d === "number") return a.before[ax] + d + a.after[ax];
      if (a.before[ax] || a.after[ax]) fail(`pad: axis ${ax} is symbolic (${d}) and cannot be padded`, ins);
      return d;
    });
    return { dtype, shape: out };
  },
  reference: ([x], a, out) => {
    const read = reader(x);
    const src = new Array<number>(x.shape.length);
    return generate(out, (idx) => {
      for (let ax = 0; ax < src.length; ax++) {
        src[ax] = idx[ax] - a.before[ax];
        if (src[ax] < 0 || src[ax] >= x.shape[ax]) return a.value;
      }
      return read(src);
    });
  },
  pattern: { kind: "injective", splat: false },
  lower: {
    kind: "index",
    expr: (c) => {
      const { before, after, value } = c.attrs;
      const fill = lit(value, c.type.dtype);
      const inShape = c.inTypes[0].shape;
      if (inShape.includes(0)) return fill;
      const conds: string[] = [];
      const src = c.out.map((x, ax) => {
        const [o, b, d, e] = [paren(x), before[ax], inShape[ax] as number, after[ax]];
        if (b) conds.push(`${o} >= ${b}u`);
        if (e) conds.push(`${o} < ${b + d}u`);
        // max before the subtraction: a u32 must not wrap, and a constant one would not compile.
        const shifted = b ? `max(${o}, ${b}u) - ${b}u` : o;
        return e ? `min(${shifted}, ${d - 1}u)` : b ? `(${shifted})` : x;
      });
      const inner = c.at(0, src);
      return conds.length ? `select(${fill}, ${inner}, ${conds.join(" && ")})` : inner;
    },
  },
  // The padded border is the constant: it gets no gradient; the rest is x's, sliced back out.
  vjp: ({ g, ins: [x], attrs: { before } }) => [
    g.slice(
      before,
      x.shape.map((d, ax) => (typeof d === "number" ? before[ax] + d : d)),
    ),
  ],
});

/** Joins inputs along `axis`. Their dims on the axis must be static (unless there is one input)
 *  so the offsets are literals. */
export const concat = defineOp({
  name: "concat",
  arity: "variadic",
  attrs: { axis: "int" },
  infer: (ins, a) => {
    if (ins.length === 0) fail("concat needs at least one input");
    const [first] = ins;
    const r = first.shape.length;
    if (ins.some((t) => t.dtype !== first.dtype)) fail("concat: dtypes differ; cast explicitly", ins);
    if (ins.some((t) => t.shape.length !== r)) fail("concat: ranks differ", ins);
    if (normAxis(a.axis, r) !== a.axis) fail(`concat: axis ${a.axis} out of range for rank ${r}`, ins);
    for (let ax = 0; ax < r; ax++) {
      if (ax !== a.axis && ins.some((t) => t.shape[ax] !== first.shape[ax])) {
        fail(`concat: dims differ on axis ${ax} (only the concat axis ${a.axis} may differ)`, ins);
      }
    }
    if (ins.length === 1) return first;
    const sizes = ins.map((t) => t.shape[a.axis]);
    if (!isStatic(sizes)) fail(`concat: several inputs need static dims on axis ${a.axis}, got ${formatShape(sizes)}`, ins);
    const shape = [...first.shape];
    shape[a.axis] = (sizes as number[]).reduce((s, d) => s + d, 0);
    return { dtype: first.dtype, shape };
  },
  reference: (ins, a, out) => {
    const reads = ins.map(reader);
    const src = new Array<number>(out.shape.length);
    return generate(out, (idx) => {
      let k = 0;
      let o = idx[a.axis];
      while (o >= ins[k].shape[a.axis]) o -= ins[k++].shape[a.axis];
      idx.forEach((i, ax) => (src[ax] = ax === a.axis ? o : i));
      return reads[k](src);
    });
  },
  pattern: { kind: "injective", splat: false },
  lower: { kind: "index", expr: lowerConcat },
  vjp: ({ g, ins, attrs: { axis } }) => {
    if (ins.length === 1) return [g];
    let off = 0;
    return ins.map((t) => {
      const size = t.shape[axis] as number;
      const begin = g.shape.map((_, ax) => (ax === axis ? off : 0));
      const end = g.shape.map((d, ax) => (ax === axis ? off + size : d));
      off += size;
      return g.slice(begin, end);
    });
  },
});

/** Nested selects on the axis coordinate o, each input read at a clamped coordinate:
 *      select(select(B[clamp(o - 2)], C[o - 5], o < 5u), A[min(o, 1u)], o < 2u)   */
function lowerConcat(c: IndexCtx<"concat">): string {
  const { axis } = c.attrs;
  const o = paren(c.out[axis]);
  // Inputs empty on the axis contribute nothing (and have nowhere to clamp to).
  const parts: { input: number; off: number; size: number }[] = [];
  let off = 0;
  c.inTypes.forEach((t, input) => {
    const size = t.shape[axis] as number;
    if (size > 0) parts.push({ input, off, size });
    off += size;
  });
  if (c.inTypes.length === 1 || parts.length === 0) return c.at(0, c.out);
  const read = ({ input, off, size }: (typeof parts)[number], last: boolean): string => {
    const shifted = off ? `max(${o}, ${off}u) - ${off}u` : o;
    const coord = last ? (off ? `(${shifted})` : c.out[axis]) : `min(${shifted}, ${size - 1}u)`;
    return c.at(
      input,
      c.out.map((x, ax) => (ax === axis ? coord : x)),
    );
  };
  let expr = read(parts[parts.length - 1], true);
  for (let k = parts.length - 2; k >= 0; k--) expr = `select(${expr}, ${read(parts[k], false)}, ${o} < ${parts[k + 1].off}u)`;
  return expr;
}
