/** planMemory: place the program's values at offsets in one arena (a few when one would pass
 *  the buffer-size limit), reusing the bytes of values that are dead.
 *
 *  Liveness is over the kernel schedule, times -1 (uploads) … K (copies out after kernel K-1):
 *      value      from                       to
 *      input      -1 (written before k0)     its last reader
 *      temp       the kernel that writes it  its last reader (or that kernel, if none)
 *      output     as above                   K (copied to staging / into resident state)
 *  Intervals are closed: a kernel's inputs and its output are live together, so a kernel never
 *  writes over what it reads — except a kernel written in place (Kernel.inPlace, chosen by
 *  compiler/codegen.ts where the kernel reads that input only at the element it stores): its
 *  output and that input are ONE value here, placed once (under the input's id, the chain's
 *  root), live over the union of their intervals; `members` names the outputs stored in it.
 *      k0: v1 = exp(v0) over v0;  k1: v2 = neg(v1) over v1   →   v0 [-1, K] holds v0, v1, v2
 *
 *  Placement is greedy by size with best fit (TFLite's GreedyBySize): largest first; each takes
 *  the smallest gap between the values already placed that are live at the same time, or the
 *  end. Every size is rounded up to `alignment` (WebGPU's minStorageBufferOffsetAlignment, 256
 *  on lavapipe; a value stored as f16, Program.half, has 2 bytes an element) and a zero-size tensor still takes one unit (a binding cannot be empty), so
 *  every offset is aligned.
 *      time →   k0   k1   k2   k3
 *      v1  [=========]                 offset 0
 *      v2       [=========]            offset |v1|
 *      v3            [=========]       offset 0 (v1 is dead by k2)
 *  arenaBytes ≥ lowerBound (the most aligned bytes live at one time) and ≤ naiveBytes (the sum).
 *
 *  Which values: temporaries and inputs that are not resident. Constant data and resident state
 *  keep buffers of their own (uploaded once, persistent across runs), and so does a value that a
 *  kernel binds twice (possible only in hand-written WGSL; see below). A state update written in
 *  place (Kernel.inPlace) takes no bytes at all: it lives in its input's resident buffer; and so
 *  does an output written in place over an arena value: it lives in that value's range.
 *
 *  WebGPU's aliasing rule: one buffer may not be bound read-only and writable in one dispatch,
 *  even on disjoint ranges, while disjoint writable ranges are fine. So every arena binding is
 *  declared read_write: which values the arena holds is structural (`inArena`: their roles, not
 *  the dims), so codegen declares them so when it writes the WGSL (compiler/codegen.ts), and a
 *  kernel's bindings into the arena are then all writable and, being live together, disjoint. The alternative — two or more arenas so a kernel's reads and its write sit in
 *  different buffers — is a colouring problem whose arenas peak separately, for nothing:
 *  read_write costs no step time on lavapipe (bench Kiln runner, 20 steps, medians planned vs a
 *  buffer per value: W1 32.7–34.7 vs 33.5–33.9 ms, W3 36.0–39.1 vs 40.0–43.7 ms; same losses). */
import { describeNode, KilnError } from "../src/ir/errors.ts";
import { bindShape, formatType, type DimEnv } from "../src/ir/shape.ts";
import type { Node, ValueId } from "../src/ir/types.ts";
import { elementBytes } from "./precision.ts";
import { type BufferSpec, inPlaceRoots, type MemoryPlan, type Placement, type Program } from "./program.ts";

export type { MemoryPlan, Placement };

export interface PlanOptions {
  /** Offsets are multiples of this (the device's minStorageBufferOffsetAlignment). */
  readonly alignment: number;
  /** An arena is at most this many bytes; more values open another arena. */
  readonly maxBufferSize: number;
}

/** WebGPU's defaults, as lavapipe checks them: 256-byte offsets, 256 MiB buffers. */
export const DEFAULT_PLAN: PlanOptions = { alignment: 256, maxBufferSize: 256 * 2 ** 20 };

/** Whether a value of this role is the arena's: a temporary, or an input that is not resident
 *  (constant data and resident state keep buffers of their own). Codegen declares these read_write. */
export const inArena = (role: BufferSpec["role"], resident: boolean): boolean => role === "temp" || (role === "input" && !resident);

/** The values the arena places: temporaries and non-resident inputs, except outputs written in
 *  place (they live in their root's memory) and a value some kernel binds twice or declares
 *  read-only (hand-written WGSL, or kernels written without an arena) — with its whole chain. */
export function arenaValues(program: Program): Set<ValueId> {
  const resident = new Set(program.state.map((s) => s.input));
  const roots = inPlaceRoots(program);
  const values = new Set<ValueId>();
  for (const b of program.buffers) {
    const n = program.graph.nodes[b.value];
    if (roots.has(b.value)) continue;
    if (inArena(b.role, b.role === "input" && resident.has((n as Node<"input">).attrs.name))) values.add(b.value);
  }
  for (const k of program.kernels) {
    const seen = new Set<ValueId>();
    for (const b of k.bindings) {
      const r = roots.get(b.value) ?? b.value;
      if (seen.has(r) || b.access === "read") values.delete(r);
      seen.add(r);
    }
  }
  return values;
}

/** Live intervals of `values` over the schedule (see the header); an output written in place
 *  counts as its root. */
