/** The course's sparse autoencoder (Ng's UFLDL exercise) on MNIST: 784 → H sigmoid → 784 sigmoid,
 *  trained to reproduce its input, with the objective
 *      J = mean over examples of ½‖x̂ − x‖²  +  λ/2 Σ ‖W‖²  +  β Σ_j KL(ρ ‖ ρ̂_j)
 *  ρ̂_j being hidden unit j's mean activation over the batch. The KL term pushes each unit to be
 *  active on about a fraction ρ of the digits, so each learns a stroke-like detector; the first
 *  layer's weights, one 28×28 image per hidden unit, are written as a PNG grid.
 *      npx tsx examples/sparse-autoencoder.ts [--hidden H] [--epochs N] [--rho R] [--beta B]
 *                                           [--l2 L] [--png FILE] [--plot FILE.svg] [--save DIR]
 *  UFLDL trains full-batch with L-BFGS; here Adam on mini-batches of 250, large enough that the
 *  batch mean ρ̂_j is a fair estimate of the unit's mean activation. */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { Command } from "commander";
import {
  adam,
  compileModel,
  dense,
  imageGrid,
  klSparsity,
  Layer,
  releaseGpu,
  sequential,
  type History,
  type Loss,
  type Model,
  type Scope,
  type Tensor,
} from "kiln-nn";
import { IMAGE_SIZE, loadMnist, PIXELS } from "./data/mnist.ts";

/** Passes its input through and adds β Σ KL(ρ ‖ ρ̂_j) of it to the loss: an activity
 *  regulariser, as a layer, through Scope.addLoss. In evaluation too, so `evaluate` reports the
 *  whole objective (as Keras does with activity regularisers). */
class KlSparsity extends Layer {
  readonly kind = "kl_sparsity";
  constructor(
    readonly rho: number,
    readonly beta: number,
    name?: string,
  ) {
    super(name);
  }
  call(inputs: readonly Tensor[], scope: Scope): Tensor {
    const h = this.one(inputs, 2);
    scope.addLoss(klSparsity(h, this.rho, this.beta));
    return h;
  }
}

/** UFLDL's reconstruction error: ½ Σ over pixels of (x̂ − x)², averaged over the examples. */
export const halfSquaredError: Loss = {
  name: "halfSquaredError",
  labels: (pred) => ({ dtype: "f32", shape: pred }),
  compute(pred, target) {
    const d = pred.sub(target);
    return d.mul(d).sum(-1).mean().mul(0.5);
  },
};

export interface SparseAutoencoderOptions {
  readonly hidden?: number;
  readonly epochs: number;
  readonly batchSize?: number;
  readonly learningRate?: number;
  /** Target mean activation ρ (default 0.1) and the penalty's weight β (default 3; 0 drops it). */
  readonly rho?: number;
  readonly beta?: number;
  /** λ of the weight decay (default 3e-4: UFLDL's 3e-3 over-smooths at this budget of steps). */
  readonly l2?: number;
  /** Use only this many training digits (the test trains on a few hundred). */
  readonly trainSize?: number;
  /** Write the first layer's filters here as a PNG grid. */
  readonly png?: string;
  readonly plot?: string;
  readonly save?: string;
  readonly verbose?: 0 | 1 | 2;
}

export interface SparseAutoencoderResult {
  readonly history: History;
  /** Held-out ½‖x̂ − x‖² per digit: before training, after it, and for the mean training digit
   *  (the best an encoder that ignores its input could do). */
  readonly initialReconstruction: number;
  readonly reconstruction: number;
  readonly meanImageReconstruction: number;
  /** The hidden units' activation averaged over units and held-out digits (ρ is the target). */
  readonly meanActivation: number;
  /** Each hidden unit's 784 incoming weights. */
  readonly filters: Float32Array[];
  readonly ms: number;
}

export function sparseAutoencoder(hidden: number, rho: number, beta: number): Model {
  return sequential(
    [
      dense(hidden, { activation: "sigmoid", name: "encoder" }),
      ...(beta > 0 ? [new KlSparsity(rho, beta, "sparsity")] : []),
      dense(PIXELS, { activation: "sigmoid", name: "decoder" }),
    ],
    { inputShape: [PIXELS] },
  );
}

/** Mean over examples of ½ Σ (a − b)² for row-major [n, 784] arrays. */
function halfSquaredErrorOf(a: Float32Array, b: Float32Array, n: number): number {
  let s = 0;
  for (let i = 0; i < n * PIXELS; i++) s += (a[i] - b[i]) ** 2;
  return (0.5 * s) / n;
}

/** The encoder on the host: mean over examples and units of sigmoid(x·W + b). Skips zero pixels
 *  (about four in five), which makes the plain loops cheap enough. */
function meanHiddenActivation(x: Float32Array, n: number, w: Float32Array, b: Float32Array): number {
  const h = b.length;
  const z = new Float64Array(h);
  let total = 0;
  for (let e = 0; e < n; e++) {
    z.set(b);
    for (let i = 0; i < PIXELS; i++) {
      const v = x[e * PIXELS + i];
      if (v === 0) continue;
      for (let j = 0, at = i * h; j < h; j++) z[j] += v * w[at + j];
    }
    for (let j = 0; j < h; j++) total += 1 / (1 + Math.exp(-z[j]));
  }
  return total / (n * h);
}

