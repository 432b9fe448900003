/** Regression with an MLP: y = sin(k·x) on [−π, π] (k = 1 by default; a larger k is a harder,
 *  more wiggly target) from noiseless samples at random points, tanh hidden units, a linear
 *  output, mean squared error and Adam. Scored on an evenly spaced grid the training set does
 *  not contain.
 *      npx tsx examples/sine.ts [--freq K] [--hidden 32,32] [--epochs N] [--plot loss.svg]
 */
import { Command } from "commander";
import { adam, compileModel, dense, historyPlot, mulberry32, releaseGpu, sequential } from "kiln-nn";

type Column = { shape: number[]; data: Float32Array };

/** `n` points drawn uniformly from [−π, π] with `seed`, and sin(k·x) at each. */
export function sineSamples(n: number, freq: number, seed: number): { x: Column; y: Column } {
  const random = mulberry32(seed);
  const x = Float32Array.from({ length: n }, () => Math.PI * (2 * random() - 1));
  return { x: { shape: [n, 1], data: x }, y: { shape: [n, 1], data: x.map((v) => Math.sin(freq * v)) } };
}

/** `n` evenly spaced points from −π to π, ends included. */
export function sineGrid(n: number, freq: number): { x: Column; y: Column } {
  const x = Float32Array.from({ length: n }, (_, i) => -Math.PI + (2 * Math.PI * i) / (n - 1));
  return { x: { shape: [n, 1], data: x }, y: { shape: [n, 1], data: x.map((v) => Math.sin(freq * v)) } };
}

export interface SineOptions {
  readonly freq?: number;
  readonly hidden?: readonly number[];
  readonly trainSize: number;
  readonly epochs: number;
  readonly batchSize?: number;
  readonly learningRate?: number;
  readonly seed?: number;
  readonly plot?: string;
}

export interface SineResult {
  readonly firstLoss: number;
  readonly trainLoss: number;
  /** Mean squared error on the held-out grid. */
  readonly gridMse: number;
  /** The largest |prediction − sin(k·x)| on the grid. */
  readonly gridMaxError: number;
  /** The grid MSE of predicting 0 everywhere: mean sin² ≈ ½, the baseline to beat. */
  readonly baseline: number;
  readonly epochs: number;
  readonly ms: number;
}

export async function trainSine(opts: SineOptions): Promise<SineResult> {
  const t0 = performance.now();
  const freq = opts.freq ?? 1;
  const seed = opts.seed ?? 1;
  const train = sineSamples(opts.trainSize, freq, seed);
  const grid = sineGrid(501, freq);
  const hidden = opts.hidden ?? [32, 32];
  const model = sequential([...hidden.map((u) => dense(u, { activation: "tanh" })), dense(1)], { inputShape: [1] });
  const m = await compileModel(model, { optimizer: adam({ learningRate: opts.learningRate ?? 0.01 }), loss: "mse", seed });
  try {
    const history = await m.fit(train.x, train.y, { epochs: opts.epochs, batchSize: opts.batchSize ?? 32, seed, verbose: 0 });
    if (opts.plot) historyPlot(history, opts.plot);
    const score = await m.evaluate(grid.x, grid.y, { batchSize: grid.x.shape[0] });
    const pred = (await m.predict(grid.x, { batchSize: grid.x.shape[0] })).data as Float32Array;
    let maxError = 0;
    for (let i = 0; i < pred.length; i++) maxError = Math.max(maxError, Math.abs(pred[i] - grid.y.data[i]));
    return {
      firstLoss: history.loss[0],
      trainLoss: history.loss[history.loss.length - 1],
      gridMse: score.loss,
      gridMaxError: maxError,
      baseline: grid.y.data.reduce((s, v) => s + v * v, 0) / grid.y.data.length,
      epochs: history.epochs,
      ms: performance.now() - t0,
    };
  } finally {
    m.dispose();
  }
}

async function main(): Promise<void> {
  const cli = new Command()
    .option("--freq <k>", "target sin(k·x)", "1")
    .option("--hidden <widths>", "hidden layer widths, comma-separated", "32,32")
    .option("--train-size <n>", "training points", "512")
    .option("--epochs <n>", "epochs", "200")
    .option("--lr <x>", "Adam learning rate", "0.01")
    .option("--plot <file.svg>", "write the training loss curve")
    .parse();
  const o = cli.opts();
  const hidden = String(o.hidden).split(",").map(Number);
  if (hidden.some((w) => !Number.isInteger(w) || w < 1))
    throw new Error(`--hidden: positive integers separated by commas, got ${o.hidden}`);
  const r = await trainSine({
    freq: Number(o.freq),
    hidden,
    trainSize: Number(o.trainSize),
    epochs: Number(o.epochs),
    learningRate: Number(o.lr),
    plot: o.plot,
  });
  console.log(
    `sin(${o.freq}·x), MLP 1-${hidden.join("-")}-1 (tanh): training MSE ${r.firstLoss.toFixed(4)} (epoch 1) → ${r.trainLoss.toExponential(2)} after ${r.epochs} epochs`,
  );
  console.log(
    `held-out grid (501 points): MSE ${r.gridMse.toExponential(2)} (predicting 0: ${r.baseline.toFixed(3)}), max |error| ${r.gridMaxError.toFixed(4)}; ${(r.ms / 1000).toFixed(1)} s`,
  );
  if (o.plot) console.log(`loss curve: ${o.plot}`);
  await releaseGpu();
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
