/** Host-side initial values for parameters, deterministic from a seed: the same seed gives the
 *  same weights on every machine (mulberry32 for uniforms, Box–Muller for normals). Fans follow
 *  Keras: dense [in, out]; conv HWIO fanIn = kh·kw·ci, fanOut = kh·kw·co. */
import { KilnError } from "../ir/errors.ts";

export interface Initializer {
  readonly name: string;
  /** Row-major values of `shape` (static dims only). */
  init(shape: readonly number[], seed: number): Float32Array;
}

/** mulberry32: a tiny 32-bit PRNG, uniform [0, 1). */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Standard normals by Box–Muller (1 − u keeps the log finite). */
function normals(rand: () => number): () => number {
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const s = spare;
      spare = undefined;
      return s;
    }
    const r = Math.sqrt(-2 * Math.log(1 - rand()));
    const th = 2 * Math.PI * rand();
    spare = r * Math.sin(th);
    return r * Math.cos(th);
  };
}

const sizeOf = (shape: readonly number[]): number => shape.reduce((a, d) => a * d, 1);

function checked(name: string, shape: readonly number[]): number {
  if (!shape.every((d) => Number.isInteger(d) && d >= 0))
    throw new KilnError(`initializer ${name}: shape [${shape.join(",")}] must be static non-negative integers`);
  return sizeOf(shape);
}

function filled(name: string, f: (shape: readonly number[], n: number, seed: number) => (i: number) => number): Initializer {
  return {
    name,
    init(shape, seed) {
      const n = checked(name, shape);
      const at = f(shape, n, seed);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = at(i);
      return out;
    },
  };
}

/** [fanIn, fanOut] as Keras computes them: the last two axes are (in, out), the ones before
 *  them a receptive field (conv kernels); a vector counts as both. */
export function fans(shape: readonly number[]): [number, number] {
  if (shape.length === 0) return [1, 1];
  if (shape.length === 1) return [shape[0], shape[0]];
  const receptive = sizeOf(shape.slice(0, -2));
  return [receptive * shape[shape.length - 2], receptive * shape[shape.length - 1]];
}

export const zeros = (): Initializer => filled("zeros", () => () => 0);
export const ones = (): Initializer => filled("ones", () => () => 1);
export const constant = (v: number): Initializer => filled(`constant(${v})`, () => () => v);

export function uniform(min: number, max: number): Initializer {
  return filled(`uniform(${min}, ${max})`, (_s, _n, seed) => {
    const rand = mulberry32(seed);
    return () => min + (max - min) * rand();
  });
}

/** N(mean, stddev²), untruncated: the course's "Gaussian with a given stddev". */
export function gaussian(stddev: number, mean = 0): Initializer {
  return filled(`gaussian(${stddev})`, (_s, _n, seed) => {
    const z = normals(mulberry32(seed));
    return () => mean + stddev * z();
  });
}

/** Keras's truncated normal for the variance-scaling family: redraw beyond 2σ, and widen σ by
 *  1/0.8796 (the stddev of a unit normal truncated to ±2) so the variance is scale / fan. */
function truncated(name: string, scale: number, fan: (f: [number, number]) => number): Initializer {
  return filled(name, (shape, _n, seed) => {
    const sd = Math.sqrt(scale / fan(fans(shape))) / 0.87962566103423978;
    const z = normals(mulberry32(seed));
    return () => {
      let v = z();
      while (Math.abs(v) > 2) v = z();
      return sd * v;
    };
  });
}

function scaledUniform(name: string, scale: number, fan: (f: [number, number]) => number): Initializer {
  return filled(name, (shape, _n, seed) => {
    const limit = Math.sqrt((3 * scale) / fan(fans(shape)));
    const rand = mulberry32(seed);
    return () => limit * (2 * rand() - 1);
  });
}

const avg = ([i, o]: [number, number]) => (i + o) / 2;
const fanIn = ([i]: [number, number]) => i;

/** Glorot/Xavier: variance 2 / (fanIn + fanOut); uniform on ±√(6 / (fanIn + fanOut)). */
export const glorotUniform = (): Initializer => scaledUniform("glorotUniform", 1, avg);
export const glorotNormal = (): Initializer => truncated("glorotNormal", 1, avg);
/** He: variance 2 / fanIn (for ReLU). */
export const heNormal = (): Initializer => truncated("heNormal", 2, fanIn);
export const heUniform = (): Initializer => scaledUniform("heUniform", 2, fanIn);

/** A random orthogonal matrix (Keras's default for recurrent kernels): Gram–Schmidt on the
 *  columns of a Gaussian [rows, cols] (rows ≥ cols) or its transpose. */
export function orthogonal(gain = 1): Initializer {
  return {
    name: "orthogonal",
    init(shape, seed) {
      const n = checked("orthogonal", shape);
      if (shape.length < 2) throw new KilnError(`initializer orthogonal: needs rank ≥ 2, got [${shape.join(",")}]`);
      const cols = shape[shape.length - 1];
      const rows = n / cols;
      const [r, c] = rows >= cols ? [rows, cols] : [cols, rows];
      const z = normals(mulberry32(seed));
      const q = Array.from({ length: c }, () => Float64Array.from({ length: r }, () => z()));
      for (let j = 0; j < c; j++) {
        for (let k = 0; k < j; k++) {
          let d = 0;
          for (let i = 0; i < r; i++) d += q[j][i] * q[k][i];
          for (let i = 0; i < r; i++) q[j][i] -= d * q[k][i];
        }
        const norm = Math.hypot(...q[j]);
        for (let i = 0; i < r; i++) q[j][i] /= norm;
      }
      const out = new Float32Array(n);
      // q[j] are orthonormal columns of an r×c matrix; transpose back when rows < cols.
      for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[i * cols + j] = gain * (rows >= cols ? q[j][i] : q[i][j]);
      return out;
    },
  };
}
