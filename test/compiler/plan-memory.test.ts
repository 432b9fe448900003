/** planMemory, checked on the plan itself: over random graphs (forward and gradient, fused and
 *  not) no two values live at the same time share a byte, offsets are aligned, the arena lies
 *  between the lower bound and the naive total, and the liveness it used agrees with the
 *  schedule — with in-place reuse on, an output written over a dying input counting as that
 *  input (one range, the union of their lives). Then small graphs whose plans are known. */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { arenaValues, memoryReport, planFor, planMemory, type MemoryPlan, type PlanOptions } from "../../compiler/plan-memory.ts";
import { compile } from "../../compiler/pipeline.ts";
import { inPlaceRoots, type Program } from "../../compiler/program.ts";
import { softmax } from "../../src/api/composites.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import { grad } from "../../src/api/grad.ts";
import { printGraph } from "../../src/ir/print.ts";
import type { DimEnv } from "../../src/ir/shape.ts";
import type { Graph, Node } from "../../src/ir/types.ts";
import { buildGradGraph } from "../helpers/gradcheck.ts";
import { buildRecipe, recipeArb } from "../helpers/random-graph.ts";
import { buildOpRecipe, forwardGraph, opRecipeArb, recipeInputs, recipeShapes } from "../helpers/random-op-graph.ts";

/** Every property of a valid plan; throws naming the first violation. */
function checkPlan(p: Program, env: DimEnv, plan: MemoryPlan, opts: PlanOptions): void {
  const K = p.kernels.length;
  const values = arenaValues(p);
  const roots = inPlaceRoots(p);
  expect(plan.placements.map((q) => q.value)).toEqual([...values].sort((a, b) => a - b));
  const placed = new Map(plan.placements.map((q) => [q.value, q]));
  // A value written in place is found at its chain's root, and is listed there as a member.
  const at = { get: (v: number) => placed.get(roots.get(v) ?? v), has: (v: number) => placed.has(roots.get(v) ?? v) };
  for (const q of plan.placements) for (const m of q.members) expect(roots.get(m), `%${m} listed in %${q.value}`).toBe(q.value);
  for (const [m, r] of roots) if (values.has(r)) expect(placed.get(r)!.members).toContain(m);
  for (const q of plan.placements) {
    expect(q.offset % opts.alignment, `offset of %${q.value}`).toBe(0);
    expect(q.size % opts.alignment).toBe(0);
    expect(q.size).toBeGreaterThanOrEqual(Math.max(q.bytes, 1));
    expect(q.offset + q.size).toBeLessThanOrEqual(plan.arenas[q.arena]);
    expect(plan.arenas[q.arena]).toBeLessThanOrEqual(opts.maxBufferSize);
  }
  // Liveness against the schedule, recomputed plainly: a value is live wherever a kernel binds
  // it, from its upload (inputs) or its kernel, and to the end if it is an output.
  for (const [i, k] of p.kernels.entries()) {
    for (const b of k.bindings) {
      const q = at.get(b.value);
      if (q) expect(q.start <= i && i <= q.end, `%${b.value} bound by ${k.name} outside [${q.start}, ${q.end}]`).toBe(true);
    }
    const w = at.get(k.output);
    if (w && !roots.has(k.output)) expect(w.start, `%${k.output} is written by ${k.name}`).toBe(i);
    if (w) expect(w.start <= i && i <= w.end, `%${k.output} written by ${k.name} outside its range's life`).toBe(true);
    // In place only over a value that dies here: no later kernel binds it, and it is no output.
    if (k.inPlace !== undefined && at.has(k.inPlace)) {
      expect(
        p.kernels.slice(i + 1).some((l) => l.bindings.some((b) => b.value === k.inPlace)),
        `%${k.inPlace} read after ${k.name} wrote over it`,
      ).toBe(false);
      expect(p.graph.outputs.some((o) => o.id === k.inPlace)).toBe(false);
    }
  }
  for (const o of p.graph.outputs) if (at.has(o.id)) expect(at.get(o.id)!.end, `output ${o.name}`).toBe(K);
  for (const q of plan.placements) if (p.graph.nodes[q.value].op === "input") expect(q.start).toBe(-1);
  // The invariant: values live together never overlap in bytes.
  for (const a of plan.placements) {
    for (const b of plan.placements) {
      if (a.value >= b.value || a.arena !== b.arena || a.end < b.start || b.end < a.start) continue;
      const apart = a.offset + a.size <= b.offset || b.offset + b.size <= a.offset;
      expect(
        apart,
        `%${a.value} [${a.offset}, +${a.size}) live ${a.start}..${a.end} overlaps %${b.value} [${b.offset}, +${b.size}) live ${b.start}..${b.end}`,
      ).toBe(true);
    }
  }
  expect(plan.arenaBytes).toBe(plan.arenas.reduce((s, n) => s + n, 0));
  expect(plan.arenaBytes).toBeGreaterThanOrEqual(plan.lowerBound);
  expect(plan.arenaBytes).toBeLessThanOrEqual(plan.naiveBytes);
  // Every arena binding of every kernel is declared read_write, so no dispatch mixes accesses.
  for (const k of p.kernels) {
    expect(new Set(k.bindings.map((b) => roots.get(b.value) ?? b.value)).size, `${k.name} binds one range twice`).toBe(k.bindings.length);
    for (const b of k.bindings) {
      if (at.has(b.value)) {
        expect(b.access).toBe("read_write");
        expect(k.wgsl).toContain(`var<storage, read_write> v${b.value}:`);
      }
    }
  }
}

