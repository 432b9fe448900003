import { describe, expect, test } from "vitest";
import { matchedArchitectures, parameterCount, parityData, trainParity } from "../../examples/parity.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();

describe("N-bit parity, deep vs shallow", () => {
  test("all 2^N patterns with their parity", () => {
    const { x, y } = parityData(3);
    expect(x.shape).toEqual([8, 3]);
    expect([...y.data]).toEqual([0, 1, 1, 0, 1, 0, 0, 1]);
    expect([...x.data.subarray(5 * 3, 6 * 3)]).toEqual([1, -1, 1]); // pattern 5 = 0b101, bit 0 first
    expect(() => parityData(0)).toThrow(/bits must be an integer in 1..16, got 0/);
  });

  test("the two nets have about the same number of parameters", () => {
    expect(parameterCount(6, [8, 8, 8, 8])).toBe(56 + 3 * 72 + 9);
    const [deep, shallow] = matchedArchitectures(6, 4, 8);
    expect(deep.hidden).toEqual([8, 8, 8, 8]);
    expect(shallow.hidden).toEqual([35]);
    const [d, s] = [parameterCount(6, deep.hidden), parameterCount(6, shallow.hidden)];
    expect(Math.abs(d - s)).toBeLessThanOrEqual(4);
  });

  test("both fit 4-bit parity", async () => {
    const bits = 4;
    const archs = matchedArchitectures(bits, 3, 4);
    for (const arch of archs) {
      const r = await trainParity(bits, arch, { epochs: 250, learningRate: 0.02 });
      expect(r.params, arch.name).toBe(parameterCount(bits, arch.hidden));
      expect(r.accuracy, arch.name).toBe(1);
      expect(r.solvedAt, arch.name).toBeLessThanOrEqual(250);
      // ln 2 ≈ 0.69 is the loss of saying ½ for every pattern.
      expect(r.loss, arch.name).toBeLessThan(0.05);
    }
  });
});
