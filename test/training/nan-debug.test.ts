/** NaN detection in fit: the parameters are watched as well as the loss (an all-finite reduction
 *  on the GPU, read with the loss sums), training stops naming the epoch and step, and the debug
 *  mode re-runs the failing step node by node and names the first node that made the NaN. */
import { afterEach, describe, expect, test } from "vitest";
import type { Tensor } from "../../src/api/builder.ts";
import { constant } from "../../src/api/initializers.ts";
import { dense, Layer } from "../../src/api/layers.ts";
import { sequential } from "../../src/api/model.ts";
import { sgd } from "../../src/api/optimizers.ts";
import { compileModel } from "../../training/compile-model.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();

/** A user's layer with a bug: log of values that can be negative. */
class BadLog extends Layer {
  readonly kind = "bad_log";
  call(inputs: readonly Tensor[]): Tensor {
    return this.one(inputs).log();
  }
}
/** √|x|: finite forward, but its gradient at x = 0 is ∞·sign(0) = ∞·0 = NaN. */
class RootAbs extends Layer {
  readonly kind = "root_abs";
  call(inputs: readonly Tensor[]): Tensor {
    return this.one(inputs).abs().sqrt();
  }
}

// Inputs of either sign, so dense_1's outputs are negative for some examples.
const x = { shape: [8, 2], data: [1, 2, -1, -2, 3, 1, -3, -1, 2, 2, -2, -2, 1, 0, -1, 0] };
const y = { shape: [8, 1], data: [1, 0, 1, 0, 1, 0, 1, 0] };
const quiet = { verbose: 0 as const };
const LOG_LINE = /nan-debug\.test\.ts:(\d+)/;

afterEach(() => {
  delete process.env.KILN_DEBUG_NANS;
});

describe("NaN in fit", () => {
  test("a parameter turning NaN while the loss is still finite stops fit at that step", async () => {
    const m = await compileModel(sequential([dense(3, { kernelInitializer: constant(0) }), new RootAbs(), dense(1)], { inputShape: [2] }), {
      optimizer: sgd({ learningRate: 0.1 }),
      loss: "mse",
    });
    await expect(m.fit(x, y, { epochs: 3, batchSize: 4, shuffle: false, ...quiet })).rejects.toThrow(
      /^fit: a parameter became NaN or infinite \(the loss was still finite\) at step 1 of epoch 1 \(training step 1\); .*debugNans: true\b.*KILN_DEBUG_NANS=1/s,
    );
    m.dispose();
  });

  test("debugNans names the first node that made the NaN: its op, its layer and the user's line", async () => {
    const bad = new BadLog(); // the line the message names
    const line = Number(LOG_LINE.exec(bad.site)![1]);
    const m = await compileModel(sequential([dense(2, { kernelInitializer: constant(1) }), bad, dense(1)], { inputShape: [2] }), {
      optimizer: sgd({ learningRate: 0.1 }),
      loss: "mse",
      debugNans: true,
    });
    const err = await m.fit(x, y, { epochs: 2, batchSize: 4, shuffle: false, ...quiet }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    const msg = (err as Error).message;
    expect(msg).toMatch(/^fit: the training loss became NaN or infinite at step 1 of epoch 1 \(training step 1\)/);
    expect(msg).toContain(`the first non-finite value in that step (re-run node by node in float64 on the same batch and weights): log %`);
    expect(msg).toContain(`@ nan-debug.test.ts:${line} (bad_log_1) gave NaN (f32[B,2], element `);
    m.dispose();
  });

  test("KILN_DEBUG_NANS=1 turns the debug mode on; a NaN in the training data is refused before training", async () => {
    process.env.KILN_DEBUG_NANS = "1";
    const m = await compileModel(sequential([dense(2, { kernelInitializer: constant(1) }), new BadLog(), dense(1)], { inputShape: [2] }), {
      optimizer: sgd({ learningRate: 0.1 }),
      loss: "mse",
    });
    await expect(m.fit(x, y, { epochs: 1, batchSize: 4, shuffle: false, ...quiet })).rejects.toThrow(/\(bad_log_\d+\) gave NaN/);
    const poisoned = { shape: [8, 2], data: x.data.map((v, i) => (i === 5 ? NaN : v)) };
    await expect(m.fit(poisoned, y, { epochs: 1, ...quiet })).rejects.toThrow(
      "fit: x: example 2 holds NaN (element 5 of the data); training data must be finite numbers — drop or impute that example",
    );
    m.dispose();
  });
});
