/** One SGD training step of LeNet-5 (NHWC 28×28×1 → conv 5×5×6 → pool → conv 5×5×16 → pool →
 *  dense 120, 84, 10) at batch 64; the weights are resident state.
 *      npx kiln explain examples/models/lenet-train.ts */
import { buildStep, CLASSES, LENET, lenet, lenetShapes } from "./networks.ts";

const BATCH = 64;

export default buildStep({ kind: "train", lr: 0.01 }, lenet, {
  x: { shape: [BATCH, LENET.size, LENET.size, 1] },
  y: { shape: [BATCH, CLASSES] },
  ...lenetShapes(),
});
