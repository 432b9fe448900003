/** matmul's vjp: ∂A = G·Bᵀ, ∂B = Aᵀ·G, summed over broadcast batch dims. (a) float64 central
 *  differences over random shapes; (b) the gradient graph on Dawn against the reference, with
 *  symbolic dims. matmul is bilinear, smooth everywhere, so any values do: along a direction,
 *  y = Σ u ⊙ (A·B) is quadratic, which the central difference gets exactly up to rounding. */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import { grad } from "../../src/api/grad.ts";
import type { Shape } from "../../src/ir/types.ts";
import { host } from "../helpers/data.ts";
import type { CompileOptions } from "../../compiler/pipeline.ts";
import { GEMM_TARGETS, useGpu } from "../helpers/gpu.ts";
import { expectGradOk } from "../helpers/gradcheck.ts";
import { expectWithinUlps } from "../helpers/ulps.ts";

useGpu();

interface Case {
  readonly ba: number[];
  readonly bb: number[];
  readonly m: number;
  readonly k: number;
  readonly n: number;
  /** The operand is stored transposed; the graph transposes it back. */
  readonly ta: boolean;
  readonly tb: boolean;
  readonly seed: number;
}

const dim = fc.integer({ min: 1, max: 6 });
/** An output batch; each operand keeps a suffix of it with some dims replaced by 1. */
const cases: fc.Arbitrary<Case> = fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 3 }).chain((ob) => {
  const operand = fc
    .tuple(fc.nat(ob.length), fc.array(fc.boolean(), { minLength: ob.length, maxLength: ob.length }))
    .map(([drop, ones]) => ob.map((d, i) => (ones[i] ? 1 : d)).slice(drop));
  return fc.record({ ba: operand, bb: operand, m: dim, k: dim, n: dim, ta: fc.boolean(), tb: fc.boolean(), seed: fc.nat() });
});

const shapes = (c: Case): [number[], number[]] => [
  [...c.ba, ...(c.ta ? [c.k, c.m] : [c.m, c.k])],
  [...c.bb, ...(c.tb ? [c.n, c.k] : [c.k, c.n])],
];
const product =
  (c: Pick<Case, "ta" | "tb">) =>
  (a: Tensor, b: Tensor): Tensor =>
    (c.ta ? a.transpose() : a).matmul(c.tb ? b.transpose() : b);

describe("matmul vjp against float64 central differences", () => {
  test("property: broadcast batch dims (missing, size 1), transposed operands, sizes 1 to 6", () => {
    fc.assert(
      fc.property(cases, (c) => {
        const [sa, sb] = shapes(c);
        const f = product(c);
        expectGradOk({ inputs: { a: host(sa, c.seed), b: host(sb, c.seed + 1) }, f: (xs) => f(xs.a, xs.b) }, 1e-5, {
          eps: 1e-6,
          seed: c.seed,
        });
      }),
      { seed: 11, numRuns: 25 },
    );
  });

  test("[B,T,K] × [K,N]: ∂W sums over B and T and keeps W's shape", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", "T", 4]);
    const w = g.input("w", "f32", [4, 3]);
    const [dx, dw] = grad(x.matmul(w), [x, w], g.input("u", "f32", ["B", "T", 3]));
    expect([dx.shape, dw.shape]).toEqual([
      ["B", "T", 4],
      [4, 3],
    ]);
    expectGradOk({ inputs: { x: host([2, 5, 4], 1), w: host([4, 3], 2) }, f: (xs) => xs.x.matmul(xs.w) });
  });
});

/** d_a and d_b of Σ u ⊙ f(a, b) over declared (maybe symbolic) shapes; u is an input. */
function gradGraph(sa: Shape, sb: Shape, f: (a: Tensor, b: Tensor) => Tensor) {
  const g = new GraphBuilder();
  const [a, b] = [g.input("a", "f32", sa), g.input("b", "f32", sb)];
  const out = f(a, b);
  const [da, db] = grad(out, [a, b], g.input("u", "f32", out.shape));
  return g.build({ da, db });
}

/** Every gradient element sums at most (the sum of all dims) products of f32 inputs: that many
 *  ulps of Σ|terms| (test/helpers/ulps.ts). */
async function expectGradOnDawn(
  graph: ReturnType<typeof gradGraph>,
  a: number[],
  b: number[],
  u: number[],
  seed: number,
  opts: CompileOptions,
): Promise<void> {
  const ulps = [...a, ...b, ...u].reduce((s, d) => s + d, 1);
  await expectWithinUlps(graph, { a: host(a, seed), b: host(b, seed + 1), u: host(u, seed + 2) }, ulps, [], opts);
}

describe.each(GEMM_TARGETS)("matmul gradient graphs on Dawn, $name", ({ target }) => {
  const opts: CompileOptions = { target };

  test("symbolic M: [M,37] × [37,70] with M = 1, 5 and 130 (two row tiles and a bit)", async () => {
    const graph = gradGraph(["M", 37], [37, 70], (a, b) => a.matmul(b));
    for (const m of [1, 5, 130]) await expectGradOnDawn(graph, [m, 37], [37, 70], [m, 70], m, opts);
  });

  test("symbolic batch: [B,5,33] × [33,70], ∂W summed over B and T", async () => {
    const graph = gradGraph(["B", 5, 33], [33, 70], (a, b) => a.matmul(b));
    await expectGradOnDawn(graph, [3, 5, 33], [33, 70], [3, 5, 70], 1, opts);
  });

  test("transposed operands with broadcast batch dims: [2,1,K,M]ᵀ × [3,N,K]ᵀ, symbolic M, K, N", async () => {
    const graph = gradGraph([2, 1, "K", "M"], [3, "N", "K"], product({ ta: true, tb: true }));
    await expectGradOnDawn(graph, [2, 1, 65, 9], [3, 3, 65], [2, 3, 9, 3], 2, opts);
    await expectGradOnDawn(graph, [2, 1, 1, 70], [3, 66, 1], [2, 3, 70, 66], 3, opts);
  });
});
