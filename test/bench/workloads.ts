/** The bench's workloads and the one source of their initial weights and data. Every runner
 *  (Kiln and each peer) builds its tensors from these Float32Arrays, so the first step of every
 *  runner starts from the same point and its loss can be checked against reference.ts.
 *
 *  Layouts are Kiln's and TF.js's: NHWC activations, HWIO conv filters, dense weights [in, out].
 *  A runner whose library wants another layout (jax-js convolves NCHW/OIHW) transposes inside
 *  its step, where that cost belongs to the library. */

export type WorkloadId = "W1" | "W2" | "W3" | "W5" | "W6" | "W7";
export const WORKLOAD_IDS: readonly WorkloadId[] = ["W1", "W2", "W3", "W5", "W6", "W7"];

/** "fit": one step is one epoch of the library's Keras-style fit (W6). */
export type WorkloadKind = "train" | "forward" | "matmul" | "fit";

export interface WorkloadSpec {
  readonly id: WorkloadId;
  readonly kind: WorkloadKind;
  readonly title: string;
  /** Samples per step (for W5: the matrix size n of an n×n·n×n product). */
  readonly batch: number;
  /** Plain SGD learning rate (training workloads); Adam's for W6. */
  readonly lr: number;
  /** Seed of weights and data; fixed so every runner sees the same numbers. */
  readonly seed: number;
  /** W6: examples in one epoch, in mini-batches of `batch`, always in the same order. */
  readonly examples?: number;
  /** Warm-ups, timed steps and steps per round-robin turn where the command line sets none:
   *  W6's step is a whole epoch. */
  readonly plan?: { readonly warmup: number; readonly steps: number; readonly chunk: number };
}

export const WORKLOADS: Readonly<Record<WorkloadId, WorkloadSpec>> = {
  W1: { id: "W1", kind: "train", title: "MLP 784-500-500-10 train step, batch 128", batch: 128, lr: 0.01, seed: 1 },
  W2: { id: "W2", kind: "forward", title: "MLP 784-500-500-10 forward, batch 1024", batch: 1024, lr: 0, seed: 2 },
  W3: { id: "W3", kind: "train", title: "LeNet-5 train step, batch 64, 28×28×1", batch: 64, lr: 0.01, seed: 3 },
  W5: { id: "W5", kind: "matmul", title: "1024³ f32 matmul", batch: 1024, lr: 0, seed: 5 },
  W6: {
    id: "W6",
    kind: "fit",
    title: "MLP 784-500-500-10 fit, one epoch of 2,048 examples, batch 128, Adam 1e-3, no shuffle",
    batch: 128,
    examples: 2048,
    lr: 1e-3,
    seed: 6,
    plan: { warmup: 1, steps: 3, chunk: 1 },
  },
  W7: {
    id: "W7",
    kind: "forward",
    title: "SqueezeNet-style CNN inference from an ONNX file (NCHW 3×64×64, 4 fire modules), batch 32",
    batch: 32,
    lr: 0,
    seed: 7,
  },
};

/** The spec with a smaller batch or fewer examples per epoch (smoke runs), else unchanged. */
export function withBatch(spec: WorkloadSpec, batch: number | undefined, examples?: number): WorkloadSpec {
  return {
    ...spec,
    ...(batch === undefined ? {} : { batch }),
    ...(examples === undefined || spec.examples === undefined ? {} : { examples }),
  };
}

/** Samples one step processes: an epoch's examples for W6, else the batch. */
export const samplesPerStep = (spec: WorkloadSpec) => spec.examples ?? spec.batch;

