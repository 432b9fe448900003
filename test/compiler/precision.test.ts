/** Mixed precision (compiler/precision.ts) on Dawn against the float64 reference: activations
 *  stored as f16, arithmetic and accumulation in f32.
 *
 *  Tolerances: an f16 store rounds to 11 significant bits, a relative error ≤ u = 2⁻¹¹ ≈ 4.9e-4.
 *  A value that went through r stores, each feeding a sum of products, is off by at most about
 *  r·u·Σ|terms| — for the dense and conv layers here, whose terms mostly share a sign after a
 *  relu, Σ|terms| is within a small factor of the output's own scale. Each test states r and
 *  compares |gpu − ref| ≤ atol + rtol·|ref| with rtol = r·u and atol = r·u·S·c, S the largest
 *  |ref| of that output and c a cancellation factor of 2 (products of mixed signs). f32's own
 *  error (≈ 6e-8 a rounding) is far below. */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { resolvePrecision } from "../../compiler/precision.ts";
import { requiredFeatures } from "../../compiler/program.ts";
import { CPU_TARGET, GPU_TARGET } from "../../compiler/target.ts";
import { lenet, lenetShapes, mlp, mlpShapes, buildStep } from "../../examples/models/networks.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import type { Graph } from "../../src/ir/types.ts";
import { Executable } from "../../runtime/execute.ts";
import { host } from "../helpers/data.ts";
import { checkDotBound } from "../helpers/dot-bound.ts";
import { GEMM_TARGETS, mismatch, runGpu, runsFor, useGpu } from "../helpers/gpu.ts";

useGpu();

/** u: f16's unit roundoff (11 significant bits). */
const U = 2 ** -11;

const wave = (n: number, s: number, scale = 1) => Array.from({ length: n }, (_, i) => Math.sin(i * 1.37 + s * 2.1) * scale);

/** Inputs of every input node: x of `scale`, weights scaled by 1/√fan-in (fan-in: first dims). */
function inputsOf(graph: Graph, scale = 1): Record<string, HostTensor> {
  return Object.fromEntries(
    graph.nodes
      .filter((n) => n.op === "input")
      .map((n, j) => {
        const shape = n.type.shape as number[];
        const size = shape.reduce((a, d) => a * d, 1);
        const fanIn = shape.length > 1 ? size / shape[shape.length - 1] : 4;
        const name = (n.attrs as { name: string }).name;
        return [name, { shape, data: wave(size, j, name === "x" ? scale : 1 / Math.sqrt(fanIn)) }];
      }),
  );
}

/** GPU (mixed) against float64, with r stores on the longest path (see the header). */
async function expectMixed(graph: Graph, inputs: Record<string, HostTensor>, r: number, target = CPU_TARGET): Promise<void> {
  const ref = interpret(graph, inputs);
  const gpu = await runGpu(graph, inputs, { target, precision: "mixed" });
  for (const [name, t] of Object.entries(ref)) {
    const scale = Math.max(...Array.from(t.data, Math.abs));
    const m = mismatch(graph, { [name]: gpu[name] }, { [name]: t }, { atol: r * U * scale * 2, rtol: r * U });
    if (m) throw new Error(m);
  }
}

