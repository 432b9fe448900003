/** Random well-typed graphs for properties: a fast-check arbitrary of "recipes" (plain data, so
 *  fast-check shrinks them) and a builder that turns a recipe into a Graph. Each step applies an
 *  op to earlier values, skipping steps whose types do not fit, so every recipe builds. */
import fc from "fast-check";
import { GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import type { Graph } from "../../src/ir/types.ts";

const UNARY = ["neg", "abs", "exp", "tanh", "sigmoid", "relu", "sin", "floor"] as const;
const BINARY = ["add", "sub", "mul", "max", "min"] as const;

export type Step =
  | { kind: "unary"; op: (typeof UNARY)[number]; a: number }
  | { kind: "binary"; op: (typeof BINARY)[number]; a: number; b: number }
  | { kind: "scalar"; op: (typeof BINARY)[number]; a: number; v: number }
  | { kind: "select"; c: number; a: number; b: number }
  | { kind: "cast"; a: number };

export interface Recipe {
  shape: number[];
  steps: Step[];
}

const idx = fc.nat(1000);
export const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant("unary" as const), op: fc.constantFrom(...UNARY), a: idx }),
  fc.record({ kind: fc.constant("binary" as const), op: fc.constantFrom(...BINARY), a: idx, b: idx }),
  fc.record({
    kind: fc.constant("scalar" as const),
    op: fc.constantFrom(...BINARY),
    a: idx,
    v: fc.float({ min: -3, max: 3, noNaN: true }),
  }),
  fc.record({ kind: fc.constant("select" as const), c: idx, a: idx, b: idx }),
  fc.record({ kind: fc.constant("cast" as const), a: idx }),
);

export const recipeArb: fc.Arbitrary<Recipe> = fc.record({
  shape: fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 0, maxLength: 3 }),
  steps: fc.array(stepArb, { minLength: 1, maxLength: 12 }),
});

/** Build a graph over two inputs x: f32[B, ...shape] and y: f32[...shape]; the last value is the output. */
export function buildRecipe(r: Recipe): Graph {
  const g = new GraphBuilder();
  const vals: Tensor[] = [g.input("x", "f32", ["B", ...r.shape]), g.input("y", "f32", r.shape)];
  const pick = (i: number) => vals[i % vals.length];
  for (const s of r.steps) {
    switch (s.kind) {
      case "unary":
        vals.push(pick(s.a)[s.op]());
        break;
      case "binary":
        vals.push(pick(s.a)[s.op === "max" ? "maximum" : s.op === "min" ? "minimum" : s.op](pick(s.b)));
        break;
      case "scalar":
        vals.push(pick(s.a)[s.op === "max" ? "maximum" : s.op === "min" ? "minimum" : s.op](s.v));
        break;
      case "select":
        vals.push(pick(s.c).gt(0).select(pick(s.a), pick(s.b)));
        break;
      case "cast":
        vals.push(pick(s.a).mul(3).cast("i32").cast("f32"));
        break;
    }
  }
  return g.build({ out: vals[vals.length - 1], first: vals[2] ?? vals[0] });
}