export interface HostArray {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

export const CLASSES = 10;
export const MLP_LAYERS: readonly (readonly [number, number])[] = [
  [784, 500],
  [500, 500],
  [500, 10],
];
/** LeNet-5: conv 5×5×6 same → relu → pool 2; conv 5×5×16 valid → relu → pool 2; dense 120, 84, 10. */
export const LENET = { size: 28, conv1: 6, conv2: 16, kernel: 5, flat: 5 * 5 * 16, dense: [120, 84, 10] } as const;

/** W7's network, SqueezeNet 1.1 in miniature: conv 3×3/2 → relu → maxpool 3/2 → fire ×2 →
 *  maxpool 3/2 → fire ×2 → conv 1×1 to the classes → relu → global average pool (logits). A fire
 *  module squeezes with a 1×1 conv, then concatenates 1×1 and 3×3 (padded) expansions, each
 *  followed by relu. The bench writes it as an ONNX file (onnx-models.ts). */
export const SQUEEZENET = {
  size: 64,
  channels: 3,
  classes: 10,
  stem: 32,
  /** [squeeze, expand] channels per fire module; "pool" is a 3×3 stride-2 max pool. */
  body: [[16, 32], [16, 32], "pool", [32, 64], [32, 64]] as readonly (readonly [number, number] | "pool")[],
} as const;

/** One convolution of W7's network: its name, channels, kernel, stride, padding and the
 *  spatial size of its input and output. */
export interface ConvLayer {
  readonly name: string;
  readonly cin: number;
  readonly cout: number;
  readonly k: number;
  readonly stride: number;
  readonly pad: number;
  readonly inSize: number;
  readonly outSize: number;
}

/** W7's layers in order: convolutions, and the pools between them (`pool` at a size). */
export function squeezeLayers(): (ConvLayer | { readonly pool: number; readonly outSize: number })[] {
  const out: (ConvLayer | { pool: number; outSize: number })[] = [];
  const conv = (name: string, cin: number, cout: number, k: number, stride: number, pad: number, inSize: number): ConvLayer => {
    const l = { name, cin, cout, k, stride, pad, inSize, outSize: Math.floor((inSize + 2 * pad - k) / stride) + 1 };
    out.push(l);
    return l;
  };
  const pool = (inSize: number) => {
    const outSize = Math.floor((inSize - 3) / 2) + 1;
    out.push({ pool: inSize, outSize });
    return outSize;
  };
  let size = pool(conv("conv1", SQUEEZENET.channels, SQUEEZENET.stem, 3, 2, 0, SQUEEZENET.size).outSize);
  let ch: number = SQUEEZENET.stem;
  let fire = 2;
  for (const b of SQUEEZENET.body) {
    if (b === "pool") {
      size = pool(size);
      continue;
    }
    const [s, e] = b;
    conv(`fire${fire}/squeeze`, ch, s, 1, 1, 0, size);
    conv(`fire${fire}/expand1x1`, s, e, 1, 1, 0, size);
    conv(`fire${fire}/expand3x3`, s, e, 3, 1, 1, size);
    ch = 2 * e;
    fire++;
  }
  conv("conv10", ch, SQUEEZENET.classes, 1, 1, 0, size);
  return out;
}

/** mulberry32: small, seedable, and identical in every process. */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed | 0;
  }
  uniform(): number {
    this.#s = (this.#s + 0x6d2b79f5) | 0;
    let t = Math.imul(this.#s ^ (this.#s >>> 15), 1 | this.#s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Box–Muller; 1 − u keeps log away from 0. */
  normal(): number {
    return Math.sqrt(-2 * Math.log(1 - this.uniform())) * Math.cos(2 * Math.PI * this.uniform());
  }
}

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** He-normal (std √(2/fan_in)) for layers feeding a ReLU. */
function he(rng: Rng, shape: readonly number[], fanIn: number): HostArray {
  const std = Math.sqrt(2 / fanIn);
  return { shape, data: Float32Array.from({ length: size(shape) }, () => rng.normal() * std) };
}

/** Glorot-uniform (±√(6/(fan_in+fan_out))) for the logits layer, which has no ReLU. */
function glorot(rng: Rng, shape: readonly number[], fanIn: number, fanOut: number): HostArray {
  const lim = Math.sqrt(6 / (fanIn + fanOut));
  return { shape, data: Float32Array.from({ length: size(shape) }, () => (2 * rng.uniform() - 1) * lim) };
}

const zeros = (shape: readonly number[]): HostArray => ({ shape, data: new Float32Array(size(shape)) });

/** Named parameters in a fixed order: w1 b1 w2 b2 … (conv filters c1 c1b c2 c2b first for LeNet). */
export type Params = ReadonlyArray<{ readonly name: string; readonly value: HostArray }>;

export function mlpParams(seed: number): Params {
  const rng = new Rng(seed);
  return MLP_LAYERS.flatMap(([i, o], l) => {
    const last = l === MLP_LAYERS.length - 1;
    const w = last ? glorot(rng, [i, o], i, o) : he(rng, [i, o], i);
    return [
      { name: `w${l + 1}`, value: w },
      { name: `b${l + 1}`, value: zeros([o]) },
    ];
  });
}

export function lenetParams(seed: number): Params {
  const rng = new Rng(seed);
  const { kernel: k, conv1, conv2, flat, dense } = LENET;
  const out: { name: string; value: HostArray }[] = [
    { name: "c1", value: he(rng, [k, k, 1, conv1], k * k) },
    { name: "c1b", value: zeros([conv1]) },
    { name: "c2", value: he(rng, [k, k, conv1, conv2], k * k * conv1) },
    { name: "c2b", value: zeros([conv2]) },
  ];
  let fanIn = flat;
  dense.forEach((o, l) => {
    const last = l === dense.length - 1;
    out.push({ name: `w${l + 1}`, value: last ? glorot(rng, [fanIn, o], fanIn, o) : he(rng, [fanIn, o], fanIn) });
    out.push({ name: `b${l + 1}`, value: zeros([o]) });
    fanIn = o;
  });
  return out;
}

export interface Batch {
  /** Pixel-like values in [0, 1): [B, 784] for the MLP, [B, 28, 28, 1] for LeNet. */
  readonly x: HostArray;
  /** Class of each sample, 0…9. */
  readonly labels: Int32Array;
  /** The same labels one-hot, [B, 10]. */
  readonly onehot: HostArray;
}

/** A step's data; for W6 the whole epoch's examples, which fit takes in batches. */
export function batchFor(spec: WorkloadSpec): Batch {
  const rng = new Rng(spec.seed * 7919 + 17);
  const B = samplesPerStep(spec);
  const { size: s, channels } = SQUEEZENET;
  // W7 is an ONNX model: NCHW.
  const xShape = spec.id === "W3" ? [B, LENET.size, LENET.size, 1] : spec.id === "W7" ? [B, channels, s, s] : [B, 784];
  const x = { shape: xShape, data: Float32Array.from({ length: size(xShape) }, () => rng.uniform()) };
  const labels = Int32Array.from({ length: B }, () => Math.floor(rng.uniform() * CLASSES));
  const onehot = zeros([B, CLASSES]);
  labels.forEach((c, i) => (onehot.data[i * CLASSES + c] = 1));
  return { x, labels, onehot };
}

/** W7's weights: He-normal OIHW filters and small uniform biases, named as in the ONNX file. */
export function squeezeParams(seed: number): Params {
  const rng = new Rng(seed);
  return squeezeLayers().flatMap((l) =>
    "pool" in l
      ? []
      : [
          { name: `${l.name}/weight`, value: he(rng, [l.cout, l.cin, l.k, l.k], l.cin * l.k * l.k) },
          {
            name: `${l.name}/bias`,
            value: { shape: [l.cout], data: Float32Array.from({ length: l.cout }, () => 0.1 * rng.uniform() - 0.05) },
          },
        ],
  );
}

export function paramsFor(spec: WorkloadSpec): Params {
  if (spec.id === "W3") return lenetParams(spec.seed);
  if (spec.id === "W7") return squeezeParams(spec.seed);
  if (spec.id === "W5") throw new Error("W5 has operands, not parameters: use matmulOperands");
  return mlpParams(spec.seed);
}

/** W5's operands: A and B, n×n, uniform in [−1, 1). */
export function matmulOperands(spec: WorkloadSpec): { a: HostArray; b: HostArray } {
  const rng = new Rng(spec.seed);
  const n = spec.batch;
  const fill = () => ({ shape: [n, n], data: Float32Array.from({ length: n * n }, () => 2 * rng.uniform() - 1) });
  return { a: fill(), b: fill() };
}

/** What a forward or matmul step reports as its "loss": the mean |v| of the whole read-back
 *  output, so every element must have been computed and copied to the host. */
export function checksum(data: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < data.length; i++) s += Math.abs(data[i]);
  return s / data.length;
}