export function liveness(program: Program, values: ReadonlySet<ValueId>): Map<ValueId, { start: number; end: number }> {
  const K = program.kernels.length;
  const roots = inPlaceRoots(program);
  const at = (v: ValueId) => live.get(roots.get(v) ?? v);
  const live = new Map<ValueId, { start: number; end: number }>();
  for (const v of values) live.set(v, { start: -1, end: -1 });
  program.kernels.forEach((k, i) => {
    const w = live.get(k.output);
    if (w) w.start = w.end = i;
  });
  program.kernels.forEach((k, i) => {
    for (const v of [k.output, ...k.bindings.map((b) => b.value)]) {
      const r = at(v);
      if (r) r.end = Math.max(r.end, i);
    }
  });
  for (const o of program.graph.outputs) {
    const r = at(o.id);
    if (r) r.end = K;
  }
  return live;
}

export function planMemory(program: Program, env: DimEnv, opts: PlanOptions = DEFAULT_PLAN): MemoryPlan {
  const values = arenaValues(program);
  const roots = inPlaceRoots(program);
  const live = liveness(program, values);
  const half = new Set(program.half);
  const members = new Map<ValueId, ValueId[]>();
  for (const [o, r] of roots) members.set(r, [...(members.get(r) ?? []), o]);
  const align = (n: number) => Math.max(1, Math.ceil(n / opts.alignment)) * opts.alignment;
  const items = [...values].map((value) => {
    const n = program.graph.nodes[value];
    const bytes = bindShape(n.type.shape, env).reduce((a, d) => a * d, elementBytes(half, value));
    if (align(bytes) > opts.maxBufferSize) {
      throw new KilnError(
        `${describeNode(n.op, n.id, n.site)}: ${formatType(n.type)} with ${JSON.stringify(env)} is ${bytes} bytes; a buffer holds at most ${opts.maxBufferSize}`,
      );
    }
    return { value, bytes, size: align(bytes), ...live.get(value)!, members: members.get(value) ?? [] };
  });
  // Largest first; among equals the longest-lived, then by id (deterministic).
  const order = [...items].sort((a, b) => b.size - a.size || b.end - b.start - (a.end - a.start) || a.value - b.value);
  const arenas: number[] = [];
  const placed: Placement[][] = [];
  const result: Placement[] = [];
  for (const it of order) {
    let p: Placement | undefined;
    for (let a = 0; !p; a++) {
      if (a === arenas.length) [arenas[a], placed[a]] = [0, []];
      const offset = bestFit(
        placed[a].filter((q) => q.start <= it.end && it.start <= q.end),
        it.size,
      );
      if (offset + it.size <= opts.maxBufferSize) p = { ...it, arena: a, offset };
    }
    placed[p.arena].push(p);
    arenas[p.arena] = Math.max(arenas[p.arena], p.offset + p.size);
    result.push(p);
  }
  let lowerBound = 0;
  for (let t = -1; t <= program.kernels.length; t++) {
    lowerBound = Math.max(
      lowerBound,
      items.reduce((s, it) => (it.start <= t && t <= it.end ? s + it.size : s), 0),
    );
  }
  return {
    dims: { ...env },
    alignment: opts.alignment,
    arenas,
    placements: result.sort((a, b) => a.value - b.value),
    arenaBytes: arenas.reduce((a, b) => a + b, 0),
    naiveBytes: items.reduce((s, it) => s + it.size, 0),
    lowerBound,
    ownBytes: program.buffers
      .filter((b) => !values.has(b.value) && !roots.has(b.value))
      .reduce((s, b) => s + bindShape(b.shape, env).reduce((a, d) => a * d, elementBytes(half, b.value)), 0),
  };
}

/** The plan for a binding `env` on a device with `opts`' limits: the program's own (made once by
 *  the pipeline at its declared dims, Program.memory) when it was made for these dims and fits
 *  the device, else made now by the same `planMemory` — the runtime (for open dims) and bundles
 *  plan through this one function. */
export function planFor(program: Program, env: DimEnv, opts: PlanOptions = DEFAULT_PLAN): MemoryPlan {
  const m = program.memory;
  const syms = new Set(program.buffers.flatMap((b) => b.shape.filter((d): d is string => typeof d === "string")));
  const same = m !== undefined && [...syms].every((d) => m.dims[d] === env[d]);
  if (same && m.alignment % opts.alignment === 0 && m.arenas.every((b) => b <= opts.maxBufferSize)) return m;
  return planMemory(program, env, opts);
}

/** The smallest gap between `conflicts` (values live at the same time) that fits `size`, else
 *  the end of the highest one. */
function bestFit(conflicts: readonly Placement[], size: number): number {
  let cursor = 0;
  let best: number | undefined;
  let bestGap = Infinity;
  for (const q of [...conflicts].sort((a, b) => a.offset - b.offset)) {
    const gap = q.offset - cursor;
    if (gap >= size && gap < bestGap) [best, bestGap] = [cursor, gap];
    cursor = Math.max(cursor, q.offset + q.size);
  }
  return best ?? cursor;
}

/** For `kiln explain` and reports: the plan of a compiled program with its symbolic dims bound
 *  (to a declared upper bound, say), at WebGPU's default alignment and buffer limit. */
export function memoryReport(program: Program, env: DimEnv, opts: PlanOptions = DEFAULT_PLAN): MemoryPlan {
  return planMemory(program, env, opts);
}
