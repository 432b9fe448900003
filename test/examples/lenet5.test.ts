import { expect, test } from "vitest";
import { trainLeNet5 } from "../../examples/lenet5.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();

// A reduced run: a thousand digits, two epochs. Chance is 10%; a LeNet that learns nothing, or
// whose convolutions or pooling pass wrong gradients, stays far below the bar on held-out digits.
test("LeNet-5 learns MNIST from a thousand digits", async () => {
  const r = await trainLeNet5({ epochs: 2, trainSize: 1000, batchSize: 32, learningRate: 3e-3, verbose: 0 });
  expect(r.trainSize).toBe(1000);
  expect(r.history.epochs).toBe(2);
  // The loss starts near ln 10 ≈ 2.30 (uniform softmax); training must bring it well down.
  expect(r.history.loss[1]).toBeLessThan(r.history.loss[0]);
  expect(r.history.loss[1]).toBeLessThan(1.0);
  expect(r.testLoss).toBeLessThan(1.0);
  expect(r.testAccuracy).toBeGreaterThan(0.75);
});
