/** `kiln build model.onnx --train --loss <name> --optimizer <name> [--lr x] [--trainable names]`:
 *  the ONNX model imported (./import.ts importOnnxFile: x, y and the batch B for a one-input,
 *  one-output model) and its fine-tuning step (src/api/fine-tune.ts) as a training bundle's
 *  graph, state and start values: the file's weights, the optimizer's slots, the step counter.
 *  The bundle's step takes the data inputs and the labels "y". A module can say the same with
 *  optimizer objects and a predicate: `export default { onnx: "cnn.onnx", loss, optimizer, trainable }`
 *  (the path relative to the module; see OnnxSpec). */
import { dirname, isAbsolute, join } from "node:path";
import { KilnError } from "../src/ir/errors.ts";
import { fineTuneGraph, type FineTuneOptions } from "../src/api/fine-tune.ts";
import type { LossName } from "../src/api/losses.ts";
import type { Optimizer } from "../src/api/optimizer.ts";
import { adadelta, adagrad, adam, optimizerByName, rmsprop, sgd, type OptimizerName } from "../src/api/optimizers.ts";
import type { BuildInput } from "./build.ts";
import { importOnnxFile } from "./import.ts";

export interface FineTuneFlags {
  readonly loss?: string;
  readonly optimizer?: string;
  readonly lr?: string;
  /** Comma-separated weight names; a name ending in "*" is a prefix ("fc/*"). */
  readonly trainable?: string;
}

/** The optimizer by name (./optimizers.ts optimizerByName), with its learning rate set when given. */
export function optimizerFlag(name: string, lr?: string): Optimizer {
  if (lr === undefined) return optimizerByName(name as OptimizerName);
  const learningRate = Number(lr);
  if (!(Number.isFinite(learningRate) && learningRate > 0)) throw new KilnError(`build: --lr must be a positive number, got "${lr}"`);
  switch (name.toLowerCase()) {
    case "sgd":
      return sgd({ learningRate });
    case "momentum":
      return sgd({ learningRate, momentum: 0.9 });
    case "nesterov":
      return sgd({ learningRate, momentum: 0.9, nesterov: true });
    case "adagrad":
      return adagrad({ learningRate });
    case "adadelta":
      return adadelta({ learningRate });
    case "rmsprop":
      return rmsprop({ learningRate });
    case "adam":
      return adam({ learningRate });
    default:
      return optimizerByName(name as OptimizerName); // its error names the known ones
  }
}

const listed = (list: string): string[] =>
  list
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
const matches = (item: string, name: string) => (item.endsWith("*") ? name.startsWith(item.slice(0, -1)) : name === item);

export function onnxTrainInput(file: string, flags: FineTuneFlags): Omit<BuildInput, "dims"> {
  if (!flags.loss || !flags.optimizer)
    throw new KilnError(
      `${file}: a training bundle of an ONNX model needs --loss <name> and --optimizer <name> (e.g. --loss sparseCategoricalCrossEntropyFromLogits --optimizer adam --lr 0.001)`,
    );
  const imported = importOnnxFile(file);
  // A --trainable that matches nothing it meant would silently train less: every item must match.
  if (flags.trainable !== undefined) {
    const weights = Object.keys(imported.state);
    const items = listed(flags.trainable);
    if (items.length === 0) throw new KilnError(`build: --trainable lists no weight ("${flags.trainable}")`);
    for (const it of items) {
      if (!weights.some((w) => matches(it, w)))
        throw new KilnError(`${file}: --trainable "${it}" matches no weight (weights: ${weights.join(", ")})`);
    }
  }
  const ft = fineTuneGraph(imported, {
    loss: flags.loss as LossName,
    optimizer: optimizerFlag(flags.optimizer, flags.lr),
    trainable: flags.trainable === undefined ? undefined : (name) => listed(flags.trainable!).some((it) => matches(it, name)),
  });
  return { graph: ft.graph, state: ft.state, weights: ft.weights };
}

/** A module's default export naming an ONNX file: `kiln build module.mts --train` fine-tunes it
 *  with these options (src/api/fine-tune.ts FineTuneOptions); without --train it is the file's
 *  inference graph. */
export interface OnnxSpec extends Partial<FineTuneOptions> {
  /** The .onnx file, relative to the module's folder. */
  readonly onnx: string;
}

export const isOnnxSpec = (spec: unknown): spec is OnnxSpec =>
  typeof spec === "object" && spec !== null && typeof (spec as OnnxSpec).onnx === "string";

export function onnxSpecInput(module: string, spec: OnnxSpec, train: boolean): Omit<BuildInput, "dims"> {
  const file = isAbsolute(spec.onnx) ? spec.onnx : join(dirname(module), spec.onnx);
  const imported = importOnnxFile(file);
  if (!train) return { graph: imported.graph, state: imported.state, weights: imported.weights };
  if (!spec.loss || !spec.optimizer)
    throw new KilnError(
      `${module}: a training bundle of ${spec.onnx} needs { onnx, loss, optimizer } (got ${Object.keys(spec).join(", ")})`,
    );
  const ft = fineTuneGraph(imported, { ...spec, loss: spec.loss, optimizer: spec.optimizer });
  return { graph: ft.graph, state: ft.state, weights: ft.weights };
}