describe("what mixed precision stores as f16", () => {
  const forward = () => buildStep({ kind: "forward", lr: 0 }, mlp, { x: { shape: [4, 784] }, ...mlpShapes() });

  test("activations between kernels are f16; inputs, outputs, weights and reductions stay f32", () => {
    const { graph, state } = forward();
    const p = compile(graph, { target: CPU_TARGET, state, precision: "mixed" });
    const half = new Set(p.half);
    expect(half.size).toBe(2); // the two hidden layers' relu(x·W + b)
    for (const v of half) expect(graph.nodes[v].op).toBe("relu");
    const out = graph.outputs[0].id;
    expect(half.has(out)).toBe(false);
    for (const k of p.kernels) {
      const f16 = k.bindings.some((b) => half.has(b.value));
      expect(k.wgsl.includes("enable f16;")).toBe(f16);
      expect(k.features ?? []).toEqual(f16 ? ["shader-f16"] : []);
      // An f32 value a GEMM reads four at a time is declared as vec4s (KernelBuilder.value4); an f16 one never.
      for (const b of k.bindings)
        expect(k.wgsl).toMatch(half.has(b.value) ? `v${b.value}: array<f16>` : new RegExp(`v${b.value}: array<(f32|vec4<f32>)>`));
    }
    // The arena's f16 values take 2 bytes an element, the rest 4.
    for (const x of p.memory!.placements) {
      const n = (graph.nodes[x.value].type.shape as number[]).reduce((a, d) => a * d, 1);
      expect(x.bytes).toBe(n * (half.has(x.value) ? 2 : 4));
    }
    const f32 = compile(graph, { target: CPU_TARGET, state });
    expect(p.memory!.arenaBytes).toBeLessThan(f32.memory!.arenaBytes);
    expect(requiredFeatures(p)).toEqual(["shader-f16"]);
    expect(requiredFeatures(f32)).toEqual([]);
  });

  test("a reduction's output stays f32, its row epilogue (softmax's division) is f16", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [3, 9]);
    const e = x.mul(2).exp();
    const s = e.div(e.sum([1], true));
    const graph = g.build({ y: s.mul(3).sum([1]) });
    const p = compile(graph, { target: CPU_TARGET, precision: "mixed" });
    for (const v of p.half ?? []) expect(graph.nodes[v].op).not.toBe("sum");
  });

  test("f32 compiles exactly as before: no f16 anywhere", () => {
    const { graph, state } = forward();
    const p = compile(graph, { target: CPU_TARGET, state });
    expect(p.half).toBeUndefined();
    for (const k of p.kernels) expect(k.wgsl).not.toMatch(/f16/);
  });

  test('"auto" is mixed on a GPU whose adapter has shader-f16, f32 on a CPU rasterizer or without it', () => {
    const f16 = new Set(["shader-f16"]);
    expect(resolvePrecision("auto", { target: GPU_TARGET, features: f16 })).toBe("mixed");
    expect(resolvePrecision("auto", { target: GPU_TARGET, features: new Set() })).toBe("f32");
    expect(resolvePrecision("auto", { target: CPU_TARGET, features: f16 })).toBe("f32");
    expect(resolvePrecision("mixed", { target: CPU_TARGET, features: new Set() })).toBe("mixed");
  });

  test("a precision that is neither is refused", () => {
    const { graph } = forward();
    expect(() => compile(graph, { precision: "f16" as never })).toThrow(/precision must be "f32" or "mixed"/);
  });
});

describe("mixed precision on Dawn against float64", () => {
  test.each([
    ["cpu", CPU_TARGET],
    ["gpu", GPU_TARGET],
  ] as const)("MLP 784-500-500-10 forward, batch 5, %s target: 2 stores on the path", async (_, target) => {
    const { graph } = buildStep({ kind: "forward", lr: 0 }, mlp, { x: { shape: [5, 784] }, ...mlpShapes() });
    await expectMixed(graph, inputsOf(graph), 2, target);
  });

  test("LeNet-5 forward, batch 3: 6 stores on the path (conv, pool, conv, pool, dense, dense)", async () => {
    const { graph } = buildStep({ kind: "forward", lr: 0 }, lenet, { x: { shape: [3, 28, 28, 1] }, ...lenetShapes() });
    await expectMixed(graph, inputsOf(graph), 6);
  });
});

