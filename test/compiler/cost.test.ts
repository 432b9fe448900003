import { describe, expect, test } from "vitest";
import { kernelCost, kernelGroups, kernelNodes } from "../../compiler/cost.ts";
import { compile } from "../../compiler/pipeline.ts";
import type { Program } from "../../compiler/program.ts";
import { forwardNodes, savedForBackward } from "../../compiler/saved-values.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import { grad } from "../../src/api/grad.ts";

const costOf = (p: Program, op: string, env = {}) => {
  const k = p.kernels.find((k) => p.graph.nodes[k.output].op === op);
  if (!k) throw new Error(`no ${op} kernel in ${p.kernels.map((k) => k.name).join(", ")}`);
  return kernelCost(p, k, env);
};

describe("kernel cost model", () => {
  test("matmul: 2·M·N·K FLOPs; bytes are the bound buffers read and written", () => {
    const g = new GraphBuilder();
    const y = g.input("x", "f32", ["B", 784]).matmul(g.input("w", "f32", [784, 500]));
    const p = compile(g.build({ y }));
    expect(costOf(p, "matmul", { B: 128 })).toEqual({
      flops: 2 * 128 * 500 * 784,
      bytesRead: 4 * (128 * 784 + 784 * 500),
      bytesWritten: 4 * 128 * 500,
    });
  });

  test("batched matmul counts every batch", () => {
    const g = new GraphBuilder();
    const p = compile(g.build({ y: g.input("a", "f32", [3, 4, 5]).matmul(g.input("b", "f32", [3, 5, 6])) }));
    expect(costOf(p, "matmul").flops).toBe(2 * 3 * 4 * 6 * 5);
  });

  test("conv2d and both its gradients: 2·N·OH·OW·KH·KW·Cin·Cout each", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [2, 8, 8, 3]);
    const f = g.input("f", "f32", [3, 3, 3, 4]);
    const y = x.conv2d(f); // [2, 6, 6, 4]
    const loss = y.mul(y).sum();
    const [gx, gf] = grad(loss, [x, f]);
    const p = compile(g.build({ loss, gx, gf }));
    const want = 2 * 2 * 6 * 6 * 3 * 3 * 3 * 4;
    expect(costOf(p, "conv2d").flops).toBe(want);
    expect(costOf(p, "conv2d_grad_input").flops).toBe(want);
    expect(costOf(p, "conv2d_grad_filter").flops).toBe(want);
  });

  test("elementwise: fused ops × output elements; index ops are free", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 4]);
    const y = x
      .mul(2)
      .add(g.input("b", "f32", [4]))
      .tanh()
      .transpose();
    const p = compile(g.build({ y: y.exp() }));
    // tanh feeds a transpose, so it is written out; the exp reads it through a strided load.
    expect(p.kernels.map((k) => kernelCost(p, k, { B: 5 }).flops)).toEqual([3 * 5 * 4, 1 * 5 * 4]);
  });

  test("reduction: input elements, plus its fused prologue once per element", () => {
    const g = new GraphBuilder();
    const p = compile(g.build({ s: g.input("x", "f32", [4, 5]).exp().sum(1) }));
    expect(p.kernels).toHaveLength(1);
    expect(kernelCost(p, p.kernels[0], {})).toEqual({ flops: 20 + 20, bytesRead: 80, bytesWritten: 16 });
  });

  test("pooling: window × output elements", () => {
    const g = new GraphBuilder();
    const p = compile(g.build({ y: g.input("x", "f32", [2, 8, 8, 3]).maxPool2d([2, 2]) }));
    expect(costOf(p, "max_pool2d").flops).toBe(4 * 2 * 4 * 4 * 3);
  });

  test("kernel groups: a fused kernel holds its root and the values inlined into it", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [4]);
    const y = x.mul(2).exp();
    const p = compile(g.build({ y }));
    const nodes = kernelNodes(p, p.kernels[0]);
    expect(nodes.map((id) => p.graph.nodes[id].op)).toEqual(["const", "mul", "exp"]);
    expect(kernelGroups(p)).toEqual([{ name: expect.stringMatching(/^k0 = fused\[mul, exp\] -> %\d+, f32\[4\]/), nodes }]);
  });
});

describe("values saved for the backward pass", () => {
  test("an MLP keeps its hidden activations, not its inputs or pre-activations", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [8, 6]);
    const w1 = g.input("w1", "f32", [6, 5]);
    const w2 = g.input("w2", "f32", [5, 3]);
    const loss = x.matmul(w1).relu().matmul(w2).mul(0.5).sum();
    const [g1, g2] = grad(loss, [w1, w2]);
    const p = compile(g.build({ loss, g1, g2 }));
    const fwd = forwardNodes(p.graph);
    const saved = savedForBackward(p, {});
    // relu(x·w1), written by the fused matmul kernel: the backward reads its ReLU mask and
    // multiplies by it for w2's gradient.
    expect(saved.map((s) => p.graph.nodes[s.value].op)).toEqual(["relu"]);
    expect(saved.every((s) => fwd[s.value])).toBe(true);
    expect(saved[0].bytes).toBe(8 * 5 * 4);
    expect(saved[0].readers.length).toBeGreaterThan(0);
  });

  test("a forward-only graph saves nothing", () => {
    const g = new GraphBuilder();
    const p = compile(g.build({ out: g.input("x", "f32", [4]).exp().sum() }));
    expect(savedForBackward(p, {})).toEqual([]);
  });
});
