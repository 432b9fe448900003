/** GEMM epilogues (compiler/fuse.ts, codegen.ts): the elementwise chain after a matmul or a conv
 *  (bias, activation, the ReLU derivative of a backward pass, an SGD update) is computed at the
 *  GEMM's store, one kernel instead of two; which chains qualify; and that results match the
 *  unfused program and the float64 reference on Dawn, on both GEMM writers. */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { kernelCost, kernelNodes } from "../../compiler/cost.ts";
import { compile, type CompileOptions } from "../../compiler/pipeline.ts";
import { CPU_TARGET, GPU_TARGET } from "../../compiler/target.ts";
import { buildStep, lenet, lenetShapes, mlp, mlpShapes, type Shaped } from "../../examples/models/networks.ts";
import { GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import { grad } from "../../src/api/grad.ts";
import type { Graph } from "../../src/ir/types.ts";
import { host } from "../helpers/data.ts";
import { expectMatchesReference, GEMM_TARGETS, runsFor, useGpu } from "../helpers/gpu.ts";

useGpu();

const heads = (g: Graph, opts: CompileOptions = {}) => compile(g, opts).kernels.map((k) => k.wgsl.slice(3, k.wgsl.indexOf(" ->")));
const TARGETS = [GPU_TARGET, CPU_TARGET];

/** A graph over inputs declared as name → shape. */
function graph(shapes: Record<string, (number | string)[]>, f: (t: Record<string, Tensor>) => Record<string, Tensor>): Graph {
  const g = new GraphBuilder();
  const t = Object.fromEntries(Object.entries(shapes).map(([n, s]) => [n, g.input(n, "f32", s)]));
  return g.build(f(t));
}

const inputsFor = (shapes: Shaped, seed: number) =>
  Object.fromEntries(Object.entries(shapes).map(([n, v], i) => [n, host(v.shape as number[], seed * 31 + i)]));

describe("which chains become epilogues", () => {
  test.each(TARGETS)("dense + bias + relu is one kernel ($name target), symbolic batch", (target) => {
    const g = graph({ x: ["B", 8], w: [8, 5], b: [5] }, ({ x, w, b }) => ({ y: x.matmul(w).add(b).relu() }));
    expect(heads(g, { target })).toEqual(["k0 = fused[matmul, add, relu]"]);
    expect(heads(g, { target, fuse: false })).toEqual(["k0 = matmul", "k1 = add", "k2 = relu"]);
    const wgsl = compile(g, { target }).kernels[0].wgsl;
    // The bias (an input, placed in the arena: so declared read_write when the WGSL is written).
    expect(wgsl).toMatch(/binding\(2\) var<storage, read_write> v2: array<f32>/);
    // relu(acc + b[n]) at the store (relu as max(·, 0) that keeps a NaN, as the reference does).
    expect(wgsl).toMatch(/let (e\d+) = \(acc\[[^\n]*\] \+ v2\[sn\]\);\n\s*v5\[[^\n]*\] = kiln_max\(\1, 0\.0f\);/);
  });

  test.each(TARGETS)("batched matmul with broadcast epilogue operands ($name target)", (target) => {
    const g = graph({ a: ["B", 3, 4, 6], w: [6, 5], r: [4, 1], s: [3, 1, 5] }, ({ a, w, r, s }) => ({
      y: a.matmul(w).mul(r).sub(s).tanh(),
    }));
    expect(heads(g, { target })).toEqual(["k0 = fused[matmul, mul, sub, tanh]"]);
  });

  test("a GEMM that is an output, read twice, broadcast, or reduced keeps its buffer; an epilogue ends there", () => {
    const shapes = { x: ["B", 8], w: [8, 5] };
    expect(
      heads(
        graph(shapes, ({ x, w }) => {
          const m = x.matmul(w);
          return { m, y: m.relu() };
        }),
      ),
    ).toEqual(["k0 = matmul", "k1 = relu"]);
    expect(
      heads(
        graph(shapes, ({ x, w }) => {
          const m = x.matmul(w);
          return { y: m.add(1).mul(m) };
        }),
      ),
    ).toEqual(["k0 = matmul", "k1 = fused[add, mul]"]);
    // [B,5] → [2,B,5] would recompute the GEMM per copy, a reduction's prologue per reduced
    // element: the epilogue stops before them and its last value gets the buffer.
    expect(heads(graph({ ...shapes, z: [2, "B", 5] }, ({ x, w, z }) => ({ y: x.matmul(w).relu().add(z) })))).toEqual([
      "k0 = fused[matmul, relu]",
      "k1 = add",
    ]);
    expect(heads(graph({ ...shapes, z: [2, "B", 5] }, ({ x, w, z }) => ({ y: x.matmul(w).add(z) })))).toEqual(["k0 = matmul", "k1 = add"]);
    expect(heads(graph(shapes, ({ x, w }) => ({ y: x.matmul(w).relu().sum(1) })))).toEqual(["k0 = fused[matmul, relu]", "k1 = reduce_sum"]);
    expect(heads(graph(shapes, ({ x, w }) => ({ y: x.matmul(w).sum(1) })))).toEqual(["k0 = matmul", "k1 = reduce_sum"]);
    // An epilogue that is read twice keeps its buffer and ends the chain there.
    expect(
      heads(
        graph(shapes, ({ x, w }) => {
          const z = x.matmul(w).add(1);
          return { y: z.relu().mul(z.exp()) };
        }),
      ),
    ).toEqual(["k0 = fused[matmul, add]", "k1 = fused[relu, exp, mul]"]);
  });

  test("kiln explain's cost of an epilogue kernel: the GEMM's FLOPs plus its epilogue's", () => {
    const g = graph({ x: ["B", 8], w: [8, 5], b: [5] }, ({ x, w, b }) => ({ y: x.matmul(w).add(b).relu() }));
    const p = compile(g);
    expect(kernelCost(p, p.kernels[0], { B: 3 })).toEqual({
      flops: 2 * 3 * 5 * 8 + 2 * 3 * 5,
      bytesRead: 4 * (3 * 8 + 8 * 5 + 5),
      bytesWritten: 4 * 3 * 5,
    });
    expect(kernelNodes(p, p.kernels[0]).map((id) => p.graph.nodes[id].op)).toEqual(["matmul", "add", "relu"]);
  });

  test("a kernel holds one GEMM: two products meeting in an add keep one of them", () => {
    const g = graph({ x: ["B", 8], w: [8, 5], v: [8, 5] }, ({ x, w, v }) => ({ y: x.matmul(w).add(x.matmul(v)).relu() }));
    expect(heads(g)).toEqual(["k0 = matmul", "k1 = fused[matmul, add, relu]"]);
  });

  test("past the binding limit the GEMM is materialized again", () => {
    const g = graph({ x: ["B", 8], w: [8, 5], b: [5], c: [5] }, ({ x, w, b, c }) => ({ y: x.matmul(w).add(b).mul(c) }));
    expect(heads(g, { maxStorageBuffers: 5 })).toEqual(["k0 = fused[matmul, add, mul]"]);
    expect(heads(g, { maxStorageBuffers: 4 })).toEqual(["k0 = matmul", "k1 = fused[add, mul]"]);
  });

  test.each(TARGETS)("conv2d + bias + relu is one kernel ($name target)", (target) => {
    const g = graph({ x: ["B", 9, 9, 3], f: [3, 3, 3, 4], b: [4] }, ({ x, f, b }) => ({
      y: x
        .conv2d(f, { padding: [1, 1, 1, 1] })
        .add(b)
        .relu(),
    }));
    expect(heads(g, { target })).toEqual(["k0 = fused[conv2d, add, relu]"]);
  });

  test("backward: the ReLU derivative fuses into conv2d_grad_input and matmul, the update into the weight gradients", () => {
    const g = convNet([2, 6, 6, 2]);
    const hs = heads(g);
    expect(hs).toContainEqual(expect.stringMatching(/= fused\[conv2d_grad_input, gt, select\]$/));
    expect(hs).toContainEqual(expect.stringMatching(/= fused\[.*conv2d_grad_filter, mul, sub\]$/));
    expect(hs.some((h) => /= conv2d_grad_input$/.test(h))).toBe(false);
    const m = buildStep({ kind: "train", lr: 0.01 }, mlp, { x: { shape: [128, 784] }, y: { shape: [128, 10] }, ...mlpShapes() }).graph;
    expect(heads(m)).toContainEqual(expect.stringMatching(/= fused\[permute, matmul, gt, select\]$/));
    // The example training steps (examples/models/*-train.ts): 26 → 19 → 16 and 46 → 35 → 32
    // kernels (GEMM epilogues, then each bias's update at its gradient's column sum; a conv
    // bias's sum over N·H·W is a workgroup tree on the gpu target, which takes no epilogue, and
    // loops on the cpu target: 30).
    expect(heads(m)).toHaveLength(16);
    expect(heads(m).filter((h) => /= fused\[reduce_sum, mul, sub\]$/.test(h))).toHaveLength(3);
    const l = buildStep({ kind: "train", lr: 0.01 }, lenet, {
      x: { shape: [64, 28, 28, 1] },
      y: { shape: [64, 10] },
      ...lenetShapes(),
    }).graph;
    expect(heads(l)).toHaveLength(32);
    expect(heads(l, { target: CPU_TARGET })).toHaveLength(30);
    expect(heads(l, { fuse: false }).length).toBeGreaterThan(32);
  });
});

/** x → conv(f1) + b1 → relu → conv(f2) → Σ squares, and its gradients: the backward pass has
 *  conv2d_grad_input feeding relu's derivative, and both filters' gradients feeding updates. */
function convNet(xs: number[]): Graph {
  const g = new GraphBuilder();
  const x = g.input("x", "f32", xs);
  const f1 = g.input("f1", "f32", [3, 3, xs[3], 3]);
  const b1 = g.input("b1", "f32", [3]);
  const f2 = g.input("f2", "f32", [2, 2, 3, 2]);
  const h = x
    .conv2d(f1, { padding: [1, 1, 1, 1] })
    .add(b1)
    .relu();
  const y = h.conv2d(f2, { strides: [2, 2] });
  const loss = y.mul(y).mean();
  const [d1, db, d2] = grad(loss, [f1, b1, f2]);
  return g.build({ loss, f1_next: f1.sub(d1.mul(0.1)), b1_next: b1.sub(db.mul(0.1)), f2_next: f2.sub(d2.mul(0.1)) });
}

const TOL = { atol: 1e-5, rtol: 1e-4 };

describe("epilogues never change results (Dawn: fused, unfused, float64 reference)", () => {
  const EPILOGUES: readonly ((y: Tensor, c: Tensor) => Tensor)[] = [
    (y, c) => y.add(c).relu(),
    (y, c) => y.mul(c).tanh().sub(c),
    (y, c) => y.sub(c).mul(y), // y read twice: no epilogue
    (y, c) => y.gt(c).select(y, c.mul(2)),
  ];
  for (const { name, target, share } of GEMM_TARGETS) {
    test(`random matmuls with epilogues, ${name}`, async () => {
      const arb = fc.record({
        m: fc.integer({ min: 1, max: 9 }),
        k: fc.integer({ min: 1, max: 24 }),
        n: fc.integer({ min: 1, max: 20 }),
        batch: fc.integer({ min: 0, max: 3 }),
        c: fc.constantFrom("row", "col", "full"),
        e: fc.integer({ min: 0, max: EPILOGUES.length - 1 }),
        seed: fc.nat(1000),
      });
      await fc.assert(
        fc.asyncProperty(arb, async ({ m, k, n, batch, c, e, seed }) => {
          const lead = batch ? [batch] : [];
          const cs = c === "row" ? [n] : c === "col" ? [m, 1] : [...lead, m, n];
          const shapes = { a: { shape: [...lead, m, k] }, w: { shape: [k, n] }, c: { shape: cs } };
          const g = graph({ a: shapes.a.shape, w: shapes.w.shape, c: cs }, (t) => ({ y: EPILOGUES[e](t.a.matmul(t.w), t.c) }));
          const inputs = inputsFor(shapes, seed);
          await expectMatchesReference(g, inputs, TOL, { target, fuse: true });
          await expectMatchesReference(g, inputs, TOL, { target, fuse: false });
        }),
        { seed: 5, numRuns: runsFor(16, share) },
      );
    });

    test(`conv2d training step (conv2d_grad_input and _filter epilogues), ${name}`, async () => {
      const g = convNet([2, 6, 6, 2]);
      const inputs = inputsFor(
        { x: { shape: [2, 6, 6, 2] }, f1: { shape: [3, 3, 2, 3] }, b1: { shape: [3] }, f2: { shape: [2, 2, 3, 2] } },
        3,
      );
      await expectMatchesReference(g, inputs, TOL, { target });
      await expectMatchesReference(g, inputs, TOL, { target, fuse: false });
    });

    test(`MLP and LeNet training steps match the reference, ${name}`, async () => {
      const small: Shaped = {
        x: { shape: [6, 20] },
        y: { shape: [6, 10] },
        w1: { shape: [20, 16] },
        b1: { shape: [16] },
        w2: { shape: [16, 12] },
        b2: { shape: [12] },
        w3: { shape: [12, 10] },
        b3: { shape: [10] },
      };
      const m = buildStep({ kind: "train", lr: 0.05 }, mlp, small).graph;
      expect(heads(m, { target }).length).toBeLessThan(heads(m, { target, fuse: false }).length);
      await expectMatchesReference(m, inputsFor(small, 7), TOL, { target });
      const ls: Shaped = { x: { shape: [2, 28, 28, 1] }, y: { shape: [2, 10] }, ...lenetShapes() };
      await expectMatchesReference(
        buildStep({ kind: "train", lr: 0.05 }, lenet, ls).graph,
        inputsFor(ls, 9),
        { atol: 1e-4, rtol: 1e-3 },
        { target },
      );
    });
  }
});
