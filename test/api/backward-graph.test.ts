/** The backward graph after simplification is the one a textbook writes. Each test builds the
 *  gradient with `grad` and, in the same graph, the textbook's formula by hand; after the
 *  compiler's passes (simplify, fold-constants, cse to a fixpoint, dce) the two must be the same
 *  node — not merely equal in value — so no extra work hides in the generated gradient. */
import { describe, expect, test } from "vitest";
import { PASSES } from "../../compiler/pipeline.ts";
import { GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import { softmax, softmaxCrossEntropy, sparseSoftmaxCrossEntropy } from "../../src/api/composites.ts";
import { grad } from "../../src/api/grad.ts";
import { printGraph } from "../../src/ir/print.ts";
import type { Graph } from "../../src/ir/types.ts";

const ctx = { maxStorageBuffers: 8 };
const optimize = (graph: Graph): Graph => PASSES.reduce((g, p) => p.run(g, ctx), graph);
const idOf = (g: Graph, name: string): number => g.outputs.find((o) => o.name === name)!.id;
const count = (g: Graph, op: string): number => g.nodes.filter((n) => n.op === op).length;

/** Outputs `name` and `textbook_name` must be one node after the passes. */
function expectSameNodes(graph: Graph, names: readonly string[]): Graph {
  const g = optimize(graph);
  for (const name of names) {
    if (idOf(g, name) !== idOf(g, `textbook_${name}`)) {
      throw new Error(`${name}: %${idOf(g, name)} is not the textbook's %${idOf(g, `textbook_${name}`)}\n${printGraph(g)}`);
    }
  }
  return g;
}

describe("softmax cross-entropy: the gradient wrt the logits is (p − y) / batch", () => {
  test("dense labels, static batch: the same node as softmax(z).sub(y).div(B)", () => {
    const b = new GraphBuilder();
    const z = b.input("z", "f32", [32, 10]);
    const y = b.input("y", "f32", [32, 10]);
    const loss = softmaxCrossEntropy(z, y);
    const [dz] = grad(loss, [z]);
    const g = expectSameNodes(b.build({ loss, dz, textbook_dz: softmax(z).sub(y).div(32) }), ["dz"]);
    // Beyond the forward pass the gradient costs p = e / Σe (both from the forward), p − y and ·1/B.
    expect(
      printGraph(g)
        .split("\n")
        .filter((l) => l.includes("= ") && !l.startsWith("%0") && !l.startsWith("%1:"))
        .slice(-4)
        .join("\n"),
    ).toMatch(/const value=0\.03125 .*\n.*= div %5, %6 .*\n.*= sub %\d+, %1 .*\n.*= mul %\d+, %\d+ /);
    expect(g.nodes.length).toBe(17); // 13 forward (loss) + 4
  });

  test("symbolic batch: one broadcast 1/B times (e / Σe − y)", () => {
    const b = new GraphBuilder();
    const z = b.input("z", "f32", ["B", 10]);
    const y = b.input("y", "f32", ["B", 10]);
    const [dz] = grad(softmaxCrossEntropy(z, y), [z]);
    const g = optimize(b.build({ dz }));
    const text = printGraph(g).replace(/\s+@.*$/gm, "");
    expect(text).toMatch(
      /%(\d+):f32\[\] = div %\d+, %\d+\n%(\d+):f32\[1,1\] = reshape %\1\n%(\d+):f32\[B,10\] = expand %\2\n%(\d+):f32\[B,10\] = div %\d+, %\d+\n%(\d+):f32\[B,10\] = sub %\4, %1\n%\d+:f32\[B,10\] = mul %\3, %\5/,
    );
  });

  test("integer labels: (p − onehot) / batch on valid rows, rows with an index outside 0..C−1 masked", () => {
    const b = new GraphBuilder();
    const z = b.input("z", "f32", [16, 10]);
    const c = b.input("c", "i32", [16]);
    const [dz] = grad(sparseSoftmaxCrossEntropy(z, c), [z]);
    const onehot = b
      .iota([16, 10], 1)
      .eq(c.reshape([16, 1]).expand([16, 10]))
      .cast("f32");
    // Row weights: 1/B on valid rows, 0 on masked ones; δ = w ⊙ (p − onehot).
    const w = c
      .ge(0)
      .and(c.lt(10))
      .select(1 / 16, 0)
      .reshape([16, 1])
      .expand([16, 10]);
    const textbook = w.mul(softmax(z).sub(onehot));
    const g = expectSameNodes(b.build({ dz, textbook_dz: textbook }), ["dz"]);
    expect(count(g, "reduce_sum")).toBe(1); // Σe: no reduction over the one-hot rows is left
  });
});

describe("MLP 784-500-500-10: the backward graph is the delta recursion", () => {
  /** δ³ = (p − y)/B; δˡ = f′(zˡ) ⊙ δˡ⁺¹ Wˡ⁺¹ᵀ; ∂E/∂Wˡ = aˡ⁻¹ᵀ δˡ; ∂E/∂bˡ = Σ_batch δˡ — in the
   *  row-vector convention (activations are rows of a [B, n] matrix), written with the same
   *  builder calls a person would use, f′ from the activation a = f(z): relu′ ⊙ x as
   *  select(a > 0, x, 0), σ′ as a·(1 − a). */
  function mlp(act: "relu" | "sigmoid") {
    const batch = 128;
    const b = new GraphBuilder();
    const x = b.input("x", "f32", [batch, 784]);
    const y = b.input("y", "f32", [batch, 10]);
    const sizes = [784, 500, 500, 10];
    const W = sizes.slice(1).map((n, l) => b.input(`W${l + 1}`, "f32", [sizes[l], n]));
    const bias = sizes.slice(1).map((n, l) => b.input(`b${l + 1}`, "f32", [n]));
    const a: Tensor[] = [x];
    const z: Tensor[] = [];
    for (let l = 0; l < 3; l++) {
      z.push(a[l].matmul(W[l]).add(bias[l]));
      if (l < 2) a.push(act === "relu" ? z[l].relu() : z[l].sigmoid());
    }
    const loss = softmaxCrossEntropy(z[2], y);
    const grads = grad(loss, [...W, ...bias]);

    const fprime = (l: number, d: Tensor) =>
      act === "relu" ? a[l + 1].gt(0).select(d, 0) : d.mul(a[l + 1].mul(b.constant(1).sub(a[l + 1])));
    const delta: Tensor[] = [];
    delta[2] = softmax(z[2]).sub(y).div(batch);
    for (let l = 1; l >= 0; l--) delta[l] = fprime(l, delta[l + 1].matmul(W[l + 1].transpose()));
    const outputs: Record<string, Tensor> = { loss };
    for (let l = 0; l < 3; l++) {
      outputs[`dW${l + 1}`] = grads[l];
      outputs[`db${l + 1}`] = grads[3 + l];
      outputs[`textbook_dW${l + 1}`] = a[l].transpose().matmul(delta[l]);
      outputs[`textbook_db${l + 1}`] = delta[l].sum(0);
    }
    return b.build(outputs);
  }
  const names = ["dW1", "dW2", "dW3", "db1", "db2", "db3"];

  test.each(["relu", "sigmoid"] as const)("%s: the gradients are the recursion's nodes, with 3 + 5 matmuls", (act) => {
    const g = expectSameNodes(mlp(act), names);
    // Forward: 3. Backward: ∂E/∂W for 3 layers, and δ passed down twice (not to the input x).
    expect(count(g, "matmul")).toBe(8);
  });
});
