/** In-place writes (compiler/codegen.ts, Kernel.inPlace): a training step's update kernel
 *  writes the parameter's resident buffer directly when that is safe, and falls back to the
 *  copy after the run when it is not; and a kernel stores its output over an arena value that
 *  dies there (a temporary, or a non-resident input), the two placed as one range. */
import { describe, expect, test } from "vitest";
import { compile, type CompileOptions } from "../../compiler/pipeline.ts";
import { inPlaceRoots, type Program } from "../../compiler/program.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import type { Graph } from "../../src/ir/types.ts";
import { Executable } from "../../runtime/execute.ts";
import { buildStep, mlp } from "../../examples/models/networks.ts";
import { floats, host } from "../helpers/data.ts";
import { mismatch, useGpu } from "../helpers/gpu.ts";

useGpu();

/** A small MLP 12-16-16-4 at batch 8 (the bench's network, scaled down). */
const SHAPES: Record<string, { shape: number[] }> = {
  x: { shape: [8, 12] },
  y: { shape: [8, 4] },
  w1: { shape: [12, 16] },
  b1: { shape: [16] },
  w2: { shape: [16, 16] },
  b2: { shape: [16] },
  w3: { shape: [16, 4] },
  b3: { shape: [4] },
};
const PARAMS = ["w1", "b1", "w2", "b2", "w3", "b3"];

function batch(step: number): Record<string, HostTensor> {
  const labels = Array.from({ length: 8 * 4 }, (_, i) => (i % 4 === (Math.floor(i / 4) + step) % 4 ? 1 : 0));
  return { x: host([8, 12], 100 + step), y: { shape: [8, 4], data: labels } };
}

const initial = (): Record<string, HostTensor> => Object.fromEntries(PARAMS.map((p, i) => [p, host(SHAPES[p].shape, 7 + i)]));

/** Run `steps` SGD steps; the parameters read back, and the program. */
async function train(
  steps: number,
  opts: CompileOptions,
): Promise<{ weights: Record<string, number[]>; program: Program; losses: number[] }> {
  const { graph, state } = buildStep({ kind: "train", lr: 0.1 }, mlp, SHAPES);
  const program = compile(graph, { state, ...opts });
  const exe = await Executable.load(program);
  try {
    for (const [p, t] of Object.entries(initial())) await exe.write(p, t);
    const losses: number[] = [];
    for (let s = 0; s < steps; s++) losses.push((await exe.run(batch(s))).out.data[0]);
    const weights = Object.fromEntries(await Promise.all(PARAMS.map(async (p) => [p, Array.from((await exe.read(p)).data)] as const)));
    return { weights, program, losses };
  } finally {
    exe.dispose();
  }
}

/** Load `graph` with `state`, write `w`, run `runs` times; outputs of each run and w after. */
async function runSteps(
  graph: Graph,
  state: Record<string, string | null>,
  w: HostTensor,
  inputs: Record<string, HostTensor>,
  runs: number,
  outputs?: string[],
  opts: CompileOptions = { inPlace: true },
) {
  const program = compile(graph, { state, ...opts });
  const exe = await Executable.load(program);
  try {
    await exe.write("w", w);
    const outs = [];
    for (let r = 0; r < runs; r++) outs.push(await exe.run(inputs, outputs));
    return { program, outs, w: Array.from((await exe.read("w")).data) };
  } finally {
    exe.dispose();
  }
}

const inPlaceInputs = (p: Program): string[] => p.state.filter((u) => u.inPlace).map((u) => u.input);

