/** What the compiler hands the runtime (and, later, a bundle's manifest): kernels as WGSL text
 *  with their bindings and dispatch sizes as data over the symbolic dims, and the buffers. */
import type { Size } from "../src/ir/shape.ts";
import type { DType, Graph, Shape, ValueId } from "../src/ir/types.ts";
import type { KernelFeature } from "./target.ts";
import type { KernelGemm } from "./tuning.ts";

/** A storage binding, decided before the kernel's WGSL is written and declared exactly so:
 *  read_write for the value the kernel stores and for every value in the shared arena (WebGPU
 *  may not bind one buffer read-only and writable in one dispatch, ./plan-memory.ts), else read. */
export interface Binding {
  readonly value: ValueId;
  readonly access: "read" | "read_write";
}

/** ceil(size / per) workgroups along one axis. */
export interface Count {
  readonly size: Size;
  readonly per: number;
}

/** linear: ceil(total / perGroup) workgroups folded over x and y when over the per-dimension
 *  limit (the kernel rebuilds its index from workgroup_id and num_workgroups);
 *  grid: explicit counts per axis. */
export type Dispatch =
  | { readonly kind: "linear"; readonly total: Size; readonly perGroup: number }
  | { readonly kind: "grid"; readonly x: Count; readonly y: Count; readonly z: Count };

export interface Kernel {
  /** k0, k1, … in schedule order. */
  readonly name: string;
  /** The node whose value the kernel writes. */
  readonly output: ValueId;
  /** What the device compiles, as written once by the kernel builder (./wgsl/kernel-builder.ts). */
  readonly wgsl: string;
  /** The same kernel rendered with canonical names (vv0… by binding) and blank comment lines:
   *  kernels with one key are the same shader over other values and share a pipeline
   *  (runtime/pipelines.ts compiles the first one's `wgsl`). Code that replaces a kernel's
   *  `wgsl` by hand gives it a key of its own. */
  readonly key: string;
  /** What it computes, as its header says: "matmul[permute]", "fused[exp, add]". */
  readonly what: string;
  /** The graph nodes it computes, ascending: its root and its inlined cone (./fuse.ts KernelGroup). */
  readonly nodes: readonly ValueId[];
  /** Storage bindings 0..n-1 in order; then, if `uniforms` is non-empty, binding n is a uniform
   *  struct of those symbolic dims, u32 each, in that order. */
  readonly bindings: readonly Binding[];
  readonly uniforms: readonly string[];
  readonly dispatch: Dispatch;
  /** WebGPU features its WGSL enables beyond the core ("shader-f16" for `enable f16;`,
   *  "subgroups"), absent when none: the device must have them (runtime/device.ts requests
   *  those its adapter offers). */
  readonly features?: readonly KernelFeature[];
  /** Written in place (compiler/codegen.ts): the kernel stores `output` into this input's
   *  buffer or arena range, bound once read_write, and `output` gets no memory of its own. The
   *  input is a resident input that `output` updates, or a value that dies at this kernel (a
   *  temporary, or a non-resident input: uploaded again each run); chains share one range. */
  readonly inPlace?: ValueId;
  /** A GEMM kernel's shape class and the writer configuration it was written with, tuned or the
   *  default (./tuning.ts). */
  readonly gemm?: KernelGemm;
}

/** A buffer per value that lives in memory: inputs, constant data and kernel outputs. */
export interface BufferSpec {
  readonly value: ValueId;
  readonly dtype: DType;
  readonly shape: Shape;
  readonly role: "input" | "const" | "temp";
}

/** A graph input that stays on the GPU between runs and, when `output` is set, is replaced after
 *  each run by that output's value (of the same type): parameters and optimizer state updated
 *  by a step. Without `output` it keeps the value written to it (weights for inference, a
 *  dataset already on the GPU). */
export interface StateUpdate {
  readonly input: string;
  readonly output?: string;
  /** The update's kernel writes the input's buffer directly: no copy after the run. */
  readonly inPlace?: boolean;
}

