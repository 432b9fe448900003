/** The text IR's parser and verifier against hostile text: any input gives a Graph or the
 *  project's own typed error (ParseError / VerifyError, both KilnError) — never a SyntaxError, a
 *  TypeError or a stack overflow — and in linear time (the cases with a million characters
 *  would take hours if it were quadratic). A graph that parses and verifies prints back to text
 *  that parses to the same graph. KILN_FUZZ=n sets the number of mutated texts (default 3,000). */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { GraphBuilder } from "../../src/api/builder.ts";
import { dense } from "../../src/api/layers.ts";
import { predictGraph, sequential } from "../../src/api/model.ts";
import { KilnError, VerifyError } from "../../src/ir/errors.ts";
import { ParseError, parseGraph } from "../../src/ir/parse.ts";
import { printGraph } from "../../src/ir/print.ts";
import type { Graph } from "../../src/ir/types.ts";
import { verify } from "../../src/ir/verify.ts";
import { buildRecipe, recipeArb } from "../helpers/random-graph.ts";

const RUNS = Number(process.env.KILN_FUZZ ?? 3000);

type Outcome = "graph" | "parse error" | "verify error";

/** Parse and verify `text`; anything but a Graph or a KilnError fails the test. */
function outcome(text: string): Outcome {
  let g: Graph;
  try {
    g = parseGraph(text);
  } catch (e) {
    if (!(e instanceof ParseError)) throw new Error(`not a ParseError for ${JSON.stringify(text.slice(0, 200))}: ${e}`);
    return "parse error";
  }
  try {
    verify(g);
  } catch (e) {
    if (!(e instanceof VerifyError)) throw new Error(`not a VerifyError for ${JSON.stringify(text.slice(0, 200))}: ${e}`);
    return "verify error";
  }
  expect(parseGraph(printGraph(g))).toEqual(g);
  return "graph";
}

const ALPHABET = [..." \t\"\\@%:=[],.-+eE0123456789abcdfinrtuxyzBN_/#\n{}()'`", "\u0000", "\u2028", "é", "😀"];
const edit = fc.oneof(
  fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), s: fc.string({ unit: fc.constantFrom(...ALPHABET), maxLength: 6 }) }),
  fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), n: fc.integer({ min: 1, max: 8 }) }),
  fc.record({
    kind: fc.constant("repeat" as const),
    at: fc.nat(),
    n: fc.integer({ min: 1, max: 8 }),
    times: fc.integer({ min: 2, max: 300 }),
  }),
  fc.record({
    kind: fc.constant("run" as const),
    at: fc.nat(),
    ch: fc.constantFrom(" ", "\t", "[", "-", "9", '"'),
    n: fc.integer({ min: 100, max: 20_000 }),
  }),
);
type Edit = typeof edit extends fc.Arbitrary<infer E> ? E : never;

function apply(text: string, edits: readonly Edit[]): string {
  let t = text;
  for (const e of edits) {
    const at = t.length ? e.at % (t.length + 1) : 0;
    if (e.kind === "insert") t = t.slice(0, at) + e.s + t.slice(at);
    else if (e.kind === "delete") t = t.slice(0, at) + t.slice(at + e.n);
    else if (e.kind === "repeat") t = t.slice(0, at) + t.slice(at, at + e.n).repeat(e.times) + t.slice(at + e.n);
    else t = t.slice(0, at) + e.ch.repeat(e.n) + t.slice(at);
  }
  return t;
}

/** A graph with names and sites that need quoting, constants, and the special values. */
function awkward(): Graph {
  const g = new GraphBuilder();
  const x = g.input('x "quoted" @ here', "f32", ["B", 3]);
  const c = g.constant([1.5, -0, NaN, Infinity], "f32", [4]).slice([0], [3], [1]);
  return g.build({ "a @ b/kernel_next": x.add(c).relu(), "tab\there": x.mul(-Infinity), ok: g.iota([2, 2], 1) });
}