/** The plan at 256-byte and 4-byte alignment, and with buffers so small that it needs several. */
function checkAll(graph: Graph, env: DimEnv, fuse: boolean): void {
  const p = compile(graph, { fuse });
  if (p.kernels.some((k) => k.inPlace !== undefined)) inPlaceRuns++;
  try {
    for (const alignment of [256, 4]) {
      const big = { alignment, maxBufferSize: 256 * 2 ** 20 };
      const one = planMemory(p, env, big);
      checkPlan(p, env, one, big);
      expect(one.arenas.length).toBeLessThanOrEqual(1);
      const largest = Math.max(alignment, ...one.placements.map((q) => q.size));
      const small = { alignment, maxBufferSize: largest + alignment };
      const split = planMemory(p, env, small);
      checkPlan(p, env, split, small);
      if (split.arenas.length > 1) splits++;
    }
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${printGraph(p.graph)}`);
  }
}

/** Plans that needed more than one arena, and programs with a kernel written in place (the
 *  properties must exercise both). */
let splits = 0;
let inPlaceRuns = 0;

const DEFAULT: PlanOptions = { alignment: 256, maxBufferSize: 256 * 2 ** 20 };

const batchEnv = (g: Graph, b: number): DimEnv => (g.nodes.some((n) => n.type.shape.includes("B")) ? { B: b } : {});

describe("planMemory over random graphs", () => {
  test("forward graphs over the op table, fused and unfused", () => {
    fc.assert(
      fc.property(opRecipeArb, fc.boolean(), (r, fuse) => {
        const g = forwardGraph(r);
        checkAll(g, batchEnv(g, r.dims[0]), fuse);
      }),
      { seed: 5, numRuns: 150 },
    );
    expect(splits).toBeGreaterThan(10);
    expect(inPlaceRuns).toBeGreaterThan(10);
  });

  test("gradient graphs (long schedules, values saved for the backward pass)", () => {
    fc.assert(
      fc.property(opRecipeArb, fc.boolean(), (r, fuse) => {
        const { graph } = buildGradGraph({ inputs: recipeInputs(r), shapes: recipeShapes(r), f: (xs) => buildOpRecipe(r, xs) }, r.seed);
        checkAll(graph, batchEnv(graph, r.dims[0]), fuse);
      }),
      { seed: 6, numRuns: 100 },
    );
  });

  test("elementwise graphs with two outputs, one early", () => {
    fc.assert(
      fc.property(recipeArb, fc.integer({ min: 0, max: 70 }), fc.boolean(), (r, b, fuse) => checkAll(buildRecipe(r), { B: b }, fuse)),
      { seed: 7, numRuns: 150 },
    );
  });
});

describe("known plans", () => {
  /** x → 8 unary ops → y, 1024 floats each, unfused: a kernel per op. */
  function chain(inPlace = false): Program {
    const g = new GraphBuilder();
    let v = g.input("x", "f32", [1024]);
    for (let i = 0; i < 8; i++) v = i % 2 ? v.neg() : v.exp();
    return compile(g.build({ y: v }), { fuse: false, inPlace });
  }

  test("a chain reuses memory: two tensors at a time, however long it is", () => {
    const p = chain();
    expect(p.kernels).toHaveLength(8);
    const plan = memoryReport(p, {});
    expect(plan.naiveBytes).toBe(9 * 4096);
    expect(plan.lowerBound).toBe(2 * 4096);
    expect(plan.arenaBytes).toBe(2 * 4096);
    expect(plan.ownBytes).toBe(0);
  });

  test("written in place, the chain is one range: each kernel stores over the input dying there", () => {
    const p = chain(true);
    expect(p.kernels.map((k) => k.inPlace)).toEqual(p.kernels.map((k) => p.graph.nodes[k.output].inputs[0]));
    // Bound once, read_write: the output has no binding of its own.
    for (const k of p.kernels) expect(k.bindings).toEqual([{ value: k.inPlace, access: "read_write" }]);
    const plan = memoryReport(p, {});
    expect(plan.placements.map((q) => [q.value, q.offset, q.start, q.end, q.members])).toEqual([
      [0, 0, -1, 8, p.kernels.map((k) => k.output)],
    ]);
    expect([plan.naiveBytes, plan.lowerBound, plan.arenaBytes]).toEqual([4096, 4096, 4096]);
    checkPlan(p, {}, plan, DEFAULT);
  });

  test("never in place where the kernel reads the dying input at another element: permute, matmul, reductions", () => {
    const g = new GraphBuilder();
    const [a, w] = [g.input("a", "f32", [8, 8]), g.input("w", "f32", [8, 8])];
    const t = a.exp();
    const p1 = t.transpose().neg(); // reads t at the transposed element
    const mm = p1.matmul(w); // reads p1 along its rows
    const s = softmax(mm, 1); // a row reduction, then a value read against it
    const graph = g.build({ y: s.neg() });
    for (const fuse of [false, true]) {
      const p = compile(graph, { fuse });
      const last = (v: number) => p.kernels.findLastIndex((k) => k.bindings.some((b) => b.value === v));
      const of = (v: number) => p.kernels.find((k) => k.output === v)!;
      // Each reads an input that dies there and has its size, so only the element rule refuses.
      for (const [v, input] of [
        [p1.id, t.id],
        [mm.id, p1.id],
      ] as const) {
        if (!fuse || v === mm.id) {
          expect(last(input), `%${input} dies at the kernel of %${v}`).toBe(p.kernels.indexOf(of(v)));
          expect(of(v).inPlace).toBeUndefined();
        }
      }
      for (const k of p.kernels) {
        const ops = k.wgsl.split("\n")[0];
        if (/reduce|matmul|permute/.test(ops)) expect(k.inPlace, ops).toBeUndefined();
      }
      // …while the elementwise kernels after them are written in place.
      expect(of(graph.outputs[0].id).inPlace).toBeDefined();
    }
  });

  test("an output early in the schedule is never overwritten by later values", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [256]);
    const h = x.exp();
    let v = h;
    for (let i = 0; i < 6; i++) v = v.neg().tanh();
    const p = compile(g.build({ h, y: v }), { fuse: false });
    const plan = planMemory(p, {}, { alignment: 256, maxBufferSize: 2 ** 20 });
    // h is written over x (x dies at its kernel); as an output it is never written over itself.
    const out = plan.placements.find((q) => q.value === h.id || q.members.includes(h.id))!;
    expect(p.kernels.some((k) => k.inPlace === h.id)).toBe(false);
    expect(out.end).toBe(p.kernels.length);
    for (const q of plan.placements) {
      if (q.value !== out.value) expect(q.offset + q.size <= out.offset || out.offset + out.size <= q.offset).toBe(true);
    }
  });

  test("constants and resident state keep their own buffers; inputs and temporaries share the arena", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 3]);
    const w = g.input("w", "f32", [3, 2]);
    const c = g.constant([1, 2], "f32", [2]);
    const loss = x.matmul(w).add(c).tanh().mean();
    const [dw] = grad(loss, [w]);
    const p = compile(g.build({ loss, w_next: w.sub(dw.mul(0.1)) }), { state: { w: "w_next" } });
    const names = new Set(
      [...arenaValues(p)].map((v) => (p.graph.nodes[v].op === "input" ? (p.graph.nodes[v] as Node<"input">).attrs.name : "temp")),
    );
    expect(names.has("x")).toBe(true);
    expect(names.has("w")).toBe(false);
    expect([...arenaValues(p)].some((v) => p.graph.nodes[v].op === "const")).toBe(false);
    const plan = memoryReport(p, { B: 128 });
    expect(plan.ownBytes).toBe(6 * 4 + 2 * 4);
    checkPlan(p, { B: 128 }, plan, { alignment: 256, maxBufferSize: 256 * 2 ** 20 });
  });

  test("zero-size tensors take one aligned unit each", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 3]);
    const p = compile(g.build({ y: x.exp().neg() }), { fuse: false, inPlace: false });
    const plan = memoryReport(p, { B: 0 });
    expect(plan.placements.map((q) => [q.bytes, q.size])).toEqual([
      [0, 256],
      [0, 256],
      [0, 256],
    ]);
    checkPlan(p, { B: 0 }, plan, DEFAULT);
  });

  test("the plan is made once, in the pipeline, at the declared dims; other dims or a device's limits plan with the same code", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 64]);
    const graph = g.build({ y: x.exp().sum(1).add(1).tanh() });
    const p = compile(graph, { dims: { B: 128 } });
    expect(p.memory).toEqual(planMemory(p, { B: 128 }));
    expect(planFor(p, { B: 128 })).toBe(p.memory);
    // A device with a smaller alignment can use it too (256 is a multiple of 16); not one with a larger.
    expect(planFor(p, { B: 128 }, { alignment: 16, maxBufferSize: 2 ** 28 })).toBe(p.memory);
    expect(planFor(p, { B: 128 }, { alignment: 512, maxBufferSize: 2 ** 28 })).toEqual(
      planMemory(p, { B: 128 }, { alignment: 512, maxBufferSize: 2 ** 28 }),
    );
    expect(planFor(p, { B: 64 })).toEqual(planMemory(p, { B: 64 }));
    expect(compile(graph).memory).toBeUndefined(); // open dims: the runtime plans per binding
  });

  test("a value too large for a buffer is an error naming it", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 1024]);
    const p = compile(g.build({ y: x.exp() }));
    expect(() => planMemory(p, { B: 1 << 16 }, { alignment: 256, maxBufferSize: 2 ** 20 })).toThrow(
      /^input %0 @ plan-memory\.test\.ts:\d+: f32\[B,1024\] with \{"B":65536\} is 268435456 bytes; a buffer holds at most 1048576$/,
    );
  });

  test("a value bound twice by one kernel stays out of the arena, with its in-place chain", () => {
    for (const inPlace of [false, true]) {
      const p = chain(inPlace);
      const k = p.kernels[3];
      const twice: Program = { ...p, kernels: p.kernels.map((q) => (q === k ? { ...k, bindings: [k.bindings[0], ...k.bindings] } : q)) };
      const root = inPlace ? 0 : k.bindings[0].value; // the chain's range is x's
      expect(arenaValues(twice).has(root)).toBe(false);
      expect(arenaValues(p).has(root)).toBe(true);
      expect(memoryReport(twice, {}).ownBytes).toBe(4096); // one buffer of its own (with inPlace, the whole chain's)
    }
  });
});
