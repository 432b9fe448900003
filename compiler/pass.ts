/** The two kinds of step in the pipeline (./pipeline.ts).
 *  A Pass is a pure Graph → Graph that returns the same object when nothing changed.
 *  A Stage lowers: it reads and extends a `Lowered` record, each standard stage taking the one
 *  before it as typed input and adding one field:
 *      Lowered { graph }
 *        → fuse         Fused     + fusion   (the kernel groups, ./fuse.ts)
 *        → schedule     Scheduled + schedule (their order, ./schedule.ts)
 *        → codegen      Coded     + program  (bindings and access modes decided, then WGSL, ./codegen.ts)
 *        → check-limits (adds nothing: refuses values and dispatches past the device's limits, ./limits.ts)
 *        → plan-memory  Planned   + memory   (the arena plan at the declared dims, ./plan-memory.ts)
 *  A stage whose input lacks a field (its stage was left out of the pipeline) is an error naming
 *  both (`need`), never a silent recompute. Graph passes run before the first stage. */
import type { DimEnv } from "../src/ir/shape.ts";
import type { Graph } from "../src/ir/types.ts";
import { KilnError } from "../src/ir/errors.ts";
import type { FusionPlan } from "./fuse.ts";
import type { DeviceLimits } from "./limits.ts";
import type { MemoryPlan } from "./plan-memory.ts";
import type { Program } from "./program.ts";
import type { Schedule, ScheduleKind } from "./schedule.ts";
import type { Precision } from "./precision.ts";
import type { Target } from "./target.ts";

export interface PassContext {
  /** Storage buffers one kernel may bind (the device's limit; plans must work at 8). */
  readonly maxStorageBuffers: number;
  /** The device kind kernels are written for (./target.ts); GPU_TARGET when left out. */
  readonly target?: Target;
  /** The device's buffer, binding and dispatch limits (./limits.ts): arenas are planned to the
   *  buffer size and "check-limits" refuses what passes them; WebGPU's defaults when left out. */
  readonly limits?: DeviceLimits;
}

export interface Pass {
  readonly name: string;
  run(graph: Graph, ctx: PassContext): Graph;
}

/** What the stages know so far. */
export interface Lowered {
  readonly graph: Graph;
  /** The kernel groups and the values in buffers (./fuse.ts); every other non-index value is
   *  computed inside its consumers' kernels. */
  readonly fusion?: FusionPlan;
  readonly schedule?: Schedule;
  readonly program?: Program;
  /** The arena plan at the declared dims (or static shapes); the runtime plans otherwise. */
  readonly memory?: MemoryPlan;
}

/** `Lowered` with the fields `K` present: a stage's typed input. */
export type With<K extends keyof Lowered> = Lowered & { readonly [F in K]-?: NonNullable<Lowered[F]> };
export type Fused = With<"fusion">;
export type Scheduled = With<"fusion" | "schedule">;
export type Coded = With<"fusion" | "schedule" | "program">;

/** What sets each field, for `need`'s error. */
const MADE_BY: Readonly<Record<Exclude<keyof Lowered, "graph">, string>> = {
  fusion: 'the fusion plan: keep "fuse" or a stage of your own that sets fusion',
  schedule: 'the kernel order: keep "schedule" or a stage of your own that sets schedule',
  program: 'kernels, and no step generated kernels: keep "codegen" or a stage of your own that sets program',
  memory: 'the memory plan: keep "plan-memory"',
};

/** `l` as stage `stage`'s typed input: an error naming what is missing and which stage makes it. */
export function need<K extends Exclude<keyof Lowered, "graph">>(l: Lowered, stage: string, ...fields: K[]): With<K> {
  for (const f of fields) {
    if (l[f] === undefined) throw new KilnError(`pipeline: stage "${stage}" needs ${MADE_BY[f]}`);
  }
  return l as With<K>;
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
  /** "mixed": activations stored as f16 (./precision.ts). */
  readonly precision: Precision;
}

export interface Stage {
  readonly name: string;
  lower(l: Lowered, ctx: StageContext): Lowered;
  /** One line of what it did, for program.stats ("codegen (19 kernels)"). */
  describe?(l: Lowered): string;
}

export type Step = Pass | Stage;
export const isStage = (s: Step): s is Stage => "lower" in s;
