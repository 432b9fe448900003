/** Mixed-precision training on Dawn (compileModel precision "mixed": f16 activations and
 *  gradients, f32 weights, optimizer state and arithmetic) with dynamic loss scaling
 *  (src/api/loss-scaling.ts): it trains like f32, a step whose scaled gradients overflow f16 is
 *  skipped with the weights unchanged and the scale halved, and a device without `shader-f16`
 *  is refused by name. */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { acquireGpu } from "../../runtime/device.ts";
import { Executable } from "../../runtime/execute.ts";
import { dense } from "../../src/api/layers.ts";
import { sequential, trainStepGraph } from "../../src/api/model.ts";
import { adam, sgd } from "../../src/api/optimizers.ts";
import { constant, mulberry32 } from "../../src/api/initializers.ts";
import { compileModel } from "../../training/compile-model.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();

/** Three Gaussian blobs in 4-D, one-hot labels. */
function blobs(n: number, seed: number) {
  const r = mulberry32(seed);
  const x = new Float32Array(n * 4);
  const y = new Float32Array(n * 3);
  for (let i = 0; i < n; i++) {
    const c = i % 3;
    for (let j = 0; j < 4; j++) x[i * 4 + j] = (j === c ? 2 : -0.5) + (r() - 0.5) * 2;
    y[i * 3 + c] = 1;
  }
  return { x: { shape: [n, 4], data: x }, y: { shape: [n, 3], data: y } };
}

const net = () =>
  sequential([dense(16, { activation: "relu" }), dense(16, { activation: "tanh" }), dense(3, { activation: "softmax" })], {
    inputShape: [4],
  });
const quiet = { verbose: 0 as const };
const config = {
  optimizer: adam({ learningRate: 0.02 }),
  loss: "categoricalCrossEntropy" as const,
  metrics: ["accuracy" as const],
  seed: 5,
};

describe("mixed-precision training", () => {
  test("trains like f32: the same loss curve within f16's rounding, no step skipped at the default scale", async () => {
    const { x, y } = blobs(150, 2);
    const run = async (precision: "f32" | "mixed") => {
      const m = await compileModel(net(), { ...config, precision });
      const h = await m.fit(x, y, { epochs: 6, batchSize: 32, shuffle: false, ...quiet });
      m.dispose();
      return h;
    };
    const [f32, mixed] = [await run("f32"), await run("mixed")];
    expect(f32.skippedSteps).toBeUndefined();
    expect(mixed.skippedSteps).toEqual([0, 0, 0, 0, 0, 0]);
    expect(mixed.lossScale).toEqual([65536, 65536, 65536, 65536, 65536, 65536]);
    // Both learn: the loss falls by more than half, accuracy ends high.
    expect(mixed.loss[5]).toBeLessThan(mixed.loss[0] / 2);
    expect(mixed.accuracy![5]).toBeGreaterThan(0.9);
    // Epoch by epoch within 5% of f32's loss: 30 Adam steps of 0.02 from the same start, each
    // gradient off by a few f16 roundings (≈ 1e-3 relative), drift far less than that.
    for (let e = 0; e < 6; e++) expect(Math.abs(mixed.loss[e] - f32.loss[e])).toBeLessThan(0.05 * f32.loss[e]);
  });

  test("a scale that overflows f16 skips the step: weights and Adam's slots unchanged, the scale halved", async () => {
    const { x, y } = blobs(32, 3);
    // S = 2⁴⁰: gradients of order 1e-2 become ≈ 1e10 when stored, past f16's 65504.
    const m = await compileModel(net(), { ...config, precision: "mixed", lossScaling: { initial: 2 ** 40 } });
    const before = await m.getWeights({ optimizer: true });
    const h = await m.fit(x, y, { epochs: 1, batchSize: 32, ...quiet });
    expect(h.skippedSteps).toEqual([1]);
    expect(h.lossScale).toEqual([2 ** 39]);
    const after = await m.getWeights({ optimizer: true });
    for (const [name, v] of Object.entries(before)) {
      if (name.startsWith("amp/") || name === "step/t") continue;
      expect(Array.from(after[name]), name).toEqual(Array.from(v));
    }
    expect(after["amp/scale"][0]).toBe(2 ** 39);
    expect(after["amp/skipped"][0]).toBe(1);
    // The scale halves on each bad step until the gradients fit f16, then training moves on.
    const h2 = await m.fit(x, y, { epochs: 30, batchSize: 32, ...quiet });
    const skipped = h2.skippedSteps!.reduce((a, b) => a + b, 0);
    expect(skipped).toBeGreaterThan(5);
    expect(skipped).toBeLessThan(30);
    expect(h2.lossScale![29]).toBeLessThan(2 ** 30);
    const trained = await m.getWeights();
    expect(Array.from(trained["dense_1/kernel"] ?? Object.values(trained)[0])).not.toEqual(Array.from(Object.values(before)[0]));
    m.dispose();
  });

  test("the scale doubles after growthInterval good steps in a row", async () => {
    const { x, y } = blobs(64, 4);
    const m = await compileModel(net(), { ...config, precision: "mixed", lossScaling: { initial: 256, growthInterval: 3 } });
    const h = await m.fit(x, y, { epochs: 3, batchSize: 16, ...quiet }); // 4 steps an epoch
    expect(h.skippedSteps).toEqual([0, 0, 0]);
    // 12 good steps: doubled after steps 3, 6, 9 and 12.
    expect(h.lossScale).toEqual([512, 1024, 4096]);
    m.dispose();
  });

  test("loss scaling in f32 gives the same step as none (S = 2¹⁰ is a power of two: exact)", async () => {
    const { x, y } = blobs(48, 6);
    const run = async (lossScaling: false | { initial: number }) => {
      const m = await compileModel(net(), { ...config, optimizer: sgd({ learningRate: 0.1 }), lossScaling });
      await m.fit(x, y, { epochs: 2, batchSize: 16, shuffle: false, ...quiet });
      const w = await m.getWeights();
      m.dispose();
      return w;
    };
    const [plain, scaled] = [await run(false), await run({ initial: 1024 })];
    for (const [name, v] of Object.entries(plain)) expect(Array.from(scaled[name]), name).toEqual(Array.from(v));
  });

  test("options are checked", async () => {
    await expect(compileModel(net(), { ...config, precision: "half" as never })).rejects.toThrow(/precision/);
    await expect(compileModel(net(), { ...config, lossScaling: { initial: 0 } })).rejects.toThrow(/lossScaling.initial/);
    await expect(compileModel(net(), { ...config, lossScaling: { growth: 3 } as never })).rejects.toThrow(/growth/);
  });

  test("a device without shader-f16 refuses a mixed-precision program by name", async () => {
    const gpu = await acquireGpu();
    const mg = trainStepGraph(net(), { ...config, lossScaling: {} });
    const program = compile(mg.graph, { target: gpu.target, state: mg.state, dims: { B: 8 }, precision: "mixed" });
    await expect(Executable.load(program, { ...gpu, features: new Set() })).rejects.toThrow(
      /mixed precision .* needs the WebGPU feature "shader-f16", which this adapter .* does not offer; compile with precision: "f32"/,
    );
    // The same program in f32 needs nothing.
    const f32 = await Executable.load(compile(mg.graph, { target: gpu.target, state: mg.state, dims: { B: 8 } }), {
      ...gpu,
      features: new Set(),
    });
    f32.dispose();
  });
});

