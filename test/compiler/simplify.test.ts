import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { cse } from "../../compiler/cse.ts";
import { dce } from "../../compiler/dce.ts";
import { foldConstants } from "../../compiler/fold-constants.ts";
import type { Pass } from "../../compiler/pass.ts";
import { PASSES } from "../../compiler/pipeline.ts";
import { simplify } from "../../compiler/simplify.ts";
import { interpret } from "../../src/interpret.ts";
import { parseGraph } from "../../src/ir/parse.ts";
import { printGraph } from "../../src/ir/print.ts";
import { verify } from "../../src/ir/verify.ts";
import { buildGradGraph } from "../helpers/gradcheck.ts";
import { buildRecipe, recipeArb } from "../helpers/random-graph.ts";
import { buildOpRecipe, opRecipeArb, recipeInputs, recipeShapes } from "../helpers/random-op-graph.ts";

const ctx = { maxStorageBuffers: 8 };
const run = (p: Pass, text: string) => printGraph(dce.run(p.run(parseGraph(text), ctx), ctx));
const ir = (s: string) => s.trim().replace(/^\s+/gm, "");

describe("simplification passes (before → after, in text IR)", () => {
  test("simplify: identities, and only where the type is kept", () => {
    const before = ir(`
      %0:f32[B,3] = input name="x"
      %1:f32[] = const value=1
      %2:f32[B,3] = mul %0, %1
      %3:f32[] = const value=0
      %4:f32[B,3] = add %3, %2
      %5:f32[B,3] = neg %4
      %6:f32[B,3] = neg %5
      %7:f32[2,B,3] = add %6, %3
      %8:f32[2,B,3] = reshape %7
      return y=%8`);
    expect(run(simplify, before)).toBe(
      ir(`
      %0:f32[B,3] = input name="x"
      %1:f32[] = const value=0
      %2:f32[2,B,3] = add %0, %1
      return y=%2`),
    );
  });

  test("simplify: permutes compose, and cancel", () => {
    const before = ir(`
      %0:f32[2,3,4] = input name="x"
      %1:f32[4,2,3] = permute %0 perm=[2,0,1]
      %2:f32[2,3,4] = permute %1 perm=[1,2,0]
      %3:f32[3,2,4] = permute %0 perm=[1,0,2]
      %4:f32[4,3,2] = permute %3 perm=[2,0,1]
      return a=%2, b=%4`);
    expect(run(simplify, before)).toBe(
      ir(`
      %0:f32[2,3,4] = input name="x"
      %1:f32[4,3,2] = permute %0 perm=[2,1,0]
      return a=%0, b=%1`),
    );
  });

  test("simplify: broadcasts of one element, unary ops before a broadcast, x / 2^k, splat shapes", () => {
    const before = ir(`
      %0:f32[B,3] = input name="x"
      %1:f32[] = input name="s"
      %2:f32[1] = reshape %1
      %3:f32[B] = expand %2
      %4:f32[B,1] = reshape %3
      %5:f32[B,3] = expand %4
      %6:f32[B,3] = neg %5
      %7:f32[] = const value=4
      %8:f32[B,3] = div %0, %7
      %9:f32[] = const value=3
      %10:f32[B,3] = div %0, %9
      %11:f32[B,3] = const value=2
      %12:f32[B,3] = mul %11, %0
      %13:f32[B,3] = add %6, %8
      %14:f32[B,3] = add %13, %10
      %15:f32[B,3] = add %14, %12
      return y=%15`);
    expect(run(simplify, before)).toBe(
      ir(`
      %0:f32[B,3] = input name="x"
      %1:f32[] = input name="s"
      %2:f32[1,1] = reshape %1
      %3:f32[1,1] = neg %2
      %4:f32[B,3] = expand %3
      %5:f32[] = const value=0.25
      %6:f32[B,3] = mul %0, %5
      %7:f32[] = const value=3
      %8:f32[B,3] = div %0, %7
      %9:f32[] = const value=2
      %10:f32[B,3] = mul %9, %0
      %11:f32[B,3] = add %4, %6
      %12:f32[B,3] = add %11, %8
      %13:f32[B,3] = add %12, %10
      return y=%13`),
    );
  });

  test("cse: a·b meets b·a (+, ×, comparisons, logic), but not max or min", () => {
    const before = ir(`
      %0:f32[3] = input name="x"
      %1:f32[3] = input name="y"
      %2:f32[3] = mul %0, %1
      %3:f32[3] = mul %1, %0
      %4:f32[3] = max %0, %1
      %5:f32[3] = max %1, %0
      %6:f32[3] = sub %0, %1
      %7:f32[3] = sub %1, %0
      return a=%2, b=%3, c=%4, d=%5, e=%6, f=%7`);
    expect(run(cse, before)).toBe(
      ir(`
      %0:f32[3] = input name="x"
      %1:f32[3] = input name="y"
      %2:f32[3] = mul %0, %1
      %3:f32[3] = max %0, %1
      %4:f32[3] = max %1, %0
      %5:f32[3] = sub %0, %1
      %6:f32[3] = sub %1, %0
      return a=%2, b=%2, c=%3, d=%4, e=%5, f=%6`),
    );
  });

  test("foldConstants: splats stay splats, small data folds, symbolic shapes too", () => {
    const before = ir(`
      %0:f32[B,3] = input name="x"
      %1:f32[] = const value=2
      %2:f32[] = const value=3
      %3:f32[] = mul %1, %2
      %4:f32[B,3] = const value=1
      %5:f32[B,3] = exp %4
      %6:f32[2] = const value=[1,2]
      %7:f32[] = reduce_sum %6 axes=[0] keepdims=false
      %8:f32[B,3] = mul %0, %3
      %9:f32[B,3] = add %8, %5
      %10:f32[B,3] = sub %9, %7
      return y=%10`);
    expect(run(foldConstants, before)).toBe(
      ir(`
      %0:f32[B,3] = input name="x"
      %1:f32[] = const value=6
      %2:f32[B,3] = const value=${Math.fround(Math.E)}
      %3:f32[] = const value=3
      %4:f32[B,3] = mul %0, %1
      %5:f32[B,3] = add %4, %2
      %6:f32[B,3] = sub %5, %3
      return y=%6`),
    );
  });

  test("cse merges equal nodes, random ones included; dce drops the rest", () => {
    const before = ir(`
      %0:f32[3] = input name="x"
      %1:f32[3] = exp %0
      %2:f32[3] = exp %0
      %3:u32[] = const value=0
      %4:f32[3] = random %3 seed=5
      %5:f32[3] = random %3 seed=5
      %6:f32[3] = add %1, %2
      %7:f32[3] = mul %4, %5
      %8:f32[3] = sin %0
      return a=%6, b=%7`);
    expect(run(cse, before)).toBe(
      ir(`
      %0:f32[3] = input name="x"
      %1:f32[3] = exp %0
      %2:u32[] = const value=0
      %3:f32[3] = random %2 seed=5
      %4:f32[3] = add %1, %1
      %5:f32[3] = mul %3, %3
      return a=%4, b=%5`),
    );
  });

  test("clean graphs come back as the same object; a second run changes nothing", () => {
    fc.assert(
      fc.property(recipeArb, (r) => {
        let g = buildRecipe(r);
        for (const p of PASSES) g = p.run(g, ctx);
        verify(g);
        for (const p of PASSES) expect(p.run(g, ctx)).toBe(g);
      }),
      { seed: 3, numRuns: 150 },
    );
  });

  test("idempotent on random graphs of the whole op table with their backward graphs", () => {
    fc.assert(
      fc.property(opRecipeArb, (r) => {
        let g = buildGradGraph({ inputs: recipeInputs(r), shapes: recipeShapes(r), f: (xs) => buildOpRecipe(r, xs) }, r.seed).graph;
        for (const p of PASSES) g = p.run(g, ctx);
        verify(g);
        for (const p of PASSES) expect(p.run(g, ctx), p.name).toBe(g);
      }),
      { seed: 5, numRuns: 100 },
    );
  });

  test("the passes never change results (float64 reference, random graphs)", () => {
    fc.assert(
      fc.property(recipeArb, fc.integer({ min: 1, max: 4 }), (r, batch) => {
        const g0 = buildRecipe(r);
        let g = g0;
        for (const p of PASSES) g = p.run(g, ctx);
        const n = r.shape.reduce((a, d) => a * d, 1);
        const vals = (k: number) => Array.from({ length: k }, (_, i) => Math.fround(Math.cos(i * 2.3 + k)));
        const inputs = { x: { shape: [batch, ...r.shape], data: vals(batch * n) }, y: { shape: r.shape, data: vals(n) } };
        const [a, b] = [interpret(g0, inputs), interpret(g, inputs)];
        for (const k of Object.keys(a)) {
          // Folding rounds f32 constants to f32, as kernels store them; nothing else may move.
          a[k].data.forEach((v, i) => expect(Math.abs(v - b[k].data[i])).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(v))));
        }
      }),
      { seed: 4, numRuns: 150 },
    );
  });
});
