import { describe, expect, test } from "vitest";
import { sineGrid, sineSamples, trainSine } from "../../examples/sine.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();

describe("sine regression", () => {
  test("samples and grid", () => {
    const s = sineSamples(100, 2, 7);
    expect(s.x.shape).toEqual([100, 1]);
    for (let i = 0; i < 100; i++) {
      expect(Math.abs(s.x.data[i])).toBeLessThanOrEqual(Math.PI);
      expect(s.y.data[i]).toBeCloseTo(Math.sin(2 * s.x.data[i]), 6);
    }
    expect(sineSamples(100, 2, 7).x.data).toEqual(s.x.data);
    const g = sineGrid(5, 1);
    expect([...g.x.data]).toEqual([-Math.PI, -Math.PI / 2, 0, Math.PI / 2, Math.PI].map(Math.fround));
  });

  test("an MLP fits sin(x) on held-out points", async () => {
    const r = await trainSine({ hidden: [16, 16], trainSize: 128, epochs: 100 });
    expect(r.baseline).toBeCloseTo(0.5, 2);
    // Predicting 0 scores ½; a fitted curve is far below that, and below its first epoch.
    expect(r.gridMse).toBeLessThan(0.02);
    expect(r.gridMse).toBeLessThan(r.firstLoss / 5);
    expect(r.gridMaxError).toBeLessThan(0.35);
  });
});