describe("in-place state updates", () => {
  test("an MLP training step updates every parameter in place, bit-identical to the copy, and matches float64", async () => {
    const on = await train(5, { inPlace: true });
    const off = await train(5, { inPlace: false });
    expect(inPlaceInputs(on.program).sort()).toEqual([...PARAMS].sort());
    expect(inPlaceInputs(off.program)).toEqual([]);
    const step = buildStep({ kind: "train", lr: 0.1 }, mlp, SHAPES);
    expect(inPlaceInputs(compile(step.graph, { state: step.state })).sort()).toEqual([...PARAMS].sort()); // on by default
    expect(off.program.kernels.some((k) => k.inPlace !== undefined)).toBe(false);
    for (const p of PARAMS) expect(on.weights[p]).toEqual(off.weights[p]);
    expect(on.losses).toEqual(off.losses);

    // The first step against the float64 oracle.
    const first = await train(1, { inPlace: true });
    const { graph } = buildStep({ kind: "train", lr: 0.1 }, mlp, SHAPES);
    const ref = interpret(graph, { ...initial(), ...batch(0) });
    for (const p of PARAMS) {
      const want = Array.from(ref[`${p}_next`].data);
      first.weights[p].forEach((v, i) => expect(Math.abs(v - want[i])).toBeLessThan(1e-5 + 1e-4 * Math.abs(want[i])));
    }
    // The update changed the weights: the comparison above is not with the initial values.
    expect(first.weights.w1).not.toEqual(initial().w1.data);
  });

  test("the in-place kernel binds the resident buffer once, read_write, and its output gets no buffer", async () => {
    const { graph, state } = buildStep({ kind: "train", lr: 0.1 }, mlp, SHAPES);
    const program = compile(graph, { state, inPlace: true });
    const inputId = (name: string) => graph.nodes.findIndex((n) => n.op === "input" && (n.attrs as { name: string }).name === name);
    const params = new Set(PARAMS.map(inputId));
    const ips = program.kernels.filter((k) => params.has(k.inPlace!));
    expect(ips).toHaveLength(PARAMS.length);
    for (const k of ips) {
      const w = k.inPlace!;
      expect(k.bindings.filter((b) => b.value === w)).toEqual([{ value: w, access: "read_write" }]);
      expect(k.bindings.some((b) => b.value === k.output)).toBe(false);
      expect(k.wgsl.match(new RegExp(`var<storage, [a-z_]+> v${w}:`, "g"))).toHaveLength(1);
      expect(k.wgsl).not.toMatch(new RegExp(`\\bv${k.output}\\[`));
      // The store and the read of w are at one element: `v1[e] = (v1[e] - …)`.
      expect(k.wgsl).toMatch(new RegExp(`v${w}\\[[^\\n]*\\] = \\(v${w}\\[`));
      // No later kernel reads the parameter.
      const at = program.kernels.indexOf(k);
      expect(program.kernels.slice(at + 1).some((l) => l.bindings.some((b) => b.value === w))).toBe(false);
    }
    expect(ips.map((k) => k.inPlace).sort((a, b) => a! - b!)).toEqual(PARAMS.map(inputId).sort((a, b) => a - b));
    const exe = await Executable.load(program);
    try {
      for (const [p, t] of Object.entries(initial())) await exe.write(p, t);
      await exe.run(batch(0));
      const placed = new Set(exe.memoryPlan!.placements.map((p) => p.value));
      for (const k of ips) expect(placed.has(k.output)).toBe(false);
    } finally {
      exe.dispose();
    }
  });

  describe("unsafe updates fall back to the copy and stay correct", () => {
    const W = [1, 2, 3, 4, 5, 6, 7, 8, 9];
    const transpose = (m: number[]) => [0, 3, 6, 1, 4, 7, 2, 5, 8].map((i) => m[i]);
    const matmul = (a: number[], b: number[]) =>
      Array.from({ length: 9 }, (_, i) => [0, 1, 2].reduce((s, k) => s + a[Math.floor(i / 3) * 3 + k] * b[k * 3 + (i % 3)], 0));

    test("an update that reads w transposed", async () => {
      const g = new GraphBuilder();
      const w = g.input("w", "f32", [3, 3]);
      const graph = g.build({ w_next: w.transpose().sub(w.mul(0.5)) });
      const { program, w: after } = await runSteps(graph, { w: "w_next" }, { shape: [3, 3], data: W }, {}, 3);
      let want = W;
      for (let r = 0; r < 3; r++) want = transpose(want).map((v, i) => v - 0.5 * want[i]);
      expect(after).toEqual(want.map(Math.fround));
      expect(inPlaceInputs(program)).toEqual([]);
    });

    test("an update whose GEMM reads w as an operand", async () => {
      const g = new GraphBuilder();
      const w = g.input("w", "f32", [3, 3]);
      const graph = g.build({ w_next: w.sub(w.matmul(w).mul(0.01)) });
      const { program, w: after } = await runSteps(graph, { w: "w_next" }, { shape: [3, 3], data: W }, {}, 2);
      let want = W;
      for (let r = 0; r < 2; r++) want = matmul(want, want).map((v, i) => want[i] - 0.01 * v);
      after.forEach((v, i) => expect(v).toBeCloseTo(want[i], 4));
      expect(inPlaceInputs(program)).toEqual([]);
    });

    test("an update whose input is read by a later kernel", async () => {
      const g = new GraphBuilder();
      const x = g.input("x", "f32", [2, 3]);
      const w = g.input("w", "f32", [3, 3]);
      const w_next = w.mul(0.5);
      const graph = g.build({ w_next, y: x.matmul(w) });
      const x0 = floats(6, 3);
      const {
        program,
        outs,
        w: after,
      } = await runSteps(graph, { w: "w_next" }, { shape: [3, 3], data: W }, { x: { shape: [2, 3], data: x0 } }, 2);
      // The update's kernel comes first; the matmul after it reads the old w.
      const at = (id: number) => program.kernels.findIndex((k) => k.output === id);
      expect(at(w_next.id)).toBeLessThan(program.kernels.length - 1);
      let cur = W;
      for (const out of outs) {
        const want = [0, 1].flatMap((r) => [0, 1, 2].map((c) => [0, 1, 2].reduce((s, k) => s + x0[r * 3 + k] * cur[k * 3 + c], 0)));
        Array.from(out.y.data).forEach((v, i) => expect(v).toBeCloseTo(want[i], 5));
        cur = cur.map((v) => v * 0.5);
      }
      expect(after).toEqual(cur);
      expect(inPlaceInputs(program)).toEqual([]);
    });

    test("an update whose output is read by a later kernel", async () => {
      const g = new GraphBuilder();
      const w = g.input("w", "f32", [3, 3]);
      const w_next = w.mul(2);
      const graph = g.build({ w_next, s: w_next.sum() });
      const { program, outs, w: after } = await runSteps(graph, { w: "w_next" }, { shape: [3, 3], data: W }, {}, 2);
      expect(outs.map((o) => o.s.data[0])).toEqual([90, 180]);
      expect(after).toEqual(W.map((v) => v * 4));
      expect(inPlaceInputs(program)).toEqual([]);
    });

    test("an update of an input that is also read back as an output", async () => {
      const g = new GraphBuilder();
      const w = g.input("w", "f32", [3, 3]);
      const graph = g.build({ w_next: w.add(1), w });
      const { program, outs, w: after } = await runSteps(graph, { w: "w_next" }, { shape: [3, 3], data: W }, {}, 2);
      // Outputs are this run's values: w as it was.
      expect(Array.from(outs[1].w.data)).toEqual(W.map((v) => v + 1));
      expect(after).toEqual(W.map((v) => v + 2));
      expect(inPlaceInputs(program)).toEqual([]);
    });
  });

  test("an in-place update requested as an output reads the resident buffer: the new value", async () => {
    const g = new GraphBuilder();
    const w = g.input("w", "f32", [3, 3]);
    const d = g.input("d", "f32", [3, 3]);
    const graph = g.build({ w_next: w.sub(d.mul(0.5)) });
    const dd = floats(9, 11);
    for (const inPlace of [true, false]) {
      const {
        program,
        outs,
        w: after,
      } = await runSteps(graph, { w: "w_next" }, { shape: [3, 3], data: floats(9, 5) }, { d: { shape: [3, 3], data: dd } }, 3, ["w_next"], {
        inPlace,
      });
      expect(inPlaceInputs(program)).toEqual(inPlace ? ["w"] : []);
      expect(Array.from(outs[2].w_next.data)).toEqual(after);
    }
  });
});

