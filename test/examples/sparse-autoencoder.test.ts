import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PNG } from "pngjs";
import { afterAll, expect, test } from "vitest";
import { trainSparseAutoencoder } from "../../examples/sparse-autoencoder.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();
const dir = mkdtempSync(join(tmpdir(), "kiln-sae-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Reduced: 500 digits, 49 hidden units. The same run with β = 0 is the control for the penalty:
// without it the sigmoid units sit far above ρ; with it their mean activation is pulled to ρ.
test("the sparse autoencoder learns to reconstruct, and the KL penalty pulls activations to ρ", async () => {
  const rho = 0.1;
  const base = { hidden: 49, epochs: 25, batchSize: 50, trainSize: 500, rho, learningRate: 1e-2, l2: 3e-4, verbose: 0 } as const;
  const png = join(dir, "filters.png");
  const sparse = await trainSparseAutoencoder({ ...base, beta: 3, png });
  const dense = await trainSparseAutoencoder({ ...base, beta: 0 });

  for (const r of [sparse, dense]) {
    // Untrained, every output is near ½ (≈ 90 per digit); trained, it must beat the mean digit
    // (the best reconstruction that ignores the input), so the code carries the digit.
    expect(r.reconstruction).toBeLessThan(0.3 * r.initialReconstruction);
    expect(r.reconstruction).toBeLessThan(r.meanImageReconstruction);
    expect(r.history.loss.at(-1)!).toBeLessThan(0.7 * r.history.loss[0]);
  }
  expect(Math.abs(sparse.meanActivation - rho)).toBeLessThan(0.05);
  expect(dense.meanActivation - sparse.meanActivation).toBeGreaterThan(0.1);

  // 49 filters of 28×28 in a 7×7 grid with 1-px gaps: 7·29 − 1 = 202 pixels a side.
  expect(sparse.filters).toHaveLength(49);
  expect(sparse.filters.every((f) => f.length === 784)).toBe(true);
  const img = PNG.sync.read(readFileSync(png));
  expect([img.width, img.height]).toEqual([202, 202]);
});
