import { describe, expect, test } from "vitest";
import { GraphBuilder } from "../../src/api/builder.ts";
import { quote, toDot } from "../../src/ir/dot.ts";
import { parseGraph } from "../../src/ir/parse.ts";

const affine = () => {
  const g = new GraphBuilder();
  const x = g.input("x", "f32", ["B", 4]);
  const b = g.input("b", "f32", [4]);
  const y = x.mul(2).add(b).tanh();
  return g.build({ y, positive: y.gt(0) });
};

/** The node statements (`nX [label=…]`) and edges (`nA -> nB`) of a DOT text. */
const nodesOf = (dot: string) => [...dot.matchAll(/^\s*n(\d+) \[label=/gm)].map((m) => Number(m[1]));
const edgesOf = (dot: string) => [...dot.matchAll(/^\s*n(\d+) -> n(\d+);$/gm)].map((m) => [Number(m[1]), Number(m[2])]);

describe("DOT export", () => {
  test("one node per value, an edge per input, labels with id, op and type", () => {
    const graph = affine();
    const dot = toDot(graph);
    expect(dot.startsWith("digraph kiln {")).toBe(true);
    expect(dot.trimEnd().endsWith("}")).toBe(true);
    expect(nodesOf(dot)).toEqual(graph.nodes.map((n) => n.id));
    expect(edgesOf(dot)).toEqual(graph.nodes.flatMap((n) => n.inputs.map((i) => [i, n.id])));
    expect(dot).toMatch(/n3 \[label="%3 mul\\nf32\[B,4\]", tooltip="dot\.test\.ts:\d+"\];/);
    expect(dot).toMatch(/n2 \[label="%2 const\\nf32\[\]\\nvalue=2", [^\n]*shape=note\];/);
    expect(dot).toMatch(/n0 \[label="%0 input x\\nf32\[B,4\]", [^\n]*shape=invhouse\];/);
    expect(dot).toMatch(/n5 \[label="%5 tanh\\nf32\[B,4\]\\n→ y", [^\n]*peripheries=2\];/);
  });

  test("quotes, backslashes and newlines in names cannot break out of a label", () => {
    expect(quote('a"b')).toBe('"a\\"b"');
    expect(quote("a\\")).toBe('"a\\\\"');
    expect(quote("x\ny", "z")).toBe('"x\\ny\\nz"');
    const evil = 'x"]; evil [label="pwned"]; n0 -> n0 [x="\\';
    const g = new GraphBuilder();
    const dot = toDot(g.build({ [evil]: g.input(evil, "f32", [2]).exp() }));
    expect(dot).not.toMatch(/^\s*evil/m);
    expect(nodesOf(dot)).toEqual([0, 1]);
    expect(edgesOf(dot)).toEqual([[0, 1]]);
    // Every double quote in the DOT text either delimits a string or is escaped.
    for (const line of dot.split("\n")) {
      const unescaped = line.replace(/\\\\/g, "").replace(/\\"/g, "").match(/"/g) ?? [];
      expect(unescaped.length % 2, line).toBe(0);
    }
  });

  test("groups become clusters; a node in two groups is drawn once, in the first", () => {
    const graph = affine();
    const dot = toDot(graph, {
      groups: [
        { name: 'k0 = fused[mul, add, tanh] "y"', nodes: [3, 4, 5, 2] },
        { name: "k1 = gt", nodes: [2, 6, 7] },
      ],
    });
    const clusters = dot
      .split(/^\s*subgraph /m)
      .slice(1)
      .map((c) => nodesOf(c.slice(0, c.indexOf("\n  }"))));
    expect(clusters).toEqual([
      [3, 4, 5, 2],
      [6, 7],
    ]);
    expect(dot).toContain('label="k0 = fused[mul, add, tanh] \\"y\\""');
    expect(nodesOf(dot).sort((a, b) => a - b)).toEqual(graph.nodes.map((n) => n.id));
  });

  test("long attributes are cut short", () => {
    const graph = parseGraph(`%0:f32[64] = const value=[${Array.from({ length: 64 }, (_, i) => i).join(",")}]\nreturn y=%0`);
    const label = /label="([^"]*)"/.exec(toDot(graph))?.[1] ?? "";
    expect(label).toMatch(/^%0 const\\nf32\[64\]\\nvalue=\[0,1,2,.*…\\n→ y$/);
    expect(label.length).toBeLessThan(90);
  });
});