describe("f16 overflow in the forward pass is never silent", () => {
  // x·W reaches 3·20000 + 1·20000 = 80000: finite in f32, past f16's 65504.
  const x = { shape: [4, 2], data: [3, 1, 1, 3, -3, -1, 2, 2] };
  const y = { shape: [4, 1], data: [1, 0, 1, 0] };
  const big = () => sequential([dense(4, { kernelInitializer: constant(20000) }), dense(1)], { inputShape: [2] });
  const opts = { optimizer: sgd({ learningRate: 1e-9 }), loss: "mse" as const, precision: "mixed" as const };

  test("fit stops at the step and says that f16 overflows past 65504; f32 trains on", async () => {
    const m = await compileModel(big(), opts);
    await expect(m.fit(x, y, { epochs: 1, batchSize: 4, ...quiet })).rejects.toThrow(
      /^fit: the training loss became NaN or infinite at step 1 of epoch 1 .*in mixed precision an activation or gradient past f16's largest value, 65504, is stored as inf/s,
    );
    m.dispose();
    const f = await compileModel(big(), { ...opts, precision: "f32" });
    expect(Number.isFinite((await f.fit(x, y, { epochs: 1, batchSize: 4, ...quiet })).loss[0])).toBe(true);
    f.dispose();
  });

  test("debugNans names the layer whose value passed f16's range", async () => {
    const m = await compileModel(big(), { ...opts, debugNans: true });
    await expect(m.fit(x, y, { epochs: 1, batchSize: 4, ...quiet })).rejects.toThrow(
      /the first non-finite value in that step .*: \w+ %\d+ @ .*\(dense_1\) gave 80000 \(f32\[B,4\], element 0\), past f16's largest finite value 65504: in mixed precision it is stored as f16, so the GPU held \+inf/s,
    );
    m.dispose();
  });
});

describe("saved weights across precisions", () => {
  test("a model trained in mixed precision saves its scaler's state; f32 loads the weights, and back", async () => {
    const { x, y } = blobs(32, 9);
    const dir = mkdtempSync(join(tmpdir(), "kiln-amp-"));
    const m = await compileModel(net(), { ...config, precision: "mixed", lossScaling: { initial: 1024, growthInterval: 1 } });
    await m.fit(x, y, { epochs: 1, batchSize: 16, ...quiet }); // 2 good steps: S = 4096
    await m.save(join(dir, "mixed"));
    const w = await m.getWeights();
    const f = await compileModel(net(), config);
    await f.load(join(dir, "mixed"));
    expect(await f.getWeights()).toEqual(w);
    await f.save(join(dir, "f32"));
    const back = await compileModel(net(), { ...config, precision: "mixed" });
    await back.load(join(dir, "mixed"));
    expect((await back.getWeights({ optimizer: true }))["amp/scale"][0]).toBe(4096);
    await back.load(join(dir, "f32")); // no scaler state: it starts afresh
    expect((await back.getWeights({ optimizer: true }))["amp/scale"][0]).toBe(65536);
    expect(await back.getWeights()).toEqual(w);
    for (const t of [m, f, back]) t.dispose();
  });
});
