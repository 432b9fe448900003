import { describe, expect, test } from "vitest";
import { trainGate, truthTable } from "../../examples/perceptron-xor.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();

describe("perceptron vs XOR", () => {
  test("truth tables", () => {
    expect([...truthTable("and").y.data]).toEqual([0, 0, 0, 1]);
    expect([...truthTable("or").y.data]).toEqual([0, 1, 1, 1]);
    expect([...truthTable("xor").y.data]).toEqual([0, 1, 1, 0]);
  });

  test("one sigmoid unit learns AND and OR", async () => {
    for (const gate of ["and", "or"] as const) {
      const r = await trainGate(gate, "perceptron", { epochs: 200 });
      expect(r.accuracy, gate).toBe(1);
      // ln 2 ≈ 0.69 is the loss of always saying ½; a separating line drives it well below.
      expect(r.loss, gate).toBeLessThan(0.15);
      expect(r.loss, gate).toBeLessThan(r.firstLoss / 4);
    }
  });

  test("one sigmoid unit cannot learn XOR; a 2-4-1 network can", async () => {
    const p = await trainGate("xor", "perceptron", { epochs: 200 });
    // No line puts more than 3 of the 4 points on the right side, at any epoch.
    expect(p.bestTrainAccuracy).toBeLessThanOrEqual(0.75);
    expect(p.accuracy).toBeLessThanOrEqual(0.75);
    expect(p.loss).toBeGreaterThan(0.6);
    const m = await trainGate("xor", "mlp", { epochs: 1000, learningRate: 0.5 });
    expect(m.accuracy).toBe(1);
    expect(m.loss).toBeLessThan(0.05);
  });
});
