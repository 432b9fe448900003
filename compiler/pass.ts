/** The two kinds of step in the pipeline (./pipeline.ts).
 *  A Pass is a pure Graph → Graph that returns the same object when nothing changed.
 *  A Stage lowers: it reads and extends a `Lowered` record — fuse adds the fusion plan, schedule
 *  the kernel order, codegen the Program, plan-memory the arena plan — and may replace the
 *  graph. Graph passes run before the first stage. */
import type { DimEnv } from "../src/ir/shape.ts";
import type { Graph, ValueId } from "../src/ir/types.ts";
import type { MemoryPlan } from "./plan-memory.ts";
import type { Program } from "./program.ts";
import type { Schedule, ScheduleKind } from "./schedule.ts";
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

/** What the stages know so far. */
export interface Lowered {
  readonly graph: Graph;
  /** The values in buffers (./fuse.ts); every other non-index value is computed inside its
   *  consumers' kernels. */
  readonly buffers?: ReadonlySet<ValueId>;
  readonly schedule?: Schedule;
  readonly program?: Program;
  /** The arena plan at the declared dims (or static shapes); the runtime plans otherwise. */
  readonly memory?: MemoryPlan;
}

export interface StageContext extends Required<PassContext> {
  readonly fuse: boolean;
  readonly schedule: ScheduleKind;
  readonly inPlace: boolean;
  readonly plan: boolean;
  /** Declared values (upper bounds) of symbolic dims. */
  readonly dims: DimEnv;
  /** Resident state: input name → the output replacing it after each run (CompileOptions.state). */
  readonly state: Readonly<Record<string, string | null>>;
}

export interface Stage {
  readonly name: string;
  lower(l: Lowered, ctx: StageContext): Lowered;
  /** One line of what it did, for program.stats ("codegen (19 kernels)"). */
  describe?(l: Lowered): string;
}

export type Step = Pass | Stage;
export const isStage = (s: Step): s is Stage => "lower" in s;