/** Nominal FLOPs of one step (2 per multiply-add of the matmuls and convolutions; elementwise
 *  work is not counted). A training step counts the forward, the weight gradients and the input
 *  gradients of every layer but the first; a W6 epoch counts that over all its examples. */
export function flopsPerStep(spec: WorkloadSpec): number {
  const B = samplesPerStep(spec);
  if (spec.id === "W5") return 2 * B ** 3;
  if (spec.id === "W7")
    return squeezeLayers().reduce((f, l) => f + ("pool" in l ? 0 : 2 * B * l.outSize ** 2 * l.cin * l.k ** 2 * l.cout), 0);
  if (spec.id === "W3") {
    const { kernel: k, conv1, conv2, size: s, flat, dense } = LENET;
    const c1 = 2 * B * s * s * k * k * 1 * conv1;
    const c2 = 2 * B * 10 * 10 * k * k * conv1 * conv2;
    const dims = [flat, ...dense];
    const d = dims.slice(1).map((o, l) => 2 * B * dims[l] * o);
    const fwd = c1 + c2 + d.reduce((a, b) => a + b, 0);
    return fwd + fwd + (fwd - c1);
  }
  const layers = MLP_LAYERS.map(([i, o]) => 2 * B * i * o);
  const fwd = layers.reduce((a, b) => a + b, 0);
  return spec.kind === "forward" ? fwd : fwd + fwd + (fwd - layers[0]);
}
