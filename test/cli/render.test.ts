import { describe, expect, test } from "vitest";
import { GraphBuilder } from "../../src/api/builder.ts";
import { toDot } from "../../src/ir/dot.ts";
import { toSvg } from "../../cli/render.ts";

describe("SVG rendering (Graphviz in WebAssembly)", () => {
  test("renders a graph's DOT; a hostile name stays one node's label", async () => {
    const evil = 'x"]; evil [label="pwned"]; a -> b; "';
    const g = new GraphBuilder();
    const svg = await toSvg(toDot(g.build({ y: g.input(evil, "f32", [2]).exp() })));
    expect(svg).toMatch(/<svg /);
    expect(svg.match(/<g id="node\d+" class="node">/g)).toHaveLength(2);
    expect(svg.match(/<g id="edge\d+" class="edge">/g)).toHaveLength(1);
    expect(svg).toContain("pwned"); // inside the label text, not a node of its own
    expect(svg).not.toMatch(/<title>evil<\/title>/);
  });

  test("invalid DOT is an error naming Graphviz", async () => {
    await expect(toSvg("digraph { a -> }")).rejects.toThrow(/Graphviz could not render the DOT text: .*syntax error/);
  });
});
