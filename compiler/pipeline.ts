/** The compiler's table of contents: the steps, in order — graph passes, then the lowering
 *  stages fuse, schedule, codegen, check-limits and plan-memory (./pass.ts says what each kind is).
 *  A pipeline of your own: `compile(graph, { passes: (std) => insertBefore(std, "fuse", myPass) })`
 *  adds, removes, reorders or replaces steps, a stage included (a fusion heuristic of your own is a
 *  Stage named as you like that sets `fusion`; ./fuse.ts `kernelGroups` makes the groups of the
 *  values you choose to keep in buffers). Each stage takes the one before it as typed input
 *  (./pass.ts): leaving one out is an error naming what is missing, never a silent recompute. Each step's node count and time land in
 *  `program.stats`; KILN_DUMP=<pass>[,<pass>…] (or "all") prints the text IR after those passes. */
import { printGraph } from "../src/ir/print.ts";
import type { Graph, ValueId } from "../src/ir/types.ts";
import { verify } from "../src/ir/verify.ts";
import { generateKernels } from "./codegen.ts";
import { planFusion } from "./fuse.ts";
import { checkLimits, DEFAULT_LIMITS } from "./limits.ts";
import { DEFAULT_PLAN, memoryReport } from "./plan-memory.ts";
import { cse } from "./cse.ts";
import { dce } from "./dce.ts";
import { foldConstants } from "./fold-constants.ts";
import { inferShapes } from "./infer-shapes.ts";
import { legalize } from "./legalize.ts";
import { isStage, type Lowered, need, type Pass, type PassContext, type Stage, type StageContext, type Step } from "./pass.ts";
import { inPlaceOutputs, type Program, type StateUpdate } from "./program.ts";
import { schedule, type ScheduleKind } from "./schedule.ts";
import { inputNodes } from "../src/ir/bind.ts";
import { KilnError } from "../src/ir/errors.ts";
import { formatType, isStatic, shapeEq } from "../src/ir/shape.ts";
import { simplify } from "./simplify.ts";
import type { Precision } from "./precision.ts";
import { GPU_TARGET } from "./target.ts";

/** Run `passes` in turn until a round changes nothing (at most `rounds` times). */
export function fixpoint(name: string, passes: readonly Pass[], rounds = 4): Pass {
  return {
    name,
    run(graph, ctx) {
      let g = graph;
      for (let r = 0; r < rounds; r++) {
        const before = g;
        for (const p of passes) g = p.run(g, ctx);
        if (g === before) break;
      }
      return g;
    },
  };
}

/** The graph passes. */
export const PASSES: readonly Pass[] = [inferShapes, fixpoint("simplify-all", [simplify, foldConstants, cse]), dce, legalize];

/** fuse: the kernel groups, and so which values get buffers (./fuse.ts); the binding limit is
 *  part of the decision. */
export const fuseStage: Stage = {
  name: "fuse",
  lower: (l, ctx) => ({
    ...l,
    fusion: planFusion(l.graph, { fuse: ctx.fuse, maxStorageBuffers: ctx.maxStorageBuffers, target: ctx.target }),
  }),
  describe: (l) => `fuse (${l.fusion?.buffers.size} values in buffers)`,
};

/** schedule: the kernels' order, chosen for the smaller memory peak (./schedule.ts). */
export const scheduleStage: Stage = {
  name: "schedule",
  lower(input, ctx) {
    const l = need(input, "schedule", "fusion");
    const updates = new Map<ValueId, ValueId>();
    for (const u of stateUpdates(l.graph, ctx.state)) {
      if (u.output === undefined) continue;
      updates.set(l.graph.outputs.find((x) => x.name === u.output)!.id, inputNodes(l.graph).find((n) => n.attrs.name === u.input)!.id);
    }
    return { ...l, schedule: schedule(l.graph, l.fusion.groups, ctx.schedule, ctx.dims, updates) };
  },
  describe: ({ schedule: s }) =>
    s
      ? `schedule (${s.kind === "memory" ? "memory-greedy" : "program order"}, est. peak ${s.peak} B; program order ${s.programPeak} B)`
      : "schedule",
};