describe("parser and verifier against hostile text", () => {
  test("mutated printed graphs give a graph or a typed error", () => {
    const counts: Record<Outcome, number> = { graph: 0, "parse error": 0, "verify error": 0 };
    const base = fc.oneof(
      recipeArb.map((r) => printGraph(buildRecipe(r))),
      fc.constant(printGraph(awkward())),
    );
    fc.assert(
      fc.property(base, fc.array(edit, { minLength: 1, maxLength: 4 }), (text, edits) => {
        counts[outcome(apply(text, edits))]++;
      }),
      { seed: 15, numRuns: RUNS },
    );
    console.log(`parse fuzz, ${RUNS} mutated texts: ${JSON.stringify(counts)}`);
    expect(counts["parse error"]).toBeGreaterThan(0);
    expect(counts.graph).toBeGreaterThan(0);
  });

  test("the crashes, overflows and slow inputs once found are typed errors, quickly", () => {
    const cases = [
      '%0:f32[]=input e="\t"\nreturn y=%0',
      "%0:f32[]=const e=.5\nreturn y=%0",
      '%0:f32[2] = input name="\\q"\nreturn y=%0',
      '%0:f32[2] = input name="unterminated\nreturn y=%0',
      `%0:f32[2] = const value=${"[".repeat(100_000)}1\nreturn y=%0`,
      `%0:f32[2] = input name="x"${" ".repeat(1_000_000)}\nreturn y=%0`,
      `%0:f32[2] = input name="x"${" ".repeat(1_000_000)}@ site\nreturn y=%0`,
      `${" ".repeat(1_000_000)}x\nreturn y=%0`,
      `%0:f32[2] = input ${"a=1 ".repeat(100_000)}\nreturn y=%0`,
      `%0:f32[2] = const value=[${"1,".repeat(300_000)}1]\nreturn y=%0`,
      '%99999999999:f32[2] = input name="x"\nreturn y=%0',
      '%500000000:f32[2] = input name="x"\nreturn y=%0',
      '%0:f32[99999999999999999999] = input name="x"\nreturn y=%0',
      '%0:f32[2] = input name="x" __proto__=1\nreturn y=%0',
      '%0:f32[2] = input name="x" toString=1 constructor=2\nreturn y=%0',
      '%0:f32[2] = input name="x"\nreturn "unterminated=%0',
      '%0:f32[2] = input name="x"\nreturn ""=%0',
    ];
    const P = "parse error";
    const V = "verify error";
    // A valid line followed by a million spaces is a graph; outcome() fails on any untyped error.
    expect(cases.map(outcome)).toEqual([V, V, P, P, P, "graph", "graph", P, P, V, P, P, P, V, V, P, V]);
  });

  test("a chain of 200,000 nodes with a back edge is a cycle error, not a stack overflow", () => {
    const lines = ['%0:f32[2] = input name="x"'];
    for (let i = 1; i < 200_000; i++) lines.push(`%${i}:f32[2] = neg %${i === 1 ? 199_999 : i - 1}`);
    const g = parseGraph([...lines, "return y=%199999"].join("\n"));
    expect(() => verify(g)).toThrow(/cycle: %1 -> %199999 -> .* -> %1/);
  });

  test("names and sites round-trip whatever characters they hold", () => {
    const g = awkward();
    const text = printGraph(g);
    expect(text).toContain('return "a @ b/kernel_next"=%');
    expect(parseGraph(text)).toEqual(g);
    verify(parseGraph(text));
    // A layer named "a @ b": its parameters and the model's graph keep the name.
    const m = sequential([dense(4, { name: "a @ b" }), dense(2, { name: 'q"\n' })], { inputShape: [3] });
    const pg = predictGraph(m);
    const back = parseGraph(printGraph(pg.graph));
    expect(back).toEqual(pg.graph);
    expect(back.nodes.some((n) => n.op === "input" && (n.attrs as { name: string }).name === "a @ b/kernel")).toBe(true);
  });

  test("errors are KilnErrors with line and column", () => {
    expect(() => parseGraph('%0:f32[2] = input name="\\q"\nreturn y=%0')).toThrow(/parse error at 1:25: bad escape \\q/);
    expect(() => parseGraph("%0:f32[2] = const value=[[1]]\nreturn y=%0")).toThrow(/1:26: nested lists are not attribute values/);
    expect(() => parseGraph(42 as unknown as string)).toThrow(KilnError);
  });
});
