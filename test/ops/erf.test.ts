/** erf: the float64 reference against tabulated values; the f32 WGSL approximation on Dawn over
 *  a dense grid and its special values; the vjp against float64 central differences and the
 *  gradient graph on Dawn. */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { GraphBuilder } from "../../src/api/builder.ts";
import { grad } from "../../src/api/grad.ts";
import { interpret } from "../../src/interpret.ts";
import { erf64 } from "../../src/ops/erf.ts";
import { expectGradOk } from "../helpers/gradcheck.ts";
import { runGpu, useGpu } from "../helpers/gpu.ts";

useGpu();

describe("erf: the float64 reference", () => {
  // Values to 16 digits (A&S table 7.1, extended with mpmath).
  const TABLE: readonly [number, number][] = [
    [1e-10, 1.1283791670955126e-10],
    [0.1, 0.1124629160182849],
    [0.5, 0.5204998778130465],
    [1, 0.8427007929497149],
    [1.5, 0.9661051464753108],
    [2, 0.9953222650189527],
    [3, 0.9999779095030014],
    [4, 0.9999999845827421],
    [5, 0.9999999999984626],
  ];
  test("matches the table to a few ulps, and is odd", () => {
    for (const [x, want] of TABLE) {
      expect(Math.abs(erf64(x) - want)).toBeLessThanOrEqual(4 * Number.EPSILON * want);
      expect(erf64(-x)).toBe(-erf64(x));
    }
    expect(erf64(0)).toBe(0);
    expect(erf64(7)).toBe(1);
    expect(erf64(-Infinity)).toBe(-1);
    expect(erf64(NaN)).toBeNaN();
  });
});

describe("erf on Dawn", () => {
  test("within 2e-7 absolute of the reference on [-6, 6], relative 1e-6 inside |x| < 1; ±1, ±inf and NaN", async () => {
    const xs: number[] = [];
    for (let i = -24000; i <= 24000; i++) xs.push(Math.fround(i / 4000));
    // Either side of the branch points at 1 and 4, tiny values, and the specials.
    for (const b of [1, 4]) for (const s of [-1, 1]) xs.push(s * Math.fround(b - 2 ** -23), s * b, s * Math.fround(b + 2 ** -21));
    xs.push(1e-6, -3e-5, 30, -30, Infinity, -Infinity, NaN);
    const g = new GraphBuilder();
    const graph = g.build(g.input("x", "f32", [xs.length]).erf());
    const inputs = { x: { shape: [xs.length], data: xs } };
    const [ref, gpu] = [interpret(graph, inputs).out.data, (await runGpu(graph, inputs)).out.data];
    let worst = 0;
    for (let i = 0; i < xs.length; i++) {
      if (Number.isNaN(ref[i])) {
        expect(gpu[i]).toBeNaN();
        continue;
      }
      const err = Math.abs(gpu[i] - ref[i]);
      worst = Math.max(worst, err);
      const bound = Math.abs(xs[i]) < 1 ? Math.min(2e-7, 1e-6 * Math.abs(ref[i])) : 2e-7;
      if (!(err <= bound)) throw new Error(`erf(${xs[i]}): gpu ${gpu[i]}, reference ${ref[i]}, error ${err} > ${bound}`);
    }
    expect(worst).toBeGreaterThan(0); // f32 cannot hold every value exactly: the check compared real numbers
  });
});

describe("erf: gradient", () => {
  test("vjp 2/√π·e^(−x²) against float64 central differences", () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: -3, max: 3, noNaN: true }), { minLength: 1, maxLength: 9 }), (v) => {
        expectGradOk({ inputs: { x: { shape: [v.length], data: v } }, f: (xs) => xs.x.erf() }, 1e-6);
      }),
      { seed: 61, numRuns: 20 },
    );
  });

  test("the gradient graph on Dawn against the reference", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", ["N"]);
    const [dx] = grad(x.erf().mul(x).sum(), [x]);
    const data = Array.from({ length: 101 }, (_, i) => Math.fround(-3 + i * 0.06));
    const inputs = { x: { shape: [data.length], data } };
    const graph = g.build(dx);
    const [ref, gpu] = [interpret(graph, inputs).out.data, (await runGpu(graph, inputs)).out.data];
    // erf (≤ 2e-7) plus x·(2/√π)e^(−x²) with exp's 3 + 2x² ULP: ≤ 1e-6 absolute here.
    for (let i = 0; i < data.length; i++) expect(Math.abs(gpu[i] - ref[i])).toBeLessThanOrEqual(1e-6);
  });
});
