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
import { describe, expect, test } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { CPU_TARGET, GPU_TARGET } from "../../compiler/target.ts";
import { lenet, lenetShapes, mlp, mlpShapes, buildStep } from "../../examples/models/networks.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import type { Graph } from "../../src/ir/types.ts";
import { mismatch, runGpu, useGpu } from "../helpers/gpu.ts";

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
      for (const b of k.bindings) expect(k.wgsl).toContain(`v${b.value}: array<${half.has(b.value) ? "f16" : "f32"}>`);
    }
    // The arena's f16 values take 2 bytes an element, the rest 4.
    for (const x of p.memory!.placements) {
      const n = (graph.nodes[x.value].type.shape as number[]).reduce((a, d) => a * d, 1);
      expect(x.bytes).toBe(n * (half.has(x.value) ? 2 : 4));
    }
    const f32 = compile(graph, { target: CPU_TARGET, state });
    expect(p.memory!.arenaBytes).toBeLessThan(f32.memory!.arenaBytes);
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