/** Properties over kernels whose input is an f16 intermediate: h = x·w (a GEMM's output, stored
 *  f16 since another kernel reads it), then the kernel under test over h. Its error against
 *  float64 is bounded per element: h's store is off by ≤ u·|h| and every kernel after it is
 *  linear in h (sums, broadcast products, max, relu are 1-Lipschitz), so the output is off by
 *  ≤ u·m + (K+1)·2⁻²⁴·m, m the same graph on |inputs| (Σ|terms|, tight where signs cancel),
 *  the second term f32's own dot-product error (test/ops/matmul.test.ts). A wrong index or a
 *  lost conversion is off by whole terms, far past it. */
async function expectF16Bound(graph: Graph, inputs: Record<string, HostTensor>, k: number, target = CPU_TARGET): Promise<void> {
  const p = compile(graph, { target, precision: "mixed", verifyEach: true });
  expect(p.half?.length ?? 0).toBeGreaterThan(0);
  const exe = await Executable.load(p);
  checkDotBound(graph, inputs, await exe.run(inputs).finally(() => exe.dispose()), k, U);
}

/** Odd sizes, 1 included, and some past one GEMM tile. */
const side = fc.oneof(fc.integer({ min: 1, max: 13 }), fc.integer({ min: 60, max: 70 }));
const wide = fc.oneof(fc.integer({ min: 2, max: 13 }), fc.integer({ min: 60, max: 70 }));

describe.each(GEMM_TARGETS)("f16 intermediates, $name", ({ target, share }) => {
  test("elementwise with broadcasting over an f16 GEMM output: relu(h·c + d), c [N], d [M,1]", async () => {
    await fc.assert(
      fc.asyncProperty(side, side, side, fc.integer({ min: 0, max: 99 }), async (m, k, n, seed) => {
        const g = new GraphBuilder();
        const [x, w] = [g.input("x", "f32", [m, k]), g.input("w", "f32", [k, n])];
        const [c, d] = [g.input("c", "f32", [n]), g.input("d", "f32", [m, 1])];
        const h = x.matmul(w);
        // h is read by two kernels (the elementwise one and the sum), so it is stored.
        const graph = g.build({ y: h.mul(c).add(d).relu(), s: h.sum([0]) });
        const inputs = { x: host([m, k], seed), w: host([k, n], seed + 1), c: host([n], seed + 2), d: host([m, 1], seed + 3) };
        await expectF16Bound(graph, inputs, k, target);
      }),
      { numRuns: runsFor(6, share) },
    );
  });

  test("matmul reading an f16 matrix: relu(x·w)·v", async () => {
    await fc.assert(
      fc.asyncProperty(side, side, side, side, fc.integer({ min: 0, max: 99 }), async (m, k, j, n, seed) => {
        const g = new GraphBuilder();
        const graph = g.build({
          y: g
            .input("x", "f32", [m, k])
            .matmul(g.input("w", "f32", [k, j]))
            .relu()
            .matmul(g.input("v", "f32", [j, n])),
        });
        const inputs = { x: host([m, k], seed), w: host([k, j], seed + 1), v: host([j, n], seed + 2) };
        // Two dot products in f32 (lengths k and j) around one f16 store.
        await expectF16Bound(graph, inputs, k + j, target);
      }),
      { numRuns: runsFor(6, share) },
    );
  });

  test("reductions over an f16 matrix: sum, mean and max along either axis", async () => {
    await fc.assert(
      // m, n ≥ 2: a sum over a size-1 axis simplifies to h itself, an output (f32), and nothing is f16.
      fc.asyncProperty(wide, side, wide, fc.constantFrom(0, 1), fc.integer({ min: 0, max: 99 }), async (m, k, n, axis, seed) => {
        const g = new GraphBuilder();
        const h = g.input("x", "f32", [m, k]).matmul(g.input("w", "f32", [k, n]));
        const graph = g.build({ s: h.sum([axis]), a: h.mean([axis], true), x: h.relu().max([axis]) });
        const inputs = { x: host([m, k], seed), w: host([k, n], seed + 1) };
        await expectF16Bound(graph, inputs, k + Math.max(m, n), target);
      }),
      { numRuns: runsFor(6, share) },
    );
  });
});
