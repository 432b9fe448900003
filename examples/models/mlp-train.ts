/** One SGD training step of an MLP 784-500-500-10 (ReLU, softmax cross-entropy) at batch 128;
 *  the weights are resident state, replaced by their updates after each step.
 *      npx kiln explain examples/models/mlp-train.ts */
import { buildStep, CLASSES, mlp, mlpShapes } from "./networks.ts";

const BATCH = 128;

export default buildStep({ kind: "train", lr: 0.01 }, mlp, {
  x: { shape: [BATCH, 784] },
  y: { shape: [BATCH, CLASSES] },
  ...mlpShapes(),
});
