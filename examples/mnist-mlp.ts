/** The course's Keras MNIST example: an MLP 784-500-500-10 with softmax output and categorical
 *  cross-entropy, trained on 8,000 digits and scored on the 2,000 held out.
 *      npx tsx examples/mnist-mlp.ts [--activation relu|sigmoid] [--epochs N] [--save DIR]
 *  sigmoid hidden units train slowly with plain SGD (the course's point about vanishing
 *  gradients); both variants use Adam here, as the course's later Keras examples do. */
import { Command } from "commander";
import { adam, compileModel, dense, dropout, inverseTimeDecay, releaseGpu, sequential, type History } from "kiln-nn";
import { loadMnist, oneHot } from "./data/mnist.ts";

export interface MnistMlpOptions {
  readonly activation: "relu" | "sigmoid";
  readonly epochs: number;
  /** Dropout after each hidden layer (the course's remedy for overfitting 8,000 digits). */
  readonly dropout?: number;
  readonly learningRate?: number;
  /** Epochs over which Adam's step halves (1/t decay); 0 keeps it constant. */
  readonly decayEpochs?: number;
  readonly batchSize?: number;
  /** Use only this many training digits (the tests train on a few hundred). */
  readonly trainSize?: number;
  readonly save?: string;
  readonly plot?: string;
  readonly verbose?: 0 | 1 | 2;
  /** Seeds the initial weights (seed) and the shuffling (seed + 1); default 1. */
  readonly seed?: number;
}

export async function trainMnistMlp(
  opts: MnistMlpOptions,
): Promise<{ history: History; testAccuracy: number; testLoss: number; ms: number }> {
  const t0 = performance.now();
  const { train, test } = loadMnist();
  const n = Math.min(opts.trainSize ?? train.n, train.n);
  const hidden = () =>
    opts.dropout ? [dense(500, { activation: opts.activation }), dropout(opts.dropout)] : [dense(500, { activation: opts.activation })];
  const model = sequential([...hidden(), ...hidden(), dense(10, { activation: "softmax" })], { inputShape: [784] });
  const lr0 = opts.learningRate ?? 1e-3;
  const steps = Math.ceil(n / (opts.batchSize ?? 128));
  const learningRate = opts.decayEpochs ? inverseTimeDecay(lr0, 1, opts.decayEpochs * steps) : lr0;
  const m = await compileModel(model, {
    optimizer: adam({ learningRate }),
    loss: "categoricalCrossEntropy",
    metrics: ["accuracy"],
    seed: opts.seed ?? 1,
  });
  const history = await m.fit(
    { shape: [n, 784], data: train.x.subarray(0, n * 784) },
    { shape: [n, 10], data: oneHot(train.labels.subarray(0, n)) },
    {
      epochs: opts.epochs,
      batchSize: opts.batchSize ?? 128,
      verbose: opts.verbose ?? 1,
      seed: (opts.seed ?? 1) + 1,
      ...(opts.plot ? { plot: opts.plot } : {}),
    },
  );
  const score = await m.evaluate(
    { shape: [test.n, 784], data: test.x },
    { shape: [test.n, 10], data: oneHot(test.labels) },
    { batchSize: 500 },
  );
  if (opts.save) await m.save(opts.save);
  m.dispose();
  return { history, testAccuracy: score.accuracy!, testLoss: score.loss, ms: performance.now() - t0 };
}

async function main(): Promise<void> {
  const cli = new Command()
    .option("--activation <name>", "hidden units: relu or sigmoid", "relu")
    .option("--epochs <n>", "epochs", "20")
    .option("--dropout <rate>", "dropout after each hidden layer (0: none)", "0.3")
    .option("--lr <rate>", "Adam's learning rate", "0.001")
    .option("--batch <n>", "batch size", "64")
    .option("--decay <epochs>", "epochs over which Adam's step halves (1/t decay; 0: constant)", "0")
    .option("--seed <n>", "seeds the initial weights and the shuffling", "1")
    .option("--save <dir>", "save the weights here")
    .option("--plot <file.svg>", "write the loss / accuracy curves")
    .parse();
  const o = cli.opts();
  if (o.activation !== "relu" && o.activation !== "sigmoid") throw new Error(`--activation: relu or sigmoid, got ${o.activation}`);
  const r = await trainMnistMlp({
    activation: o.activation,
    epochs: Number(o.epochs),
    dropout: Number(o.dropout),
    learningRate: Number(o.lr),
    batchSize: Number(o.batch),
    decayEpochs: Number(o.decay),
    seed: Number(o.seed),
    save: o.save,
    plot: o.plot,
  });
  console.log(
    `held-out accuracy ${(100 * r.testAccuracy).toFixed(2)}% (loss ${r.testLoss.toFixed(4)}) after ${r.history.epochs} epochs, ${(r.ms / 1000).toFixed(1)} s`,
  );
  if (o.save) console.log(`weights saved to ${o.save}/weights.safetensors, the inference graph beside them (model.kir)`);
  await releaseGpu();
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
