/** The model API's models the ONNX tests export: each with its inference graph, weights at a
 *  seed (variables perturbed so batchNorm's moving statistics are not the identity) and a batch
 *  of 5. Shared by test/formats/onnx-export*.test.ts. */
import { avgPool2d, batchNorm, conv2d, dense, dropout, embedding, flatten, maxout } from "../../src/api/layers.ts";
import { predictGraph, sequential, type Model } from "../../src/api/model.ts";
import { lstm, simpleRnn } from "../../src/api/recurrent.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import type { Graph } from "../../src/ir/types.ts";
import { lenet5 } from "../../examples/lenet5.ts";
import { sparseAutoencoder } from "../../examples/sparse-autoencoder.ts";
import { floats } from "./data.ts";

export interface ModelCase {
  readonly graph: Graph;
  readonly weights: Record<string, Float32Array>;
  readonly data: Record<string, HostTensor>;
}

/** A model's inference graph, its weights at `seed` (variables too, perturbed so moving
 *  statistics are not the identity) and a batch of 5. */
export function modelCase(m: Model, seed: number, x: (n: number) => number[] = (n) => floats(n, seed + 7)): ModelCase {
  const mg = predictGraph(m);
  const weights: Record<string, Float32Array> = {};
  for (const p of mg.params) weights[p.name] = p.initial(seed);
  mg.variables.forEach((v, k) => (weights[v.name] = Float32Array.from(floats(v.initial(seed).length, seed + k), (u) => 1 + 0.5 * u)));
  const [spec] = m.inputs;
  const shape = [5, ...spec.shape];
  return { graph: mg.graph, weights, data: { [spec.name]: { shape, data: x(shape.reduce((a, d) => a * d, 1)) } } };
}

export const MODEL_CASES: [string, () => ModelCase][] = [
  [
    "MNIST MLP 784-500-500-10, relu, dropout, softmax",
    () =>
      modelCase(
        sequential(
          [
            dense(500, { activation: "relu" }),
            dropout(0.2),
            dense(500, { activation: "relu" }),
            dropout(0.2),
            dense(10, { activation: "softmax" }),
          ],
          {
            inputShape: [784],
          },
        ),
        1,
        (n) => floats(n, 3).map((v) => (v + 1) / 2),
      ),
  ],
  ["LeNet-5 (examples/lenet5.ts)", () => modelCase(lenet5(), 2, (n) => floats(n, 4).map((v) => (v + 1) / 2))],
  [
    "conv + batchNorm + avgPool, dense + batchNorm, maxout, tanh",
    () =>
      modelCase(
        sequential(
          [
            conv2d(4, 3, { padding: "same", strides: 2 }),
            batchNorm(),
            avgPool2d(2),
            flatten(),
            dense(12),
            batchNorm({ epsilon: 1e-2 }),
            maxout(3),
            dense(3, { activation: "tanh" }),
          ],
          { inputShape: [9, 8, 3] },
        ),
        3,
      ),
  ],
  [
    "LSTM 16 units over 12 steps + dense(1) (examples/sequence.ts)",
    () => modelCase(sequential([lstm(16), dense(1)], { inputShape: [12, 2] }), 4),
  ],
  [
    "simple RNN, returnSequences",
    () => modelCase(sequential([simpleRnn(8, { returnSequences: true }), flatten(), dense(2)], { inputShape: [5, 3] }), 5),
  ],
  [
    "sparse autoencoder 784-64-784 (examples/sparse-autoencoder.ts)",
    () => modelCase(sparseAutoencoder(64, 0.1, 3), 6, (n) => floats(n, 8).map((v) => (v + 1) / 2)),
  ],
  [
    "embedding (i32 indices) + dense softmax",
    () =>
      modelCase(
        sequential([embedding(20, 4), flatten(), dense(5, { activation: "softmax" })], { inputShape: [6], inputDtype: "i32" }),
        7,
        (n) => Array.from({ length: n }, (_, i) => (i * 7) % 20),
      ),
  ],
];
