import { describe, expect, test } from "vitest";
import { GraphBuilder } from "../../src/api/builder.ts";
import { parseGraph } from "../../src/ir/parse.ts";
import { printGraph } from "../../src/ir/print.ts";
import { verify } from "../../src/ir/verify.ts";
import type { Graph, Node } from "../../src/ir/types.ts";

const ok = `
%0:f32[B,3] = input name="x"
%1:f32[3] = input name="b"
%2:f32[B,3] = add %0, %1
return y=%2`;

const patch = (g: Graph, id: number, p: Partial<Node>): Graph => ({
  ...g,
  nodes: g.nodes.map((n) => (n.id === id ? ({ ...n, ...p } as Node) : n)),
});

describe("verify", () => {
  test("accepts a well-formed graph", () => {
    expect(() => verify(parseGraph(ok))).not.toThrow();
  });

  test("output names the text IR reads back: any non-empty name (quoted where it must be)", () => {
    const g = parseGraph(ok);
    const named = (name: string): Graph => ({ ...g, outputs: [{ name, id: 2 }] });
    expect(() => verify(named("dense_1/kernel_next"))).not.toThrow();
    expect(parseGraph(`${ok.replace("return y=%2", "return dense_1/kernel_next=%2")}`).outputs[0].name).toBe("dense_1/kernel_next");
    expect(() => verify(named("two words"))).not.toThrow();
    expect(parseGraph(printGraph(named("two words"))).outputs[0].name).toBe("two words");
    expect(() => verify(named(""))).toThrow("output %2 has no name");
  });

  test("unknown op", () => {
    expect(() => verify(patch(parseGraph(ok), 2, { op: "frobnicate" as never }))).toThrow('frobnicate %2: unknown op "frobnicate"');
  });

  test("wrong arity", () => {
    expect(() => verify(patch(parseGraph(ok), 2, { inputs: [0] }))).toThrow("add %2: takes 2 inputs, got 1");
    expect(() => verify(patch(parseGraph(ok), 2, { op: "exp" }))).toThrow("exp %2: takes 1 input, got 2");
  });

  test("bad attributes: missing, ill-typed, unknown, out of range", () => {
    const g = new GraphBuilder();
    const s = g.input("x", "f32", [2, 3]).sum([1]);
    const graph = g.build({ s });
    const at = (attrs: object) => () => verify(patch(graph, 1, { attrs: attrs as never }));
    expect(at({ axes: [1] })).toThrow(/reduce_sum %1 @ verify\.test\.ts:\d+: missing attribute keepdims/);
    expect(at({ axes: "1", keepdims: false })).toThrow(/attribute axes="1" is not a valid ints/);
    expect(at({ axes: [1], keepdims: false, bogus: 1 })).toThrow(/unknown attribute bogus/);
    expect(at({ axes: [5], keepdims: false })).toThrow(/reduce_sum %1.*axis 5/);
  });

  test("dtype mismatch between inputs", () => {
    const text = ok.replace('%1:f32[3] = input name="b"', '%1:i32[3] = input name="b"');
    expect(() => verify(parseGraph(text))).toThrow("add %2: dtypes differ; cast explicitly (f32[B,3], i32[3])");
  });

  test("stored type disagrees with the op's rule", () => {
    const text = ok.replace("%2:f32[B,3] = add", "%2:f32[B,4] = add");
    expect(() => verify(parseGraph(text))).toThrow("add %2: type is f32[B,4] but the op gives f32[B,3]");
  });

  test("a cycle in a parsed graph is named as one", () => {
    const text = `
%0:f32[3] = input name="x"
%1:f32[3] = add %0, %2
%2:f32[3] = exp %1
return y=%2`;
    expect(() => verify(parseGraph(text))).toThrow("add %1: cycle: %1 -> %2 -> %1");
  });

  test("a forward reference without a cycle is an ordering error", () => {
    const text = `
%0:f32[3] = exp %1
%1:f32[3] = input name="x"
return y=%0`;
    expect(() => verify(parseGraph(text))).toThrow("exp %0: input %1 comes after the node");
  });

  test("dangling inputs and outputs, duplicate names", () => {
    expect(() => verify(patch(parseGraph(ok), 2, { inputs: [0, 9] }))).toThrow("add %2: input %9 does not exist");
    expect(() => verify({ ...parseGraph(ok), outputs: [{ name: "y", id: 7 }] })).toThrow("output y=%7 does not exist");
    expect(() => verify(parseGraph(ok.replace('name="b"', 'name="x"')))).toThrow('input name "x" is used twice');
    expect(() => verify({ ...parseGraph(ok), outputs: [] })).toThrow("graph has no outputs");
  });
});
