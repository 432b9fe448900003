/** compileModel: fit / evaluate / predict / save / load on Dawn, on small problems whose answers
 *  are known: the figures fit reports agree with a float64 recomputation from predict, training
 *  runs read nothing back per step, validation and early stopping (restoring the best weights),
 *  and saving and loading — refusing a truncated file or another model's weights without
 *  changing anything. */
import { mkdtempSync, readFileSync, truncateSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test, vi } from "vitest";
import { dense } from "../../src/api/layers.ts";
import { sequential } from "../../src/api/model.ts";
import { adam, sgd } from "../../src/api/optimizers.ts";
import { mulberry32 } from "../../src/api/initializers.ts";
import { Executable } from "../../runtime/execute.ts";
import { compileModel, loadPredictor } from "../../training/compile-model.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();

/** Two Gaussian blobs in 3-D, one-hot labels; `flip` swaps the labels. */
function blobs(n: number, seed: number, flip = false) {
  const r = mulberry32(seed);
  const x = new Float32Array(n * 3);
  const y = new Float32Array(n * 2);
  for (let i = 0; i < n; i++) {
    const c = i % 2;
    for (let j = 0; j < 3; j++) x[i * 3 + j] = (c ? 1 : -1) + (r() - 0.5) * 1.5;
    y[i * 2 + (c ^ (flip ? 1 : 0))] = 1;
  }
  return { x: { shape: [n, 3], data: x }, y: { shape: [n, 2], data: y } };
}

const net = (units = 8) => sequential([dense(units, { activation: "relu" }), dense(2, { activation: "softmax" })], { inputShape: [3] });
const quiet = { verbose: 0 as const };

/** Mean categorical cross-entropy and accuracy, in float64, from predicted probabilities. */
function score(p: ArrayLike<number>, y: Float32Array): { loss: number; accuracy: number } {
  let loss = 0,
    right = 0;
  const n = y.length / 2;
  for (let i = 0; i < n; i++) {
    const c = y[2 * i + 1] === 1 ? 1 : 0;
    loss -= Math.log(Math.max(p[2 * i + c], 1e-7));
    if ((p[2 * i + 1] > p[2 * i] ? 1 : 0) === c) right++;
  }
  return { loss: loss / n, accuracy: right / n };
}

