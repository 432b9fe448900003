/** What the compiler hands the runtime (and, later, a bundle's manifest): kernels as WGSL text
 *  with their bindings and dispatch sizes as data over the symbolic dims, and the buffers. */
import type { Size } from "../src/ir/shape.ts";
import type { DType, Graph, Shape, ValueId } from "../src/ir/types.ts";

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
  readonly wgsl: string;
  /** Storage bindings 0..n-1 in order; then, if `uniforms` is non-empty, binding n is a uniform
   *  struct of those symbolic dims, u32 each, in that order. */
  readonly bindings: readonly Binding[];
  readonly uniforms: readonly string[];
  readonly dispatch: Dispatch;
  /** Written in place (compiler/codegen.ts): the kernel stores `output` into this input's
   *  buffer or arena range, bound once read_write, and `output` gets no memory of its own. The
   *  input is a resident input that `output` updates, or a value that dies at this kernel (a
   *  temporary, or a non-resident input: uploaded again each run); chains share one range. */
  readonly inPlace?: ValueId;
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
  /** Per pass: node count after it and its time (compile fills it; codegen alone leaves it empty). */
  readonly stats: readonly { readonly pass: string; readonly nodes: number; readonly ms: number }[];
}
