/** The contract between a model's training step and an optimizer (./optimizers.ts): the update
 *  is IR, built into the step graph, so it runs in the same submission as the forward and
 *  backward passes, in place on the resident parameters and slots. */
import type { Tensor } from "./builder.ts";

/** A per-parameter state tensor of the parameter's shape (momentum's velocity, Adam's m and v),
 *  resident on the GPU between steps, starting at `init` everywhere. */
export interface SlotSpec {
  readonly name: string;
  readonly init: number;
}

/** What every parameter's update sees of the step: `t`, the step number counting from 1 (an f32
 *  scalar tensor, resident, incremented by the step itself), and `lr`, the learning rate of this
 *  step (the schedule's value at t, a scalar tensor). */
export interface StepInfo {
  readonly t: Tensor;
  readonly lr: Tensor;
}

export interface Optimizer {
  readonly name: string;
  /** The initial learning rate (a schedule's value at t = 1 when it has one). */
  readonly learningRate: number;
  /** The learning rate at step t, as IR (constant, 1/t decay, step decay: ./optimizers.ts). */
  schedule(t: Tensor): Tensor;
  readonly slots: readonly SlotSpec[];
  /** One step for one parameter: the new parameter and the new value of each slot by name. */
  update(
    param: Tensor,
    grad: Tensor,
    slots: Readonly<Record<string, Tensor>>,
    step: StepInfo,
  ): { readonly param: Tensor; readonly slots: Readonly<Record<string, Tensor>> };
}