/** codegen: WGSL kernels (./codegen.ts), with resident-state updates written in place where safe. */
export const codegenStage: Stage = {
  name: "codegen",
  lower(input, ctx) {
    const l = need(input, "codegen", "fusion", "schedule");
    const g = l.graph;
    const state = stateUpdates(g, ctx.state);
    const inPlace = new Map<ValueId, ValueId>();
    if (ctx.inPlace) {
      for (const u of state) {
        if (u.output === undefined) continue;
        const o = g.outputs.find((x) => x.name === u.output)!.id;
        if (!inPlace.has(o)) inPlace.set(o, inputNodes(g).find((n) => n.attrs.name === u.input)!.id);
      }
    }
    const resident = new Set(state.map((u) => inputNodes(g).find((n) => n.attrs.name === u.input)!.id));
    const program = generateKernels(g, l.fusion, l.schedule.order, { ...ctx, inPlace, reuse: ctx.inPlace, resident, arena: ctx.plan });
    const done = inPlaceOutputs(program);
    const marked = state.map((u) => {
      const i = inputNodes(g).find((n) => n.attrs.name === u.input)!.id;
      const o = u.output === undefined ? undefined : g.outputs.find((x) => x.name === u.output)!.id;
      return o !== undefined && done.get(o) === i ? { ...u, inPlace: true } : u;
    });
    return { ...l, program: { ...program, state: marked, arena: ctx.plan } };
  },
  describe: (l) => `codegen (${l.program?.kernels.length} kernels)`,
};

/** plan-memory: the arena plan (./plan-memory.ts) for static shapes or the declared dims; the
 *  runtime plans with the same code for the dims it meets (within the declared bounds). */
export const planMemoryStage: Stage = {
  name: "plan-memory",
  lower(input, ctx) {
    const l = need(input, "plan-memory", "program");
    const p = l.program;
    if (!p.arena || !p.buffers.every((b) => b.shape.every((d) => typeof d === "number" || ctx.dims[d] !== undefined))) return l;
    const memory = memoryReport(p, ctx.dims, { alignment: DEFAULT_PLAN.alignment, maxBufferSize: ctx.limits.maxBufferSize });
    return { ...l, memory, program: { ...p, memory } };
  },
  describe: ({ memory: m, program: p }) =>
    m
      ? `plan-memory (arena ${m.arenaBytes} B, naive ${m.naiveBytes} B, lower bound ${m.lowerBound} B)`
      : p?.arena
        ? "plan-memory (at run time: declare dims to plan here)"
        : "plan-memory (off: a buffer per value)",
};

/** check-limits: every value within one storage binding and every dispatch within the device's
 *  workgroups per dimension (./limits.ts), for static shapes and at the declared bounds of
 *  symbolic dims; a program with open dims is checked by the runtime, with the same messages,
 *  for the dims it meets. */
export const checkLimitsStage: Stage = {
  name: "check-limits",
  lower(input, ctx) {
    const l = need(input, "check-limits", "program");
    const syms = new Set(l.program.buffers.flatMap((b) => b.shape.filter((d): d is string => typeof d === "string")));
    for (const k of l.program.kernels) for (const u of k.uniforms) syms.add(u);
    if ([...syms].every((d) => ctx.dims[d] !== undefined)) checkLimits(l.program, ctx.dims, ctx.limits);
    return l;
  },
};

/** The standard pipeline. */
export const PIPELINE: readonly Step[] = [...PASSES, fuseStage, scheduleStage, codegenStage, checkLimitsStage, planMemoryStage];

/** `steps` with `added` put before the step named `name` (an error if there is none). */
export function insertBefore(steps: readonly Step[], name: string, ...added: Step[]): Step[] {
  const i = steps.findIndex((s) => s.name === name);
  if (i < 0) throw new KilnError(`insertBefore: no step named "${name}" (steps: ${steps.map((s) => s.name).join(", ")})`);
  return [...steps.slice(0, i), ...added, ...steps.slice(i)];
}

/** What one pass did: the graph's node count after it, and its time. */
export interface PassStat {
  readonly pass: string;
  readonly nodes: number;
  readonly ms: number;
}

export interface CompileOptions extends Partial<PassContext> {
  /** The steps to run, from the standard list (PIPELINE): add, remove, reorder, replace. */
  readonly passes?: (standard: readonly Step[]) => readonly Step[];
  /** Verify the graph between passes (tests do; it costs a re-inference per pass). */
  readonly verifyEach?: boolean;
  /** Resident state: input name → the output whose value replaces it after every run, e.g.
   *  { W1: "W1_next" } for a training step, or null for an input that stays as written (see
   *  Executable.write). Shapes must be static and equal. */
  readonly state?: Readonly<Record<string, string | null>>;
  /** Fuse elementwise chains into their consumers (compiler/fuse.ts); default true. */
  readonly fuse?: boolean;
  /** Plan memory: values share one arena at planned offsets (compiler/plan-memory.ts); false
   *  gives every value a buffer of its own. Default true. */
  readonly plan?: boolean;
  /** Write in place where safe (compiler/codegen.ts): a state update straight into its input's
   *  resident buffer (no copy after the run), and a kernel's output over an arena value that
   *  dies there (a temporary, or a non-resident input, uploaded again each run). Default true. */
  readonly inPlace?: boolean;
  /** Kernel order (./schedule.ts): "best" (default) keeps the memory-greedy order when its
   *  estimated peak is lower than program order's; "program" or "memory" force one. */
  readonly schedule?: ScheduleKind;
  /** Upper bounds of symbolic dims, e.g. { B: 128 }: the memory plan is made for them here
   *  (reported in `stats`) and, at run time, once for every binding within them; a binding
   *  beyond a bound is refused. Without them the runtime plans for the bindings it meets. */
  readonly dims?: Readonly<Record<string, number>>;
  /** "mixed": the arena's f32 activations are stored as f16, arithmetic and accumulation stay
   *  f32, and inputs, outputs and resident state stay f32 (./precision.ts); the kernels then need
   *  the device's `shader-f16` feature. Default "f32". */
  readonly precision?: Precision;
}