describe("compileModel", () => {
  test("fit learns two blobs; evaluate agrees with a float64 score of predict; no per-step readback", async () => {
    const { x, y } = blobs(101, 1); // 101 = 6 batches of 16 and one of 5
    const m = await compileModel(net(), {
      optimizer: adam({ learningRate: 0.05 }),
      loss: "categoricalCrossEntropy",
      metrics: ["accuracy"],
      seed: 3,
    });
    const run = vi.spyOn(Executable.prototype, "run");
    const h = await m.fit(x, y, { epochs: 4, batchSize: 16, ...quiet });
    // Every training step asks for no outputs: only the accumulated scalars are read, with `read`.
    expect(run.mock.calls).toHaveLength(4 * 7);
    expect(run.mock.calls.every((c) => c[1]?.length === 0)).toBe(true);
    run.mockRestore();
    expect(h.loss).toHaveLength(4);
    expect(h.loss[3]).toBeLessThan(h.loss[0]);
    expect(h.accuracy![3]).toBeGreaterThan(0.95);
    const e = await m.evaluate(x, y, { batchSize: 32 });
    const p = await m.predict(x, { batchSize: 32 });
    expect(p.shape).toEqual([101, 2]);
    const s = score(p.data as Float32Array, y.data);
    expect(e.loss).toBeCloseTo(s.loss, 5);
    expect(e.accuracy).toBeCloseTo(s.accuracy, 6);
    m.dispose();
  });

  test("validationSplit holds out the last examples, as validationData with them would", async () => {
    const { x, y } = blobs(40, 2);
    const fit = async (opts: object) => {
      const m = await compileModel(net(), {
        optimizer: sgd({ learningRate: 0.1 }),
        loss: "categoricalCrossEntropy",
        metrics: ["accuracy"],
        seed: 5,
      });
      const { x: gx, y: gy, ...rest } = opts as { x?: typeof x; y?: typeof y };
      const h = await m.fit(gx ?? x, gy ?? y, { epochs: 2, batchSize: 8, shuffle: false, ...quiet, ...rest });
      m.dispose();
      return h;
    };
    const split = await fit({ validationSplit: 0.25 });
    const tail = (t: typeof x, lo: number, hi: number) => ({
      shape: [hi - lo, t.shape[1]],
      data: t.data.slice(lo * t.shape[1], hi * t.shape[1]),
    });
    const given = await fit({ x: tail(x, 0, 30), y: tail(y, 0, 30), validationData: [tail(x, 30, 40), tail(y, 30, 40)] });
    expect(split.valLoss).toHaveLength(2);
    expect(split.valLoss).toEqual(given.valLoss);
    expect(split.loss).toEqual(given.loss);
  });

  test("early stopping: validation labels flipped, so val_loss only rises; stops after patience and restores epoch 1's weights", async () => {
    const train = blobs(48, 3);
    const val = blobs(16, 4, true);
    const m = await compileModel(net(), { optimizer: adam({ learningRate: 0.05 }), loss: "categoricalCrossEntropy", seed: 6 });
    const snapshots: Record<string, Float32Array>[] = [];
    const h = await m.fit(train.x, train.y, {
      epochs: 20,
      batchSize: 16,
      validationData: [val.x, val.y],
      earlyStopping: { patience: 2 },
      ...quiet,
      onEpoch: async () => void snapshots.push(await m.getWeights()),
    });
    expect(h.stoppedEarly).toBe(true);
    expect(h.bestEpoch).toBe(1);
    expect(h.epochs).toBe(3);
    expect(h.valLoss![2]).toBeGreaterThan(h.valLoss![0]);
    expect(await m.getWeights()).toEqual(snapshots[0]);
    expect((await m.evaluate(val.x, val.y)).loss).toBeCloseTo(h.valLoss![0], 6);
    m.dispose();
  });

  test("save / load round trip; loadPredictor runs the saved graph without the model's code", async () => {
    const { x, y } = blobs(32, 7);
    const dir = mkdtempSync(join(tmpdir(), "kiln-model-"));
    const a = await compileModel(net(), { optimizer: adam({ learningRate: 0.05 }), loss: "categoricalCrossEntropy", seed: 8 });
    await a.fit(x, y, { epochs: 2, batchSize: 8, ...quiet });
    await a.save(dir);
    const pa = await a.predict(x);
    const b = await compileModel(net(), { optimizer: adam({ learningRate: 0.05 }), loss: "categoricalCrossEntropy", seed: 99 });
    expect((await b.predict(x)).data).not.toEqual(pa.data);
    await b.load(dir);
    expect((await b.predict(x)).data).toEqual(pa.data);
    // The optimizer's state came along: one more epoch from either gives the same weights.
    await a.fit(x, y, { epochs: 1, batchSize: 8, shuffle: false, ...quiet });
    await b.fit(x, y, { epochs: 1, batchSize: 8, shuffle: false, ...quiet });
    expect(await b.getWeights()).toEqual(await a.getWeights());
    const standalone = await loadPredictor(dir);
    expect((await standalone.predict(x)).data).toEqual(pa.data);
    standalone.dispose();
    expect(readFileSync(join(dir, "model.kir"), "utf8")).toMatch(/^return y=%\d+$/m);
    a.dispose();
    b.dispose();
  });

  test("load refuses a truncated file and another model's weights, and changes nothing", async () => {
    const { x, y } = blobs(16, 9);
    const dir = mkdtempSync(join(tmpdir(), "kiln-model-"));
    const other = await compileModel(net(5), { optimizer: sgd({ learningRate: 0.1 }), loss: "categoricalCrossEntropy" });
    await other.save(dir);
    other.dispose();
    const m = await compileModel(net(), { optimizer: sgd({ learningRate: 0.1 }), loss: "categoricalCrossEntropy", seed: 1 });
    await m.fit(x, y, { epochs: 1, batchSize: 8, ...quiet });
    const before = await m.getWeights({ optimizer: true });
    await expect(m.load(dir)).rejects.toThrow(/"dense_1\/kernel": expected F32\[3,8\], got F32\[3,5\]/);
    const good = mkdtempSync(join(tmpdir(), "kiln-model-"));
    await m.save(good);
    const file = join(good, "weights.safetensors");
    truncateSync(file, statSync(file).size - 9);
    await expect(m.load(good)).rejects.toThrow(/weights\.safetensors/);
    expect(await m.getWeights({ optimizer: true })).toEqual(before);
    m.dispose();
  });

  test("a diverging run stops with a clear error, not NaN figures", async () => {
    const x = { shape: [8, 3], data: new Float32Array(24).fill(1e18) };
    const y = { shape: [8, 2], data: new Float32Array(16).fill(1e18) };
    const m = await compileModel(sequential([dense(2)], { inputShape: [3] }), { optimizer: sgd({ learningRate: 1e10 }), loss: "mse" });
    await expect(m.fit(x, y, { epochs: 3, batchSize: 8, ...quiet })).rejects.toThrow(
      /^fit: a parameter became NaN or infinite \(the loss was still finite\) at step 1 of epoch 1 \(training step 1\)/,
    );
    m.dispose();
  });

  test("data is checked against the model before anything runs: shapes, label dtype; plain arrays are fine", async () => {
    const m = await compileModel(net(), { optimizer: sgd({ learningRate: 0.1 }), loss: "categoricalCrossEntropy" });
    const { x, y } = blobs(10, 11);
    await expect(m.fit(x, { shape: [10, 3], data: new Float32Array(30) }, { epochs: 1, ...quiet })).rejects.toThrow(
      "fit: y has shape [10,3]; the model wants [N,2] (labels of f32[2])",
    );
    await expect(m.evaluate({ shape: [10, 4], data: new Float32Array(40) }, y)).rejects.toThrow(
      "evaluate: x has shape [10,4]; the model wants [N,3] (examples of f32[3])",
    );
    const sparse = await compileModel(net(), { optimizer: sgd({ learningRate: 0.1 }), loss: "sparseCategoricalCrossEntropy" });
    await expect(sparse.fit(x, { shape: [10], data: new Float32Array(10).fill(0.5) }, { epochs: 1, ...quiet })).rejects.toThrow(
      /fit: y: element 0 is 0\.5, not an i32/,
    );
    const h = await sparse.fit(
      { shape: [10, 3], data: Array.from(x.data) },
      { shape: [10], data: Array.from({ length: 10 }, (_, i) => i % 2) },
      { epochs: 1, batchSize: 4, ...quiet },
    );
    expect(Number.isFinite(h.loss[0])).toBe(true);
    m.dispose();
    sparse.dispose();
  });
});
