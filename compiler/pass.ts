/** A pass is a pure Graph → Graph that returns the same object when nothing changed. */
import type { Graph } from "../src/ir/types.ts";
import type { Target } from "./target.ts";

export interface PassContext {
  /** Storage buffers one kernel may bind (the device's limit; plans must work at 8). */
  readonly maxStorageBuffers: number;
  /** The device kind kernels are written for (./target.ts); GPU_TARGET when left out. */
  readonly target?: Target;
}

export interface Pass {
  readonly name: string;
  run(graph: Graph, ctx: PassContext): Graph;
}