describe("in-place reuse of dying arena values", () => {
  /** x[B, 64] → 6 unary ops, unfused: a kernel each, every one elementwise. */
  function chain(): Graph {
    const g = new GraphBuilder();
    let v = g.input("x", "f32", ["B", 64]);
    for (let i = 0; i < 6; i++) v = [(t: typeof v) => t.sin(), (t: typeof v) => t.mul(1.5), (t: typeof v) => t.tanh()][i % 3](v);
    return g.build({ y: v });
  }

  test("an unfused elementwise chain shares one range, and matches float64 at two batch sizes", async () => {
    const graph = chain();
    const program = compile(graph, { fuse: false });
    expect(program.kernels).toHaveLength(6);
    // Each kernel stores over the input dying there: x, then the chain over x's range.
    expect(program.kernels.map((k) => k.inPlace)).toEqual(program.kernels.map((k) => program.graph.nodes[k.output].inputs[0]));
    expect(new Set(inPlaceRoots(program).values())).toEqual(new Set([0]));
    const exe = await Executable.load(program);
    try {
      let most = 0;
      for (const b of [5, 17, 5]) {
        most = Math.max(most, b);
        const inputs = { x: host([b, 64], b) };
        const out = await exe.run(inputs);
        expect(mismatch(graph, out, interpret(graph, inputs), { atol: 1e-6, rtol: 1e-5 })).toBeUndefined();
        const plan = exe.memoryPlan!;
        expect(plan.placements.map((q) => [q.value, q.members])).toEqual([[0, program.kernels.map((k) => k.output)]]);
        expect(plan.arenaBytes).toBe(most * 64 * 4); // one tensor, at the largest batch seen
      }
    } finally {
      exe.dispose();
    }
    const off = compile(graph, { fuse: false, inPlace: false });
    expect(off.kernels.some((k) => k.inPlace !== undefined)).toBe(false);
  });

  test("an input written over is uploaded again each run; a resident one without an update never is written over", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [4, 8]);
    const r = g.input("r", "f32", [4, 8]);
    const graph = g.build({ y: x.exp().mul(r.neg()) });
    const program = compile(graph, { fuse: false, state: { r: null } });
    const over = (v: number) => program.kernels.some((k) => k.inPlace === v);
    expect(over(x.id)).toBe(true);
    expect(over(r.id)).toBe(false);
    const exe = await Executable.load(program);
    try {
      const rv = host([4, 8], 3);
      await exe.write("r", rv);
      for (const seed of [1, 2, 1]) {
        const inputs = { x: host([4, 8], seed) };
        const out = await exe.run(inputs);
        expect(mismatch(graph, out, interpret(graph, { ...inputs, r: rv }), { atol: 1e-6, rtol: 1e-5 })).toBeUndefined();
      }
      expect(Array.from((await exe.read("r")).data)).toEqual(rv.data);
    } finally {
      exe.dispose();
    }
  });
});
