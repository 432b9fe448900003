/** OPS: every primitive's record, keyed by its name in the text IR. A missing op is a type error. */
import type { Node, OpAttrs, OpKind } from "../ir/types.ts";
import { loweringOf, type Lowering, type OpDef, type Pattern } from "./def.ts";
import * as cv from "./conv.ts";
import * as ew from "./elementwise.ts";
import { erf } from "./erf.ts";
import { gather } from "./gather.ts";
import * as mm from "./matmul.ts";
import * as mv from "./movement.ts";
import * as rd from "./reduce.ts";
import * as src from "./sources.ts";

export const OPS: { readonly [K in OpKind]: OpDef<K> } = {
  input: src.input,
  const: src.constant,
  iota: src.iota,
  random: src.random,
  neg: ew.neg,
  abs: ew.abs,
  sign: ew.sign,
  exp: ew.exp,
  log: ew.log,
  sqrt: ew.sqrt,
  rsqrt: ew.rsqrt,
  recip: ew.recip,
  sin: ew.sin,
  cos: ew.cos,
  tanh: ew.tanh,
  erf,
  sigmoid: ew.sigmoid,
  relu: ew.relu,
  floor: ew.floor,
  ceil: ew.ceil,
  not: ew.not,
  cast: ew.cast,
  stop_gradient: ew.stopGradient,
  add: ew.add,
  sub: ew.sub,
  mul: ew.mul,
  div: ew.div,
  mod: ew.mod,
  pow: ew.pow,
  max: ew.max,
  min: ew.min,
  eq: ew.eq,
  ne: ew.ne,
  lt: ew.lt,
  le: ew.le,
  gt: ew.gt,
  ge: ew.ge,
  and: ew.and,
  or: ew.or,
  select: ew.select,
  reshape: mv.reshape,
  permute: mv.permute,
  expand: mv.expand,
  slice: mv.slice,
  pad: mv.pad,
  concat: mv.concat,
  gather,
  reduce_sum: rd.reduceSum,
  reduce_mean: rd.reduceMean,
  reduce_max: rd.reduceMax,
  reduce_min: rd.reduceMin,
  argmax: rd.argmax,
  matmul: mm.matmul,
  conv2d: cv.conv2d,
  max_pool2d: cv.maxPool2d,
  avg_pool2d: cv.avgPool2d,
  conv2d_grad_input: cv.conv2dGradInput,
  conv2d_grad_filter: cv.conv2dGradFilter,
  max_pool2d_grad: cv.maxPool2dGrad,
  avg_pool2d_grad: cv.avgPool2dGrad,
};

export const isOpKind = (s: string): s is OpKind => Object.hasOwn(OPS, s);

/** How a node's op is lowered (its record's `lower`, for its attributes). */
export const lowering = (n: Node): Lowering<OpKind> => loweringOf(OPS[n.op] as OpDef<OpKind>, n.attrs as OpAttrs[OpKind]);

/** What passes ask of a node's op (its record's `pattern`). */
export const pattern = (n: Pick<Node, "op">): Pattern => OPS[n.op].pattern;