export function compile(graph: Graph, opts: CompileOptions = {}): Program {
  const ctx: StageContext = {
    maxStorageBuffers: opts.maxStorageBuffers ?? 8,
    target: opts.target ?? GPU_TARGET,
    limits: opts.limits ?? DEFAULT_LIMITS,
    fuse: opts.fuse ?? true,
    schedule: opts.schedule ?? "best",
    inPlace: opts.inPlace ?? true,
    plan: opts.plan ?? true,
    dims: opts.dims ?? {},
    state: opts.state ?? {},
    precision: checkPrecision(opts.precision ?? "f32"),
  };
  // `globalThis.process`: no Node in a browser (lib/browser.ts), and no KILN_DUMP there.
  const dump = new Set(
    ((globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env.KILN_DUMP ?? "").split(",").filter(Boolean),
  );
  verify(graph);
  let l: Lowered = { graph };
  let lowering: string | undefined;
  const stats: PassStat[] = [{ pass: "input", nodes: graph.nodes.length, ms: 0 }];
  for (const step of opts.passes ? opts.passes(PIPELINE) : PIPELINE) {
    const t0 = performance.now();
    if (isStage(step)) {
      lowering ??= step.name;
      l = step.lower(l, ctx);
    } else {
      if (lowering)
        throw new KilnError(
          `pipeline: graph pass "${step.name}" comes after the stage "${lowering}"; graph passes run before lowering begins`,
        );
      l = { graph: step.run(l.graph, ctx) };
    }
    const name = isStage(step) && step.describe ? step.describe(l) : step.name;
    stats.push({ pass: name, nodes: l.graph.nodes.length, ms: performance.now() - t0 });
    if (opts.verifyEach) verify(l.graph);
    if (dump.has(step.name) || dump.has("all")) console.error(`--- after ${step.name}\n${printGraph(l.graph)}`);
  }
  if (!l.program)
    throw new KilnError(
      `pipeline: no step generated kernels (steps: ${stats
        .slice(1)
        .map((s) => s.pass)
        .join(", ")}); keep "codegen" or a stage of your own that sets program`,
    );
  return { ...l.program, stats, ...(opts.dims ? { dims: opts.dims } : {}) };
}

function checkPrecision(p: unknown): Precision {
  if (p === "f32" || p === "mixed") return p;
  throw new KilnError(`compile: precision must be "f32" or "mixed" (f16 activations, f32 arithmetic), got ${JSON.stringify(p)}`);
}

function stateUpdates(g: Graph, state: Readonly<Record<string, string | null>>): StateUpdate[] {
  return Object.entries(state).map(([input, output]) => {
    const i = inputNodes(g).find((n) => n.attrs.name === input);
    if (!i)
      throw new KilnError(
        `state: "${input}" is not an input of the graph (inputs: ${inputNodes(g)
          .map((n) => n.attrs.name)
          .join(", ")})`,
      );
    if (!isStatic(i.type.shape))
      throw new KilnError(`state: input "${input}" ${formatType(i.type)} must have a static shape to stay resident`);
    if (output === null) return { input };
    const o = g.outputs.find((x) => x.name === output);
    if (!o)
      throw new KilnError(
        `state: "${output}" (the update of "${input}") is not an output of the graph (outputs: ${g.outputs.map((x) => x.name).join(", ")})`,
      );
    const [ti, to] = [i.type, g.nodes[o.id].type];
    if (ti.dtype !== to.dtype || !shapeEq(ti.shape, to.shape))
      throw new KilnError(`state: "${output}" ${formatType(to)} cannot replace input "${input}" ${formatType(ti)}`);
    return { input, output };
  });
}