/** The WebGPU features a program's kernels need (Kernel.features, each once, sorted): a device
 *  without one is refused by name (runtime/execute.ts), a bundle's manifest lists them. */
export const requiredFeatures = (p: Pick<Program, "kernels">): KernelFeature[] =>
  [...new Set(p.kernels.flatMap((k) => k.features ?? []))].sort();

/** Output value → the input it is stored into, for the kernels writing in place. */
export const inPlaceOutputs = (p: Pick<Program, "kernels">): Map<ValueId, ValueId> =>
  new Map(p.kernels.flatMap((k) => (k.inPlace === undefined ? [] : [[k.output, k.inPlace] as const])));

/** Output value → the value whose memory it finally lives in, following chains written in place
 *  (a → b over a → c over b: b and c → a). Schedule order resolves a chain front to back. */
export function inPlaceRoots(p: Pick<Program, "kernels">): Map<ValueId, ValueId> {
  const roots = new Map<ValueId, ValueId>();
  for (const k of p.kernels) if (k.inPlace !== undefined) roots.set(k.output, roots.get(k.inPlace) ?? k.inPlace);
  return roots;
}

export interface Placement {
  readonly value: ValueId;
  readonly arena: number;
  readonly offset: number;
  /** The tensor's bytes (elements × 4: every dtype is stored in 32 bits; × 2 for a value stored
   *  as f16, Program.half). */
  readonly bytes: number;
  /** Bytes it occupies: `bytes` rounded up to the alignment, at least one unit. */
  readonly size: number;
  /** Live from `start` to `end`, both included (-1: uploaded before k0; K: copied out after). */
  readonly start: number;
  readonly end: number;
  /** Outputs written in place into this range after `value` (a chain, in schedule order). */
  readonly members: readonly ValueId[];
}

export interface MemoryPlan {
  /** The dims it was made for (symbolic dim → value). */
  readonly dims: Readonly<Record<string, number>>;
  readonly alignment: number;
  /** Bytes of each arena buffer. */
  readonly arenas: readonly number[];
  /** By value id, ascending. */
  readonly placements: readonly Placement[];
  /** The sum of `arenas`. */
  readonly arenaBytes: number;
  /** Every placed value (an in-place chain counting once) in a range of its own: the sum of
   *  their sizes. */
  readonly naiveBytes: number;
  /** The most bytes (aligned sizes) live at one time: no placement can do better. */
  readonly lowerBound: number;
  /** Bytes in buffers of their own, outside the arena: constant data, resident state, and a
   *  value kept out (bound twice by one kernel). */
  readonly ownBytes: number;
}

export interface Program {
  readonly graph: Graph;
  readonly kernels: readonly Kernel[];
  readonly buffers: readonly BufferSpec[];
  readonly state: readonly StateUpdate[];
  /** Place temporaries and non-resident inputs in one planned arena (./plan-memory.ts) instead of
   *  a buffer each; compile sets it (CompileOptions.plan), codegen alone leaves it off. */
  readonly arena?: boolean;
  /** Declared upper bounds of symbolic dims (CompileOptions.dims, e.g. { B: 128 }): the memory
   *  plan is made once for them and serves every binding within them. */
  readonly dims?: Readonly<Record<string, number>>;
  /** The memory plan, made once by the pipeline (compiler/plan-memory.ts) at the declared dims
   *  (or for static shapes) at WebGPU's default limits; where dims are open the runtime plans
   *  each binding with the same code (`planFor`). */
  readonly memory?: MemoryPlan;
  /** Values stored as f16, ascending (CompileOptions.precision "mixed", ./precision.ts): their
   *  kernels need WebGPU's `shader-f16` feature, and their memory is 2 bytes an element. */
  readonly half?: readonly ValueId[];
  /** Per pass: node count after it and its time (compile fills it; codegen alone leaves it empty). */
  readonly stats: readonly { readonly pass: string; readonly nodes: number; readonly ms: number }[];
}
