/** Golden kernels for every generator (compiler/wgsl/kernels/): matmul and conv with epilogues,
 *  conv's gradients, pools and their gradients, a row epilogue (softmax), reductions and
 *  in-place updates. Each golden file is a kernel's WGSL byte for byte as the device compiles it
 *  (graphs are built without call sites, so the header carries none), and each program is loaded
 *  on the device, so every golden text is known to compile. A diff here is a change in what runs:
 *  review it as one. */
import { describe, expect, test } from "vitest";
import { type CompileOptions, compile } from "../../../compiler/pipeline.ts";
import type { Kernel } from "../../../compiler/program.ts";
import { CPU_TARGET, GPU_TARGET } from "../../../compiler/target.ts";
import { GraphBuilder, type Tensor } from "../../../src/api/builder.ts";
import { softmax } from "../../../src/api/composites.ts";
import { grad } from "../../../src/api/grad.ts";
import { withSite } from "../../../src/api/site.ts";
import type { Graph } from "../../../src/ir/types.ts";
import { Executable } from "../../../runtime/execute.ts";
import { useGpu } from "../../helpers/gpu.ts";

useGpu();

/** A graph built with no call sites: `make` gets the builder and returns the outputs. */
const build = (make: (g: GraphBuilder) => Record<string, Tensor>): Graph =>
  withSite("", () => {
    const g = new GraphBuilder();
    return g.build(make(g));
  });

/** Compile, check the kernels picked by `pick` against their golden files, and load the program
 *  (every pipeline compiled by the device from exactly this text). */
async function golden(name: string, graph: Graph, pick: (k: Kernel) => boolean, opts: CompileOptions = {}): Promise<void> {
  const p = compile(graph, opts);
  const ks = p.kernels.filter(pick);
  expect(ks.length, `${name}: kernels ${p.kernels.map((k) => k.what).join(", ")}`).toBeGreaterThan(0);
  for (const k of ks) {
    await expect(k.wgsl).toMatchFileSnapshot(`../../golden/kernels/${ks.length > 1 ? `${name}-${k.name}` : name}.wgsl`);
  }
  (await Executable.load(p)).dispose();
}

const sumOfSquares = (t: Tensor): Tensor => t.mul(t).sum();
/** The kernels of one op: "max_pool2d" or "max_pool2d[…]" with what it inlines. */
const what = (op: string) => (k: Kernel) => k.what === op || k.what.startsWith(`${op}[`);
const all = () => true;

describe("golden kernels", () => {
  for (const [target, suffix] of [
    [GPU_TARGET, ""],
    [CPU_TARGET, "-cpu"],
  ] as const) {
    test(`matmul with a bias and relu epilogue (${target.name} target)`, async () => {
      const graph = build((g) => ({
        y: g
          .input("x", "f32", ["B", 8])
          .matmul(g.input("w", "f32", [8, 5]))
          .add(g.input("b", "f32", [5]))
          .relu(),
      }));
      await golden(`matmul-bias-relu${suffix}`, graph, all, { target });
    });

    test(`conv2d with a bias and relu epilogue (${target.name} target)`, async () => {
      const graph = build((g) => {
        const x = g.input("x", "f32", ["B", 8, 8, 3]);
        const w = g.input("w", "f32", [3, 3, 3, 4]);
        return {
          y: x
            .conv2d(w, { padding: [1, 1, 1, 1] })
            .add(g.input("b", "f32", [4]))
            .relu(),
        };
      });
      await golden(`conv2d-bias-relu${suffix}`, graph, all, { target });
    });
  }

  test("conv2d's gradients: with respect to the input and to the filter", async () => {
    const graph = build((g) => {
      const x = g.input("x", "f32", [2, 6, 6, 3]);
      const w = g.input("w", "f32", [3, 3, 3, 4]);
      const [dx, dw] = grad(sumOfSquares(x.conv2d(w, { strides: [2, 2], padding: [1, 1, 1, 1] })), [x, w]);
      return { dx, dw };
    });
    await golden("conv2d-grad-input", graph, what("conv2d_grad_input"));
    await golden("conv2d-grad-filter", graph, what("conv2d_grad_filter"));
  });

  test("pools and their gradients", async () => {
    for (const pool of ["max", "avg"] as const) {
      const graph = build((g) => {
        const x = g.input("x", "f32", [2, 5, 5, 3]);
        const y = pool === "max" ? x.maxPool2d([2, 2], [2, 2], [0, 1, 0, 1]) : x.avgPool2d([3, 3], [2, 2], [1, 1, 1, 1]);
        const [dx] = grad(sumOfSquares(y), [x]);
        return { y, dx };
      });
      await golden(`${pool}-pool2d`, graph, what(`${pool}_pool2d`));
      await golden(`${pool}-pool2d-grad`, graph, what(`${pool}_pool2d_grad`));
    }
  });

  test("softmax: a row reduction with its epilogue, two kernels", async () => {
    const graph = build((g) => ({ p: softmax(g.input("x", "f32", ["B", 10])) }));
    await golden("softmax", graph, all);
  });

  test("reductions: a sum over each row (loop), argmax", async () => {
    await golden(
      "sum-rows",
      build((g) => ({ s: g.input("x", "f32", ["B", 10]).exp().sum(1) })),
      all,
    );
    await golden(
      "argmax",
      build((g) => ({ i: g.input("x", "f32", [4, 10]).argmax(1) })),
      all,
    );
  });

  test("in-place updates: a state update into its weight, and a temporary reused", async () => {
    const step = build((g) => {
      const w = g.input("w", "f32", [4, 3]);
      return { w_next: w.sub(g.input("dw", "f32", [4, 3]).mul(0.1)) };
    });
    await golden("state-update-in-place", step, (k) => k.inPlace !== undefined, { state: { w: "w_next" } });
    // s is read twice, so no epilogue takes it (../../compiler/fuse.ts): the kernel after it
    // writes over s, a temporary read only at the element stored.
    const chain = build((g) => {
      const s = g.input("x", "f32", [4, 8]).exp().sum(1, true);
      return { y: s.add(1).log().mul(s) };
    });
    await golden("reuse-in-place", chain, (k) => k.inPlace !== undefined);
  });
});
