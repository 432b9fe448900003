/** Fine-tuning an imported ONNX CNN on Dawn: the loss falls; one step's updated weights match
 *  the float64 reference; training only the last layer leaves the others bit for bit; the
 *  saved folder predicts with the fine-tuned weights; the training bundle runs standalone and
 *  its updated weights match the in-process steps. */
import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildBundle } from "../../cli/build.ts";
import { fineTuneGraph } from "../../src/api/fine-tune.ts";
import { adam, sgd } from "../../src/api/optimizers.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import { loadPredictor } from "../../training/compile-model.ts";
import { fineTune } from "../../training/fine-tune.ts";
import { removeStandalone, runStandalone, standalone, worst } from "../helpers/bundle.ts";
import { useGpu } from "../helpers/gpu.ts";
import { CNN, CONV_WEIGHTS, FC_WEIGHTS, cnnBatch, importCnn } from "../helpers/onnx-cnn.ts";

useGpu();
afterAll(removeStandalone);

const N = 12;
const { channels, size, classes } = CNN;
const xOf = (x: Float32Array, n = N): HostTensor => ({ shape: [n, channels, size, size], data: x });

describe("fine-tuning an imported ONNX CNN on Dawn", () => {
  it("the loss falls over 30 Adam steps, and the first step's weights and Adam slots match the float64 reference", async () => {
    const imported = importCnn(1);
    const ft = await fineTune(imported, {
      loss: "sparseCategoricalCrossEntropyFromLogits",
      optimizer: adam({ learningRate: 0.01 }),
      batchSize: N,
    });
    try {
      const { x, classes: y } = cnnBatch(N, 5);
      const losses = [await ft.step({ x: xOf(x) }, { shape: [N], data: y })];
      // The float64 reference of that first step, from the imported weights.
      const feeds: Record<string, HostTensor> = { x: xOf(x), y: { shape: [N], data: y } };
      for (const n of ft.spec.graph.nodes) {
        const name = n.op === "input" ? (n.attrs as { name: string }).name : "";
        if (name in ft.spec.state) feeds[name] = { shape: n.type.shape as number[], data: ft.spec.weights[name] };
      }
      const ref = interpret(ft.spec.graph, feeds);
      expect(worst([losses[0]], ref.loss.data, 1e-5, 1e-4)).toBeLessThanOrEqual(1);
      // Every resident value after the step — weights, Adam's m (0.1·gradient) and v, the counter.
      const after1 = await ft.weights(true);
      expect(Object.keys(after1)).toHaveLength(4 * 3 + 1);
      for (const [name, next] of Object.entries(ft.spec.state))
        expect(worst(after1[name], ref[next!].data, 1e-5, 1e-4), name).toBeLessThanOrEqual(1);
      for (let s = 1; s < 30; s++) losses.push(await ft.step({ x: xOf(x) }, { shape: [N], data: y }));
      console.log(`fine-tune: loss ${losses[0].toFixed(4)} → ${losses[losses.length - 1].toFixed(4)} over 30 steps`);
      expect(losses[losses.length - 1]).toBeLessThan(0.5 * losses[0]);

      // The saved folder predicts with the fine-tuned weights.
      const dir = mkdtempSync(join(tmpdir(), "kiln-finetuned-"));
      try {
        await ft.save(dir);
        const p = await loadPredictor(dir, { batchSize: N });
        try {
          const pred = await p.predict(xOf(x));
          const w = await ft.weights();
          const tuned: Record<string, HostTensor> = { x: xOf(x) };
          for (const n of imported.graph.nodes) {
            const name = n.op === "input" ? (n.attrs as { name: string }).name : "";
            if (name in w) tuned[name] = { shape: n.type.shape as number[], data: w[name] };
          }
          expect(worst(pred.data, interpret(imported.graph, tuned).y.data, 1e-5, 1e-4)).toBeLessThanOrEqual(1);
          const right = Array.from({ length: N }, (_, i) => {
            const row = Array.from(pred.data.slice(i * classes, (i + 1) * classes));
            return row.indexOf(Math.max(...row)) === y[i];
          }).filter(Boolean).length;
          expect(right).toBe(N);
        } finally {
          p.dispose();
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    } finally {
      ft.dispose();
    }
  });

  it("training only the last layer leaves the convolution's weights bit for bit", async () => {
    const imported = importCnn(2);
    const ft = await fineTune(imported, {
      loss: "sparseCategoricalCrossEntropyFromLogits",
      optimizer: sgd({ learningRate: 0.1, momentum: 0.9 }),
      trainable: (name) => name.startsWith("fc/"),
      batchSize: N,
    });
    try {
      const { x, classes: y } = cnnBatch(N, 6);
      const losses: number[] = [];
      for (let s = 0; s < 5; s++) losses.push(await ft.step({ x: xOf(x) }, { shape: [N], data: y }));
      expect(losses[4]).toBeLessThan(losses[0]);
      const w = await ft.weights();
      for (const name of CONV_WEIGHTS) expect(Array.from(w[name]), name).toEqual(Array.from(imported.weights[name]));
      for (const name of FC_WEIGHTS) expect(Array.from(w[name]), name).not.toEqual(Array.from(imported.weights[name]));
    } finally {
      ft.dispose();
    }
  });

  it("fit: epochs over a data set in batches (the last one smaller), the loss of every step, falling", async () => {
    const ft = await fineTune(importCnn(4), {
      loss: "sparseCategoricalCrossEntropyFromLogits",
      optimizer: adam({ learningRate: 0.01 }),
      batchSize: 8,
    });
    try {
      const n = 20;
      const { x, classes: y } = cnnBatch(n, 11);
      const losses = await ft.fit({ x: xOf(x, n) }, { shape: [n], data: y }, { epochs: 4 });
      expect(losses).toHaveLength(4 * 3); // batches of 8, 8 and 4
      const epoch = (e: number) => losses.slice(3 * e, 3 * e + 3).reduce((a, b) => a + b) / 3;
      expect(epoch(3)).toBeLessThan(epoch(0));
      await expect(ft.fit({ x: xOf(x, n) }, { shape: [n], data: y }, { batchSize: 16 })).rejects.toThrow(/compiled bound 8, got 16/);
      await expect(ft.fit({ x: xOf(x, n) }, { shape: [n - 1], data: y.subarray(1) })).rejects.toThrow(/x has 20 examples, the labels 19/);
    } finally {
      ft.dispose();
    }
  });

  it("the training bundle runs standalone; its losses and updated weights match the in-process steps", async () => {
    const imported = importCnn(3);
    const opts = { loss: "categoricalCrossEntropyFromLogits", optimizer: adam({ learningRate: 0.01 }) } as const;
    const spec = fineTuneGraph(imported, opts);
    const files = buildBundle(
      { graph: spec.graph, state: spec.state, weights: spec.weights, dims: { B: N } },
      { name: "cnn-train", mode: "train" },
    );
    const { x, oneHot } = cnnBatch(N, 8);
    const got = await runStandalone(standalone(files), { x, y: oneHot }, 3);
    const ft = await fineTune(imported, { ...opts, batchSize: N });
    try {
      const ours: number[] = [];
      for (let s = 0; s < 3; s++) ours.push(await ft.step({ x: xOf(x) }, { shape: [N, classes], data: oneHot }));
      expect(
        worst(
          got.results.map((r) => r.loss[0]),
          ours,
          1e-5,
          1e-4,
        ),
      ).toBeLessThanOrEqual(1);
      expect(got.results[2].loss[0]).toBeLessThan(got.results[0].loss[0]);
      const w = await ft.weights(true);
      for (const name of Object.keys(spec.state)) expect(worst(got.weights[name], w[name], 1e-5, 1e-4), name).toBeLessThanOrEqual(1);
      for (const name of FC_WEIGHTS) expect(worst(got.weights[name], imported.weights[name], 1e-5, 1e-4), name).toBeGreaterThan(1);
    } finally {
      ft.dispose();
    }
  });
});
