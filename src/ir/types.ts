/** The IR's data: plain, immutable records. Passes read them and build new ones; facts such as
 *  users or liveness are analyses returning maps, never fields patched onto nodes. */

export type DType = "f32" | "i32" | "u32" | "bool";
export const DTYPES: readonly DType[] = ["f32", "i32", "u32", "bool"];

/** A static size, or the name of a symbolic dim (e.g. the batch "B") bound when the graph runs. */
export type Dim = number | string;
export type Shape = readonly Dim[];

export interface TensorType {
  readonly dtype: DType;
  readonly shape: Shape;
}

/** Index of a node in `graph.nodes`; a node's inputs have smaller ids (topological order). */
export type ValueId = number;

type Pair = readonly [number, number];
/** [top, bottom, left, right] */
type Pads4 = readonly [number, number, number, number];
interface Reduce {
  readonly axes: readonly number[];
  readonly keepdims: boolean;
}
interface Pool {
  readonly window: Pair;
  readonly strides: Pair;
  readonly padding: Pads4;
}
interface Conv {
  readonly strides: Pair;
  readonly padding: Pads4;
  readonly dilations: Pair;
  /** Grouped convolution: channels split into `groups` blocks, each convolved with its own
   *  block of filters (Cin/groups inputs per filter); depthwise when groups = Cin. Absent: 1. */
  readonly groups?: number;
}
type None = Readonly<Record<never, never>>;

/** Every primitive op and its attributes. Adding an op here makes `OPS` demand its rules. */
export interface OpAttrs {
  // sources
  input: { readonly name: string; readonly dtype: DType; readonly shape: Shape };
  /** A number fills the shape (a splat, inlined into kernels); an array is the row-major data. */
  const: { readonly dtype: DType; readonly shape: Shape; readonly value: number | readonly number[] };
  /** Element index along `axis`. */
  iota: { readonly dtype: DType; readonly shape: Shape; readonly axis: number };
  /** Counter-based uniform [0, 1): a hash of (seed, key, element index); input 0 is a u32 scalar key. */
  random: { readonly shape: Shape; readonly seed: number };
  // elementwise unary
  neg: None;
  abs: None;
  sign: None;
  exp: None;
  log: None;
  sqrt: None;
  rsqrt: None;
  recip: None;
  sin: None;
  cos: None;
  tanh: None;
  /** The error function, 2/√π ∫₀ˣ e^(−t²) dt. */
  erf: None;
  sigmoid: None;
  relu: None;
  floor: None;
  ceil: None;
  not: None;
  cast: { readonly dtype: DType };
  /** The identity whose gradient is zero. */
  stop_gradient: None;
  // elementwise binary (numpy broadcasting)
  add: None;
  sub: None;
  mul: None;
  div: None;
  mod: None;
  pow: None;
  max: None;
  min: None;
  eq: None;
  ne: None;
  lt: None;
  le: None;
  gt: None;
  ge: None;
  and: None;
  or: None;
  /** select(cond, a, b): a where cond, else b; all three broadcast. */
  select: None;
  // reductions
  reduce_sum: Reduce;
  reduce_mean: Reduce;
  reduce_max: Reduce;
  reduce_min: Reduce;
  argmax: { readonly axis: number; readonly keepdims: boolean };
  // movement
  reshape: { readonly shape: Shape };
  permute: { readonly perm: readonly number[] };
  expand: { readonly shape: Shape };
  /** Per axis: elements begin, begin+stride, … below end. A symbolic end must equal the dim. */
  slice: { readonly begin: readonly number[]; readonly end: readonly Dim[]; readonly stride: readonly number[] };
  pad: { readonly before: readonly number[]; readonly after: readonly number[]; readonly value: number };
  concat: { readonly axis: number };
  /** table[…, indices, …] along axis; indices are i32. */
  gather: { readonly axis: number };
  // contractions and windows (layout NHWC, filters HWIO: see src/ops/conv.ts)
  matmul: None;
  conv2d: Conv;
  max_pool2d: Pool;
  avg_pool2d: Pool;
  // their gradients (see src/ops/conv.ts); `shape` is the shape of the value differentiated
  /** The input's cotangent of conv2d: inputs [g, filter]. */
  conv2d_grad_input: Conv & { readonly shape: Shape };
  /** The filter's cotangent of conv2d: inputs [x, g]. */
  conv2d_grad_filter: Conv & { readonly shape: Shape };
  /** The input's cotangent of max_pool2d: inputs [x, g]. */
  max_pool2d_grad: Pool;
  /** The input's cotangent of avg_pool2d: input [g]. */
  avg_pool2d_grad: Pool & { readonly shape: Shape };
}

export type OpKind = keyof OpAttrs;
export type Attrs = OpAttrs[OpKind];

export interface Node<K extends OpKind = OpKind> {
  readonly id: ValueId;
  readonly op: K;
  readonly inputs: readonly ValueId[];
  readonly attrs: Readonly<OpAttrs[K]>;
  readonly type: TensorType;
  /** Where the user made it, e.g. "mlp.ts:12". */
  readonly site: string;
}

export interface Output {
  readonly name: string;
  readonly id: ValueId;
}

export interface Graph {
  readonly nodes: readonly Node[];
  readonly outputs: readonly Output[];
}

export function isOp<K extends OpKind>(node: Node, op: K): node is Node<K> {
  return node.op === op;
}
