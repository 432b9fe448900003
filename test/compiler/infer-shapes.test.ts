import { describe, expect, test } from "vitest";
import { inferShapes } from "../../compiler/infer-shapes.ts";
import { parseGraph } from "../../src/ir/parse.ts";

const ctx = { maxStorageBuffers: 8 };

describe("inferShapes", () => {
  test("a consistent graph comes back as the same object", () => {
    const g = parseGraph('%0:f32[B,3] = input name="x"\n%1:f32[B,3] = exp %0\nreturn y=%1');
    expect(inferShapes.run(g, ctx)).toBe(g);
  });

  test("recomputes types a rewrite left stale, and is idempotent", () => {
    const g = parseGraph(
      '%0:f32[B,3] = input name="x"\n%1:f32[3] = input name="b"\n%2:f32[7] = add %0, %1\n%3:bool[1] = gt %2, %0\nreturn y=%3',
    );
    const fixed = inferShapes.run(g, ctx);
    expect(fixed.nodes[2].type).toEqual({ dtype: "f32", shape: ["B", 3] });
    expect(fixed.nodes[3].type).toEqual({ dtype: "bool", shape: ["B", 3] });
    expect(inferShapes.run(fixed, ctx)).toBe(fixed);
  });

  test("a rule's error names the op, the node, the shapes and the site", () => {
    const g = parseGraph('%0:f32[B,3] = input name="x"\n%1:f32[4] = input name="b"\n%2:f32[B,3] = add %0, %1   @ model.ts:9\nreturn y=%2');
    expect(() => inferShapes.run(g, ctx)).toThrow("add %2 @ model.ts:9: shapes do not broadcast (f32[B,3], f32[4])");
  });
});
