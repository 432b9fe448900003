/** The model API refuses bad input with a message in the user's terms, before anything trains:
 *  data forms, labels out of range, epochs and batchSize, unknown option names, layer
 *  hyper-parameters, a missing inputShape, a dense layer on an image, aliases of metric and
 *  optimizer names, the loss's call site, and loadPredictor with another model's weights. */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { batchNorm, conv2d, dense, dropout, flatten, maxPool2d } from "../../src/api/layers.ts";
import { sequential } from "../../src/api/model.ts";
import { optimizerByName } from "../../src/api/optimizers.ts";
import { compileModel, loadPredictor } from "../../training/compile-model.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();

const classifier = () => sequential([dense(4, { activation: "relu" }), dense(3, { activation: "softmax" })], { inputShape: [2] });
const sparse = () => compileModel(classifier(), { optimizer: "adam", loss: "sparseCategoricalCrossEntropy", metrics: ["accuracy"] });
const x4 = { shape: [4, 2], data: [0, 1, 1, 0, 1, 1, 0, 0] };
const quiet = { verbose: 0 as const };

describe("data", () => {
  test("sparse labels out of range are refused on the host, naming the label and the class count", async () => {
    const m = await sparse();
    await expect(m.fit(x4, [0, 1, 7, 2], { epochs: 1, ...quiet })).rejects.toThrow(
      "fit: y: label 2 is 7, but the model has 3 classes: sparse labels must be integers 0 … 2 (is the last layer's size the number of classes?)",
    );
    await expect(m.fit(x4, [0, -1, 1, 2], { epochs: 1, ...quiet })).rejects.toThrow("fit: y: label 1 is -1, but the model has 3 classes");
    await expect(m.evaluate(x4, [0, 1, 2, 3])).rejects.toThrow("evaluate: y: label 3 is 3, but the model has 3 classes");
  });

  test("strings and other non-numbers in x say that the data must be numbers", async () => {
    const m = await sparse();
    await expect(
      m.fit(
        [
          [0, "1"],
          [1, 0],
        ],
        [0, 1],
        { epochs: 1, ...quiet },
      ),
    ).rejects.toThrow('fit: x[0][1] is the string "1"; the data must be numbers (convert strings with Number(...) first)');
    await expect(m.predict({ shape: [1, 2], data: [0, null] })).rejects.toThrow("predict: x: element 1 is null; the data must be numbers");
  });

  test("a wrong form says which forms are accepted", async () => {
    const m = await sparse();
    await expect(m.predict("0,1")).rejects.toThrow(
      'predict: x must be { shape, data }, a typed array, or a nested array of numbers (e.g. [[0.1, 0.2, 0.3], …] for examples of shape [2]); got the string "0,1"',
    );
    await expect(m.predict({ rows: 1 })).rejects.toThrow("got an object with keys rows");
    await expect(m.predict([[0, 1], [1]])).rejects.toThrow(
      "predict: x[1] is an array of 1 where [2] was expected: nested arrays must be rectangular",
    );
    await expect(m.predict(new Float32Array(3))).rejects.toThrow("predict: x: 3 values are not a whole number of examples of shape [2]");
    await expect(m.predict({ shape: [2, 2], data: [1, 2, 3] })).rejects.toThrow("predict: x: shape [2,2] holds 4 values but data has 3");
  });

  test("nested arrays, flat typed arrays and { shape, data } give the same predictions", async () => {
    const m = await sparse();
    const a = await m.predict([
      [0, 1],
      [1, 0],
    ]);
    const b = await m.predict(Float32Array.from([0, 1, 1, 0]));
    const c = await m.predict({ shape: [2, 2], data: [0, 1, 1, 0] });
    expect(a.shape).toEqual([2, 3]);
    expect(Array.from(b.data)).toEqual(Array.from(a.data));
    expect(Array.from(c.data)).toEqual(Array.from(a.data));
    m.dispose();
  });
});

