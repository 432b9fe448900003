/** The properties passes ask of every op (src/ops/def.ts `Pattern`): each record states them,
 *  with the fields its kind needs, and they agree with its lowering and its reference. */
import { describe, expect, test } from "vitest";
import type { OpAttrs, OpKind } from "../../src/ir/types.ts";
import { LOWERINGS, loweringOf, type OpDef, type Pattern } from "../../src/ops/def.ts";
import { OPS } from "../../src/ops/table.ts";
import { tensor64 } from "../../src/ops/tensor64.ts";

const defs = Object.values(OPS) as OpDef<OpKind>[];

/** Attributes to evaluate a lowering that depends on them: every variant it has. */
const SAMPLES: Partial<Record<OpKind, readonly unknown[]>> = {
  const: [
    { dtype: "f32", shape: [2], value: 1 },
    { dtype: "f32", shape: [2], value: [1, 2] },
  ],
};

/** The fields each kind must state, and their types. */
const FIELDS: { readonly [K in Pattern["kind"]]: Readonly<Record<string, "number" | "boolean">> } = {
  source: {},
  elementwise: { cost: "number", commutative: "boolean" },
  broadcast: {},
  injective: { splat: "boolean" },
  reduction: { rowEpilogue: "boolean" },
  gemm: {},
  opaque: {},
};

describe("op properties", () => {
  test.each(defs.map((d) => [d.name, d] as const))("%s states its pattern, with every field its kind needs", (_name, def) => {
    const p = def.pattern as Pattern | undefined;
    expect(p, "no pattern").toBeDefined();
    expect(Object.keys(FIELDS)).toContain(p!.kind);
    for (const [field, type] of Object.entries(FIELDS[p!.kind])) expect(typeof (p as Record<string, unknown>)[field], field).toBe(type);
    if (p!.kind === "elementwise") {
      expect(Number.isFinite(p!.cost) && p!.cost > 0, `cost ${p!.cost}`).toBe(true);
    }
  });

  test.each(defs.map((d) => [d.name, d] as const))("%s: its pattern agrees with its lowering kind", (name, def) => {
    const variants =
      typeof def.lower === "function"
        ? (SAMPLES[name] ?? expect.fail(`${name} lowers by its attributes: add samples to SAMPLES`)).map((a) =>
            loweringOf(def, a as OpAttrs[OpKind]),
          )
        : [def.lower];
    for (const low of variants) expect(LOWERINGS[def.pattern.kind], `lowered ${low.kind}`).toContain(low.kind);
  });

  test("a commutative op's reference gives the same bits with its operands swapped", () => {
    const commutative = defs.filter((d) => d.pattern.kind === "elementwise" && d.pattern.commutative);
    expect(commutative.map((d) => d.name).sort()).toEqual(["add", "and", "eq", "mul", "ne", "or"]);
    const values = [-2.5, -1, -0, 0, 0.5, 3, Infinity, -Infinity, NaN];
    for (const def of commutative) {
      expect(def.arity, def.name).toBe(2);
      const dtype = def.name === "and" || def.name === "or" ? "bool" : "f32";
      const xs = dtype === "bool" ? [0, 1] : values;
      const run = (a: number, b: number) => {
        const t = (v: number) => tensor64(dtype, [], [v]);
        const out = def.infer(
          [
            { dtype, shape: [] },
            { dtype, shape: [] },
          ],
          {} as never,
        );
        return def.reference([t(a), t(b)], {} as never, { dtype: out.dtype, shape: [] }).data[0];
      };
      for (const a of xs) for (const b of xs) expect(Object.is(run(a, b), run(b, a)), `${def.name}(${a}, ${b})`).toBe(true);
    }
  });
});
