/** The course's first lesson on the perceptron: one sigmoid unit (a linear boundary) learns AND
 *  and OR but not XOR, which no line separates — the best line gets 3 of the 4 points right.
 *  One hidden layer (2-4-1) fixes that. Full-batch gradient descent: the four patterns are one
 *  batch, so each epoch is one training step on the GPU.
 *      npx tsx examples/perceptron-xor.ts [--epochs N] [--hidden-epochs N]
 */
import { Command } from "commander";
import { compileModel, dense, releaseGpu, sequential, sgd, type Model } from "kiln-nn";

export type Gate = "and" | "or" | "xor";

const TRUTH: Record<Gate, (a: number, b: number) => number> = {
  and: (a, b) => a & b,
  or: (a, b) => a | b,
  xor: (a, b) => a ^ b,
};

/** The four input patterns [4, 2] and the gate's outputs [4, 1]. */
export function truthTable(gate: Gate): { x: { shape: number[]; data: Float32Array }; y: { shape: number[]; data: Float32Array } } {
  const pairs = [
    [0, 0],
    [0, 1],
    [1, 0],
    [1, 1],
  ];
  return {
    x: { shape: [4, 2], data: Float32Array.from(pairs.flat()) },
    y: { shape: [4, 1], data: Float32Array.from(pairs.map(([a, b]) => TRUTH[gate](a, b))) },
  };
}

export interface GateResult {
  readonly gate: Gate;
  readonly net: "perceptron" | "mlp";
  readonly firstLoss: number;
  readonly loss: number;
  readonly accuracy: number;
  /** The best training accuracy of any epoch (measured during the epoch's steps). */
  readonly bestTrainAccuracy: number;
  readonly epochs: number;
  readonly ms: number;
  /** Mean wall time of one epoch (one step, plus fit's per-epoch bookkeeping). */
  readonly msPerEpoch: number;
}

export interface GateOptions {
  readonly epochs: number;
  readonly learningRate?: number;
  readonly seed?: number;
}

const perceptron = (): Model => sequential([dense(1, { activation: "sigmoid" })], { inputShape: [2] });
const mlp = (): Model => sequential([dense(4, { activation: "tanh" }), dense(1, { activation: "sigmoid" })], { inputShape: [2] });

/** Trains `net` on `gate` with plain SGD on binary cross-entropy, then scores it on the four
 *  patterns in inference mode. */
export async function trainGate(gate: Gate, net: "perceptron" | "mlp", opts: GateOptions): Promise<GateResult> {
  const t0 = performance.now();
  const { x, y } = truthTable(gate);
  const m = await compileModel(net === "mlp" ? mlp() : perceptron(), {
    optimizer: sgd({ learningRate: opts.learningRate ?? 1 }),
    loss: "binaryCrossEntropy",
    metrics: ["accuracy"],
    seed: opts.seed ?? 1,
  });
  try {
    const history = await m.fit(x, y, { epochs: opts.epochs, batchSize: 4, shuffle: false, verbose: 0 });
    const score = await m.evaluate(x, y, { batchSize: 4 });
    // The first epoch includes compiling the step; leave it out of the per-epoch time.
    const steady = history.ms.slice(1);
    return {
      gate,
      net,
      firstLoss: history.loss[0],
      loss: score.loss,
      accuracy: score.accuracy!,
      bestTrainAccuracy: Math.max(...history.accuracy!),
      epochs: history.epochs,
      ms: performance.now() - t0,
      msPerEpoch: steady.length ? steady.reduce((a, b) => a + b, 0) / steady.length : history.ms[0],
    };
  } finally {
    m.dispose();
  }
}

export interface PerceptronXorOptions {
  /** Epochs for the single unit on each gate. */
  readonly epochs: number;
  /** Epochs for the 2-4-1 network on XOR. */
  readonly hiddenEpochs: number;
  readonly seed?: number;
}

/** The four runs of the lesson: perceptron on AND, OR, XOR; the 2-4-1 MLP on XOR. */
export async function perceptronXor(opts: PerceptronXorOptions): Promise<GateResult[]> {
  const out: GateResult[] = [];
  for (const gate of ["and", "or", "xor"] as const) out.push(await trainGate(gate, "perceptron", { epochs: opts.epochs, seed: opts.seed }));
  out.push(await trainGate("xor", "mlp", { epochs: opts.hiddenEpochs, learningRate: 0.5, seed: opts.seed }));
  return out;
}

async function main(): Promise<void> {
  const cli = new Command()
    .option("--epochs <n>", "epochs for the single unit", "500")
    .option("--hidden-epochs <n>", "epochs for the 2-4-1 network", "1500")
    .option("--seed <n>", "weight seed", "1")
    .parse();
  const o = cli.opts();
  const t0 = performance.now();
  const results = await perceptronXor({ epochs: Number(o.epochs), hiddenEpochs: Number(o.hiddenEpochs), seed: Number(o.seed) });
  for (const r of results) {
    const name = `${r.net === "mlp" ? "2-4-1 MLP " : "perceptron"} ${r.gate.toUpperCase().padEnd(3)}`;
    console.log(
      `${name}: loss ${r.firstLoss.toFixed(4)} → ${r.loss.toFixed(4)}, accuracy ${(100 * r.accuracy).toFixed(0)}% after ${r.epochs} epochs (${(r.ms / 1000).toFixed(1)} s, ${r.msPerEpoch.toFixed(2)} ms/epoch)`,
    );
  }
  console.log(`total ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  await releaseGpu();
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
