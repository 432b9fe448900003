/** The MNIST MLP example at reduced size: 1,000 training digits, 2 epochs of batch 32, both activations;
 *  scored on the 2,000 held out (chance is 10%). */
import { describe, expect, test } from "vitest";
import { trainMnistMlp } from "../../examples/mnist-mlp.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();

describe("examples/mnist-mlp", () => {
  test.each(["relu", "sigmoid"] as const)("%s: learns the digits", async (activation) => {
    const r = await trainMnistMlp({ activation, epochs: 2, trainSize: 1000, batchSize: 32, verbose: 0 });
    expect(r.history.loss[1]).toBeLessThan(r.history.loss[0]);
    expect(r.testAccuracy).toBeGreaterThan(activation === "relu" ? 0.85 : 0.6);
  });
});
