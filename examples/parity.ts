/** N-bit parity, the course's example for depth: with AND/OR gates a two-level circuit for
 *  parity needs exponentially many terms while a tree of XORs needs O(N) gates. Threshold
 *  (sigmoid, tanh) units are stronger: one hidden layer of N units already computes parity (unit
 *  k fires when at least k bits are set; alternate output weights). So the comparison here, at
 *  about equal parameter counts, is of how easily gradient descent finds a solution. Both nets see
 *  all 2^N patterns (parity is memorised, not generalised). At N = 6 the wide shallow net fits
 *  in fewer epochs than the deep narrow one (see the printed numbers).
 *      npx tsx examples/parity.ts [--bits 6] [--epochs N] [--seeds K]
 */
import { Command } from "commander";
import { adam, compileModel, dense, releaseGpu, sequential, type Model } from "kiln-nn";

/** All 2^bits patterns as ±1 inputs [2^bits, bits] and their parity (1 when an odd number of
 *  bits are set) [2^bits, 1]. */
export function parityData(bits: number): { x: { shape: number[]; data: Float32Array }; y: { shape: number[]; data: Float32Array } } {
  if (!Number.isInteger(bits) || bits < 1 || bits > 16) throw new Error(`parity: bits must be an integer in 1..16, got ${bits}`);
  const n = 1 << bits;
  const x = new Float32Array(n * bits),
    y = new Float32Array(n);
  for (let p = 0; p < n; p++) {
    let ones = 0;
    for (let b = 0; b < bits; b++) {
      const on = (p >> b) & 1;
      ones += on;
      x[p * bits + b] = on ? 1 : -1;
    }
    y[p] = ones & 1;
  }
  return { x: { shape: [n, bits], data: x }, y: { shape: [n, 1], data: y } };
}

export interface Architecture {
  readonly name: string;
  /** Hidden layer widths, input to output. */
  readonly hidden: readonly number[];
}

/** Weights and biases of a dense tanh stack bits → hidden… → 1. */
export function parameterCount(bits: number, hidden: readonly number[]): number {
  let count = 0,
    fanIn = bits;
  for (const w of [...hidden, 1]) (count += fanIn * w + w), (fanIn = w);
  return count;
}

/** A deep net of `depth` layers of `width` units, and the one-hidden-layer net whose
 *  parameter count is closest to it. */
export function matchedArchitectures(bits: number, depth: number, width: number): [Architecture, Architecture] {
  const deep = Array<number>(depth).fill(width);
  const target = parameterCount(bits, deep);
  // One hidden layer of h units has (bits + 2)·h + 1 parameters.
  const h = Math.max(1, Math.round((target - 1) / (bits + 2)));
  return [
    { name: `deep ${bits}-${deep.join("-")}-1`, hidden: deep },
    { name: `shallow ${bits}-${h}-1`, hidden: [h] },
  ];
}

export interface ParityResult {
  readonly name: string;
  readonly params: number;
  readonly loss: number;
  readonly accuracy: number;
  /** The first epoch whose training accuracy was 100%, or undefined if none was. */
  readonly solvedAt: number | undefined;
  readonly epochs: number;
  readonly ms: number;
}

export interface TrainOptions {
  readonly epochs: number;
  readonly learningRate?: number;
  readonly seed?: number;
}

const stack = (bits: number, hidden: readonly number[]): Model =>
  sequential([...hidden.map((u) => dense(u, { activation: "tanh" })), dense(1, { activation: "sigmoid" })], { inputShape: [bits] });

/** Full-batch Adam on binary cross-entropy over all 2^bits patterns. */
export async function trainParity(bits: number, arch: Architecture, opts: TrainOptions): Promise<ParityResult> {
  const t0 = performance.now();
  const { x, y } = parityData(bits);
  const m = await compileModel(stack(bits, arch.hidden), {
    optimizer: adam({ learningRate: opts.learningRate ?? 0.01 }),
    loss: "binaryCrossEntropy",
    metrics: ["accuracy"],
    seed: opts.seed ?? 1,
  });
  try {
    const history = await m.fit(x, y, { epochs: opts.epochs, batchSize: x.shape[0], shuffle: false, verbose: 0 });
    const score = await m.evaluate(x, y, { batchSize: x.shape[0] });
    const params = Object.values(await m.getWeights()).reduce((s, w) => s + w.length, 0);
    const solved = history.accuracy!.findIndex((a) => a === 1);
    return {
      name: arch.name,
      params,
      loss: score.loss,
      accuracy: score.accuracy!,
      solvedAt: solved < 0 ? undefined : solved + 1,
      epochs: history.epochs,
      ms: performance.now() - t0,
    };
  } finally {
    m.dispose();
  }
}

export interface ParityOptions {
  readonly bits: number;
  readonly depth: number;
  readonly width: number;
  readonly epochs: number;
  /** Weight seeds 1..seeds: one run says little about a comparison like this. */
  readonly seeds: number;
  readonly learningRate?: number;
}

/** Deep and shallow, each trained from `seeds` initialisations. */
export async function parity(opts: ParityOptions): Promise<{ deep: ParityResult[]; shallow: ParityResult[] }> {
  const [deepArch, shallowArch] = matchedArchitectures(opts.bits, opts.depth, opts.width);
  const deep: ParityResult[] = [],
    shallow: ParityResult[] = [];
  for (let seed = 1; seed <= opts.seeds; seed++) {
    const o = { epochs: opts.epochs, seed, learningRate: opts.learningRate };
    deep.push(await trainParity(opts.bits, deepArch, o));
    shallow.push(await trainParity(opts.bits, shallowArch, o));
  }
  return { deep, shallow };
}

const median = (v: readonly number[]): number => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main(): Promise<void> {
  const cli = new Command()
    .option("--bits <n>", "input bits", "6")
    .option("--depth <n>", "hidden layers of the deep net", "4")
    .option("--width <n>", "units per hidden layer of the deep net", "8")
    .option("--epochs <n>", "full-batch epochs", "1000")
    .option("--seeds <n>", "initialisations per net", "3")
    .option("--lr <x>", "Adam learning rate", "0.01")
    .parse();
  const o = cli.opts();
  const t0 = performance.now();
  const r = await parity({
    bits: Number(o.bits),
    depth: Number(o.depth),
    width: Number(o.width),
    epochs: Number(o.epochs),
    seeds: Number(o.seeds),
    learningRate: Number(o.lr),
  });
  for (const runs of [r.deep, r.shallow]) {
    console.log(`${runs[0].name} (${runs[0].params} parameters):`);
    for (const [i, q] of runs.entries()) {
      const solved = q.solvedAt === undefined ? "never 100%" : `100% from epoch ${q.solvedAt}`;
      console.log(
        `  seed ${i + 1}: loss ${q.loss.toFixed(4)}, accuracy ${(100 * q.accuracy).toFixed(1)}% after ${q.epochs} epochs; ${solved} (${(q.ms / 1000).toFixed(1)} s)`,
      );
    }
    const solvedAt = runs.map((q) => q.solvedAt ?? Infinity);
    console.log(
      `  median loss ${median(runs.map((q) => q.loss)).toFixed(4)}, solved ${solvedAt.filter(Number.isFinite).length}/${runs.length}, median epochs to 100% ${median(solvedAt)}`,
    );
  }
  console.log(`total ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  await releaseGpu();
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
