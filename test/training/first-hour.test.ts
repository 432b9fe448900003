/** What a new user sees from fit: the plot's folder is made, a plot that cannot be written loses
 *  neither the history nor the weights, the first compile is announced with its kernel count,
 *  early stopping says when it stopped and whose weights it kept, and leaky ReLU's α and the
 *  functional batch norm are there. */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { GraphBuilder } from "../../src/api/builder.ts";
import { batchNormalization } from "../../src/api/composites.ts";
import { activation, dense, leakyReluLayer } from "../../src/api/layers.ts";
import { sequential } from "../../src/api/model.ts";
import { sgd } from "../../src/api/optimizers.ts";
import { interpret } from "../../src/interpret.ts";
import { compileModel } from "../../training/compile-model.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();

const x = { shape: [6, 2], data: [0, 1, 1, 0, 1, 1, 0, 0, 2, 1, 1, 2] };
const y = { shape: [6, 1], data: [1, 1, 2, 0, 3, 3] };
const net = () => sequential([dense(4, { activation: "leakyRelu", alpha: 0.2 }), dense(1)], { inputShape: [2] });

function capture() {
  let text = "";
  return { stream: { write: (s: string) => ((text += s), true), isTTY: false }, text: () => text };
}

describe("fit, from a new user's side", () => {
  test("plot makes its folder; a plot that cannot be written keeps the history and the trained weights", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-plot-"));
    const m = await compileModel(net(), { optimizer: sgd({ learningRate: 0.05 }), loss: "mse" });
    const h = await m.fit(x, y, { epochs: 2, batchSize: 3, verbose: 0, plot: join(dir, "out", "curves.svg") });
    expect(readFileSync(join(dir, "out", "curves.svg"), "utf8")).toContain("<svg");
    expect(h.plotError).toBeUndefined();
    writeFileSync(join(dir, "file"), "not a folder");
    const before = await m.getWeights();
    const log = capture();
    const h2 = await m.fit(x, y, { epochs: 2, batchSize: 3, verbose: 0, stream: log.stream, plot: join(dir, "file", "curves.svg") });
    expect(h2.loss).toHaveLength(2);
    expect(h2.plotError).toMatch(new RegExp(`^could not write the plot ${join(dir, "file", "curves.svg")}: `));
    expect(log.text()).toContain("(the history and the trained weights are kept)");
    expect(await m.getWeights()).not.toEqual(before);
    m.dispose();
  });

  test("the first epoch says the kernels are being compiled, and how many", async () => {
    const m = await compileModel(net(), { optimizer: sgd({ learningRate: 0.05 }), loss: "mse" });
    const log = capture();
    await m.fit(x, y, { epochs: 2, batchSize: 3, verbose: 2, stream: log.stream, validationSplit: 0.5 });
    const lines = log.text().split("\n");
    expect(lines[0]).toBe("compiling the training step (batch 3) into GPU kernels…");
    expect(lines[1]).toMatch(/^compiled the training step: \d+ kernels in \d+\.\ds$/);
    expect(log.text()).toMatch(/compiled evaluation: \d+ kernels in/);
    // A second fit compiles nothing.
    const again = capture();
    await m.fit(x, y, { epochs: 1, batchSize: 3, verbose: 2, stream: again.stream });
    expect(again.text()).not.toContain("compiling");
    m.dispose();
  });

  test("early stopping says when it stopped and which epoch's weights it restored", async () => {
    const m = await compileModel(net(), { optimizer: sgd({ learningRate: 0.05 }), loss: "mse" });
    const log = capture();
    // Validation labels far from anything the training labels teach: val_loss rises from epoch 1.
    const h = await m.fit(x, y, {
      epochs: 10,
      batchSize: 3,
      verbose: 2,
      stream: log.stream,
      validationData: [x, { shape: [6, 1], data: [-50, -50, -50, -50, -50, -50] }],
      earlyStopping: { patience: 2 },
    });
    expect(h.stoppedEarly).toBe(true);
    expect(log.text()).toContain(
      `early stopping: val_loss did not improve for 2 epochs; stopped after epoch ${h.epochs} of 10, restored the weights of epoch ${h.bestEpoch}`,
    );
    m.dispose();
  });
});

describe("layers", () => {
  test("leaky ReLU's alpha in dense, activation and leakyReluLayer; it needs the leakyRelu activation", () => {
    expect(() => dense(3, { activation: "relu", alpha: 0.2 })).toThrow(/alpha is leaky ReLU's slope; it needs activation: "leakyRelu"/);
    expect(() => leakyReluLayer({ alpha: -1 })).toThrow(/alpha must be a number in \[0, ∞\), got -1/);
    expect(() => activation("leakyRelu", { alpha: 0.3 })).not.toThrow();
  });

  test("batchNormalization is a composite: (x − mean)/√(var + ε)·γ + β", () => {
    const g = new GraphBuilder();
    const xs = g.input("x", "f32", [2, 2]);
    const c = (v: number[]) => g.constant(v, "f32", [2]);
    const out = batchNormalization(xs, { mean: c([1, 2]), variance: c([4, 9]), gamma: c([2, 1]), beta: c([0, 1]), epsilon: 1e-9 });
    const r = interpret(g.build({ y: out }), { x: { shape: [2, 2], data: [3, 5, 1, 2] } });
    expect(Array.from(r.y.data).map((v) => Math.round(v * 1e6) / 1e6)).toEqual([2, 2, 0, 1]);
  });
});
