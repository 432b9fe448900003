import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { GraphBuilder } from "../../src/api/builder.ts";
import { parseGraph } from "../../src/ir/parse.ts";
import { printGraph } from "../../src/ir/print.ts";
import { verify } from "../../src/ir/verify.ts";
import { buildGradGraph } from "../helpers/gradcheck.ts";
import { buildRecipe, recipeArb } from "../helpers/random-graph.ts";
import { buildOpRecipe, opRecipeArb, recipeInputs, recipeShapes } from "../helpers/random-op-graph.ts";

describe("text IR", () => {
  test("prints one node per line with its type and site", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["B", 784]);
    const y = x.mul(2).exp();
    const text = printGraph(g.build({ y }));
    expect(text).toMatch(/^%0:f32\[B,784\] = input name="x"   @ text\.test\.ts:\d+$/m);
    expect(text).toMatch(/^%1:f32\[\] = const value=2   @ text\.test\.ts:\d+$/m);
    expect(text).toMatch(/^%2:f32\[B,784\] = mul %0, %1   @ text\.test\.ts:\d+$/m);
    expect(text).toMatch(/^return y=%3$/m);
  });

  test("round-trips exactly over random graphs", () => {
    fc.assert(
      fc.property(recipeArb, (r) => {
        const g = buildRecipe(r);
        const parsed = parseGraph(printGraph(g));
        expect(parsed).toEqual(g);
        expect(printGraph(parsed)).toBe(printGraph(g));
        verify(parsed);
      }),
      { seed: 7, numRuns: 200 },
    );
  });

  test("round-trips exactly over random graphs of the whole op table, backward graphs included", () => {
    fc.assert(
      fc.property(opRecipeArb, (r) => {
        const g = buildGradGraph({ inputs: recipeInputs(r), shapes: recipeShapes(r), f: (xs) => buildOpRecipe(r, xs) }, r.seed).graph;
        const parsed = parseGraph(printGraph(g));
        expect(parsed).toEqual(g);
        verify(parsed);
      }),
      { seed: 8, numRuns: 150 },
    );
  });

  test("round-trips special values and data constants", () => {
    const g = new GraphBuilder();
    const c = g.constant([1.5, -0, 1e-30, 3e38], "f32", [2, 2]);
    const y = c
      .add(NaN)
      .add(Infinity)
      .add(-Infinity)
      .add(g.constant([1, -2, 3, 4], "i32", [2, 2]).cast("f32"));
    const graph = g.build({ y, r: g.random([2, 3], 42, 7), i: g.iota([2, 2], 1) });
    expect(parseGraph(printGraph(graph))).toEqual(graph);
  });

  test("syntax errors give line and column", () => {
    expect(() => parseGraph('%0:f33[2] = input name="x"\nreturn y=%0')).toThrow(/parse error at 1:4: unknown dtype "f33"/);
    expect(() => parseGraph('%0:f32[2] = input name="x"\n%1:f32[2] = ex %0\nreturn y=%1')).toThrow(/parse error at 2:13: unknown op "ex"/);
    expect(() => parseGraph("%0:f32[2] = input name=\nreturn y=%0")).toThrow(/parse error at 1:24: expected a value/);
    expect(() => parseGraph('%0:f32[2] = input name="x"')).toThrow(/no return line/);
    expect(() => parseGraph('%1:f32[2] = input name="x"\nreturn y=%1')).toThrow(/%0 is missing/);
  });
});