describe("options", () => {
  test("epochs and batchSize must be integers in range; a missing epochs is named", async () => {
    const m = await sparse();
    const y = [0, 1, 2, 0];
    const fit = (o: object) => m.fit(x4, y, o as never);
    await expect(fit({ batchSize: 2 })).rejects.toThrow("fit: epochs is missing: say how many passes over the data, e.g. { epochs: 10 }");
    await expect(fit({ epochs: -1 })).rejects.toThrow("fit: epochs must be an integer ≥ 0, got -1");
    await expect(fit({ epochs: 1.5 })).rejects.toThrow("fit: epochs must be an integer ≥ 0, got 1.5");
    await expect(fit({ epochs: NaN })).rejects.toThrow("fit: epochs must be an integer ≥ 0, got NaN");
    await expect(fit({ epochs: 1, batchSize: NaN })).rejects.toThrow("fit: batchSize must be an integer ≥ 1, got NaN");
    await expect(fit({ epochs: 1, batchSize: 2.5 })).rejects.toThrow("fit: batchSize must be an integer ≥ 1, got 2.5");
    await expect(fit({ epochs: 1, batchSize: -1 })).rejects.toThrow("fit: batchSize must be an integer ≥ 1, got -1");
    await expect(fit({ epochs: 1, validationSplit: 1 })).rejects.toThrow("fit: validationSplit must be a number in [0, 1), got 1");
    await expect(fit({ epochs: 1, validationSplit: 0.5, validationData: [x4, y] })).rejects.toThrow(
      "fit: give validationSplit or validationData, not both",
    );
    await expect(m.evaluate(x4, y, { batchSize: 0 })).rejects.toThrow("evaluate: batchSize must be an integer ≥ 1, got 0");
    await expect(m.predict(x4, { batchSize: 0 })).rejects.toThrow("predict: batchSize must be an integer ≥ 1, got 0");
    await expect(m.fit(x4, y, undefined as never)).rejects.toThrow("fit: needs options with the number of epochs");
  });

  test("0 epochs trains nothing and returns an empty history, as Keras", async () => {
    const m = await sparse();
    const before = await m.getWeights();
    const h = await m.fit(x4, [0, 1, 2, 0], { epochs: 0, ...quiet });
    expect(h.epochs).toBe(0);
    expect(h.loss).toEqual([]);
    expect(await m.getWeights()).toEqual(before);
    m.dispose();
  });

  test("unknown option names are refused with a did-you-mean", async () => {
    const m = await sparse();
    await expect(m.fit(x4, [0, 1, 2, 0], { epoch: 3 } as never)).rejects.toThrow(
      'fit: unknown option "epoch" (did you mean "epochs"?); the options are epochs, batchSize,',
    );
    expect(() => dense(3, { activaton: "relu" } as never)).toThrow(
      /dense @ validation\.test\.ts:\d+: unknown option "activaton" \(did you mean "activation"\?\)/,
    );
    await expect(compileModel(classifier(), { optimizer: "adam", loss: "mse", metric: ["accuracy"] } as never)).rejects.toThrow(
      'compileModel: unknown option "metric" (did you mean "metrics"?)',
    );
    await expect(m.fit(x4, [0, 1, 2, 0], { epochs: 1, earlyStopping: { patiance: 2 } } as never)).rejects.toThrow(
      'fit earlyStopping: unknown option "patiance" (did you mean "patience"?)',
    );
  });

  test("layer hyper-parameters out of range are refused where the layer is made", () => {
    expect(() => dense(0)).toThrow(/dense @ validation\.test\.ts:\d+: units \(the output size\) must be an integer ≥ 1, got 0/);
    expect(() => conv2d(4, 3, { padding: "full" as never })).toThrow(
      /conv2d @ .*: padding must be one of "same", "valid", got the string "full"/,
    );
    expect(() => conv2d(4, 0)).toThrow(/kernel size must be an integer ≥ 1, got 0/);
    expect(() => batchNorm({ momentum: 2 })).toThrow(
      /batch_norm @ .*: momentum \(the moving statistics' decay, Keras 0\.99\) must be a number in \[0, 1\], got 2/,
    );
    expect(() => dropout(1)).toThrow("dropout: rate must be in [0, 1), got 1");
    expect(() => maxPool2d(0)).toThrow(/pool size must be an integer ≥ 1, got 0/);
    expect(() => dense(3, { activation: "rleu" as never })).toThrow(
      /activation must be one of .*got the string "rleu" \(did you mean "relu"\?\)/,
    );
  });

  test("l2 must not be negative; metric and optimizer names take Keras's aliases", async () => {
    await expect(compileModel(classifier(), { optimizer: "adam", loss: "mse", l2: -1 })).rejects.toThrow(
      "compileModel: l2 (the weight decay λ) must be a number in [0, ∞), got -1",
    );
    await expect(compileModel(classifier(), { optimizer: "adam", loss: "mse", metrics: ["accurcy" as never] })).rejects.toThrow(
      'unknown metric "accurcy" (did you mean "accuracy"?)',
    );
    const m = await compileModel(classifier(), { optimizer: "Adam", loss: "sparse_categorical_crossentropy", metrics: ["acc"] });
    expect(m.config.metrics).toEqual(["accuracy"]);
    expect(optimizerByName("SGD").name).toBe("sgd");
    expect(optimizerByName("momentum").name).toBe("sgd (momentum)");
    expect(optimizerByName("Nesterov").name).toBe("sgd (nesterov)");
    expect(() => optimizerByName("adma" as never)).toThrow('unknown optimizer "adma" (did you mean "adam"?)');
    await expect(m.fit(x4, [0, 1, 2, 0], { epochs: 1, earlyStopping: { monitor: "val_acc" }, ...quiet })).rejects.toThrow(
      "fit: early stopping monitors val_accuracy but there is no validation data",
    );
  });
});

describe("models", () => {
  test("sequential without inputShape says what to give", () => {
    expect(() => sequential([dense(3)], {} as never)).toThrow(
      "sequential: needs inputShape, the shape of one example without the batch dim: sequential(layers, { inputShape: [784] })",
    );
    expect(() => sequential([dense(3)], undefined as never)).toThrow("sequential: needs inputShape");
  });

  test("a dense layer on an unflattened image hints at flatten", () => {
    expect(() => sequential([conv2d(2, 3), dense(10)], { inputShape: [8, 8, 1] })).toThrow(
      /dense_1 @ validation\.test\.ts:\d+: its input is an image f32\[B,6,6,2\]; dense acts on the last axis only — put flatten\(\) before it/,
    );
    expect(() => sequential([conv2d(2, 3), flatten(), dense(10)], { inputShape: [8, 8, 1] })).not.toThrow();
  });

  test("a loss that does not fit the model names the user's compileModel line", async () => {
    const m = sequential([dense(3)], { inputShape: [2] });
    const custom = {
      name: "mine",
      labels: () => ({ dtype: "f32" as const, shape: ["B" as const, 3] }),
      compute: (p: never) => (p as { matmul(x: unknown): never }).matmul(p),
    };
    await expect(compileModel(m, { optimizer: "sgd", loss: custom as never })).rejects.toThrow(/@ validation\.test\.ts:\d+ \(loss mine\)/);
  });

  test("loadPredictor refuses weights whose shapes differ from the graph's", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-val-"));
    const small = await compileModel(sequential([dense(4), dense(3)], { inputShape: [2], name: "x" }), { optimizer: "sgd", loss: "mse" });
    await small.save(join(dir, "a"));
    const big = await compileModel(sequential([dense(4), dense(3)], { inputShape: [5], name: "x" }), { optimizer: "sgd", loss: "mse" });
    await big.save(join(dir, "b"));
    // b's graph with a's weights: dense_1/kernel is [2,4] where the graph reads [5,4].
    const { copyFileSync } = await import("node:fs");
    copyFileSync(join(dir, "a", "weights.safetensors"), join(dir, "b", "weights.safetensors"));
    await expect(loadPredictor(join(dir, "b"))).rejects.toThrow(
      "weights.safetensors holds dense_1/kernel as [2,4], but model.kir reads it as f32[5,4]: the weights belong to another model",
    );
    await expect(loadPredictor(join(dir, "nothing"))).rejects.toThrow(`loadPredictor: no such file ${join(dir, "nothing", "model.kir")}`);
    small.dispose();
    big.dispose();
  });
});