export async function trainSparseAutoencoder(opts: SparseAutoencoderOptions): Promise<SparseAutoencoderResult> {
  const t0 = performance.now();
  const { train, test } = loadMnist();
  const n = Math.min(opts.trainSize ?? train.n, train.n);
  const hidden = opts.hidden ?? 196;
  const [rho, beta] = [opts.rho ?? 0.1, opts.beta ?? 3];
  const x = { shape: [n, PIXELS], data: train.x.subarray(0, n * PIXELS) };
  const xTest = { shape: [test.n, PIXELS], data: test.x };
  const m = await compileModel(sparseAutoencoder(hidden, rho, beta), {
    optimizer: adam({ learningRate: opts.learningRate ?? 1e-2 }),
    loss: halfSquaredError,
    l2: opts.l2 ?? 3e-4,
    seed: 1,
  });
  try {
    const reconstruction = async () =>
      halfSquaredErrorOf((await m.predict(xTest, { batchSize: 500 })).data as Float32Array, test.x, test.n);
    const initialReconstruction = await reconstruction();
    const history = await m.fit(x, x, {
      epochs: opts.epochs,
      batchSize: opts.batchSize ?? 250,
      verbose: opts.verbose ?? 1,
      seed: 2,
      ...(opts.plot ? { plot: opts.plot } : {}),
    });
    const after = await reconstruction();
    const weights = await m.getWeights();
    const [w, b] = [weights["encoder/kernel"], weights["encoder/bias"]];
    // Unit j's filter is column j of the [784, H] kernel.
    const filters = Array.from({ length: hidden }, (_, j) => Float32Array.from({ length: PIXELS }, (_, i) => w[i * hidden + j]));
    if (opts.png) imageGrid(filters, { width: IMAGE_SIZE, height: IMAGE_SIZE, path: opts.png });
    if (opts.save) await m.save(opts.save);
    const mean = new Float32Array(PIXELS);
    for (let e = 0; e < n; e++) for (let i = 0; i < PIXELS; i++) mean[i] += x.data[e * PIXELS + i] / n;
    const meanImage = new Float32Array(test.n * PIXELS);
    for (let e = 0; e < test.n; e++) meanImage.set(mean, e * PIXELS);
    return {
      history,
      initialReconstruction,
      reconstruction: after,
      meanImageReconstruction: halfSquaredErrorOf(meanImage, test.x, test.n),
      meanActivation: meanHiddenActivation(test.x, test.n, w, b),
      filters,
      ms: performance.now() - t0,
    };
  } finally {
    m.dispose();
  }
}

function numberOption(name: string, v: string, ok: (x: number) => boolean, what: string): number {
  const x = Number(v);
  if (!Number.isFinite(x) || !ok(x)) throw new Error(`${name}: expected ${what}, got ${v}`);
  return x;
}

async function main(): Promise<void> {
  const cli = new Command()
    .option("--hidden <n>", "hidden units", "196")
    .option("--epochs <n>", "epochs", "40")
    .option("--rho <r>", "target mean activation ρ", "0.1")
    .option("--beta <b>", "weight β of the sparsity penalty (0: none)", "3")
    .option("--l2 <λ>", "weight decay λ", "0.0003")
    .option("--png <file.png>", "write the first layer's filters here", "out/sparse-autoencoder-filters.png")
    .option("--plot <file.svg>", "write the loss curve")
    .option("--save <dir>", "save the weights here")
    .parse();
  const o = cli.opts();
  const whole = (x: number) => Number.isInteger(x) && x > 0;
  const opts: SparseAutoencoderOptions = {
    hidden: numberOption("--hidden", o.hidden, whole, "a positive integer"),
    epochs: numberOption("--epochs", o.epochs, whole, "a positive integer"),
    rho: numberOption("--rho", o.rho, (r) => r > 0 && r < 1, "a number in (0, 1)"),
    beta: numberOption("--beta", o.beta, (b) => b >= 0, "a number ≥ 0"),
    l2: numberOption("--l2", o.l2, (l) => l >= 0, "a number ≥ 0"),
    png: o.png,
    plot: o.plot,
    save: o.save,
  };
  for (const f of [opts.png, opts.plot]) if (f) mkdirSync(dirname(f), { recursive: true });
  const r = await trainSparseAutoencoder(opts);
  const h = r.history;
  console.log(`final training objective ${h.loss[h.epochs - 1].toFixed(4)} (reconstruction + λ/2·ΣW² + β·ΣKL) after ${h.epochs} epochs`);
  console.log(
    `held-out reconstruction ½‖x̂ − x‖² per digit: ${r.reconstruction.toFixed(3)} (untrained ${r.initialReconstruction.toFixed(3)}, mean digit ${r.meanImageReconstruction.toFixed(3)})`,
  );
  console.log(`mean hidden activation on the held-out digits ${r.meanActivation.toFixed(4)} (ρ = ${opts.rho})`);
  if (opts.png) console.log(`filters: ${opts.png}`);
  if (opts.plot) console.log(`curve: ${opts.plot}`);
  console.log(`wall time ${(r.ms / 1000).toFixed(1)} s`);
  await releaseGpu();
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
