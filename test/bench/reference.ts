/** Float64 reference for each workload's first reported value: the loss at the initial weights
 *  (training), or the checksum of the output (W2, W5). Every runner's first step must land on
 *  it, which shows that all of them ran the same network on the same numbers. Plain loops: it
 *  runs once per workload in the orchestrator, before any runner is timed.
 *
 *  W6 reports an epoch's mean loss, taken while Adam moves the weights: known here only when
 *  the epoch is one batch (the loss at the initial weights). A 16-step Adam epoch in float64
 *  (~8 GFLOP of plain loops) is too slow, so then there is none: the report compares the
 *  runners with each other instead. W7 (a CNN from an ONNX file) has no float64 reference here
 *  either: its runners, Kiln's importer and ONNX Runtime, are compared with each other, and
 *  test/formats/onnx-export-roundtrip.test.ts checks the same file against float64. */
import {
  LENET,
  MLP_LAYERS,
  batchFor,
  checksum,
  matmulOperands,
  paramsFor,
  samplesPerStep,
  type Params,
  type WorkloadSpec,
} from "./workloads.ts";

/** out[B, n] = x[B, k] · w[k, n] + b[n]. */
function dense(x: Float64Array, B: number, k: number, w: Float32Array, b: Float32Array, n: number): Float64Array {
  const out = new Float64Array(B * n);
  for (let r = 0; r < B; r++) {
    const row = out.subarray(r * n, (r + 1) * n);
    for (let j = 0; j < n; j++) row[j] = b[j];
    for (let i = 0; i < k; i++) {
      const xi = x[r * k + i];
      if (xi === 0) continue;
      const wi = w.subarray(i * n, (i + 1) * n);
      for (let j = 0; j < n; j++) row[j] += xi * wi[j];
    }
  }
  return out;
}

const relu = (a: Float64Array) => a.map((v) => (v > 0 ? v : 0));
const get = (p: Params, name: string) => p.find((e) => e.name === name)!.value.data;

function mlpLogits(p: Params, x: Float64Array, B: number): Float64Array {
  let h = x;
  MLP_LAYERS.forEach(([k, n], l) => {
    h = dense(h, B, k, get(p, `w${l + 1}`), get(p, `b${l + 1}`), n);
    if (l < MLP_LAYERS.length - 1) h = relu(h);
  });
  return h;
}

/** NHWC conv, HWIO filter, stride 1, `pad` zeros before each spatial dim, + bias. */
function conv(
  x: Float64Array,
  B: number,
  H: number,
  C: number,
  f: Float32Array,
  bias: Float32Array,
  K: number,
  O: number,
  pad: number,
  Ho: number,
): Float64Array {
  const out = new Float64Array(B * Ho * Ho * O);
  for (let n = 0; n < B; n++)
    for (let y = 0; y < Ho; y++)
      for (let xo = 0; xo < Ho; xo++) {
        const o0 = ((n * Ho + y) * Ho + xo) * O;
        for (let o = 0; o < O; o++) out[o0 + o] = bias[o];
        for (let ky = 0; ky < K; ky++) {
          const iy = y + ky - pad;
          if (iy < 0 || iy >= H) continue;
          for (let kx = 0; kx < K; kx++) {
            const ix = xo + kx - pad;
            if (ix < 0 || ix >= H) continue;
            for (let c = 0; c < C; c++) {
              const v = x[((n * H + iy) * H + ix) * C + c];
              const f0 = ((ky * K + kx) * C + c) * O;
              for (let o = 0; o < O; o++) out[o0 + o] += v * f[f0 + o];
            }
          }
        }
      }
  return out;
}

/** 2×2 max-pool, stride 2, NHWC. */
function pool(x: Float64Array, B: number, H: number, C: number): Float64Array {
  const Ho = H / 2;
  const out = new Float64Array(B * Ho * Ho * C);
  for (let n = 0; n < B; n++)
    for (let y = 0; y < Ho; y++)
      for (let xo = 0; xo < Ho; xo++)
        for (let c = 0; c < C; c++) {
          let m = -Infinity;
          for (let dy = 0; dy < 2; dy++)
            for (let dx = 0; dx < 2; dx++) m = Math.max(m, x[((n * H + 2 * y + dy) * H + 2 * xo + dx) * C + c]);
          out[((n * Ho + y) * Ho + xo) * C + c] = m;
        }
  return out;
}

function lenetLogits(p: Params, x: Float64Array, B: number): Float64Array {
  const { size: S, kernel: K, conv1, conv2, flat, dense: widths } = LENET;
  const c1 = pool(relu(conv(x, B, S, 1, get(p, "c1"), get(p, "c1b"), K, conv1, (K - 1) / 2, S)), B, S, conv1);
  const S2 = S / 2 - K + 1;
  const c2 = pool(relu(conv(c1, B, S / 2, conv1, get(p, "c2"), get(p, "c2b"), K, conv2, 0, S2)), B, S2, conv2);
  let h = c2;
  let k = flat;
  widths.forEach((n, l) => {
    h = dense(h, B, k, get(p, `w${l + 1}`), get(p, `b${l + 1}`), n);
    if (l < widths.length - 1) h = relu(h);
    k = n;
  });
  return h;
}

/** Mean over the batch of −log softmax(logits)[label], computed stably. */
function crossEntropy(logits: Float64Array, labels: Int32Array, classes: number): number {
  let total = 0;
  labels.forEach((c, r) => {
    const row = logits.subarray(r * classes, (r + 1) * classes);
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
    total += lse - row[c];
  });
  return total / labels.length;
}

export function referenceValue(spec: WorkloadSpec): number | undefined {
  if (spec.kind === "fit" && samplesPerStep(spec) > spec.batch) return undefined;
  if (spec.id === "W7") return undefined;
  const B = samplesPerStep(spec);
  if (spec.id === "W5") {
    const { a, b } = matmulOperands(spec);
    return checksum(dense(Float64Array.from(a.data), B, B, b.data, new Float32Array(B), B));
  }
  const data = batchFor(spec);
  const x = Float64Array.from(data.x.data);
  const p = paramsFor(spec);
  const logits = spec.id === "W3" ? lenetLogits(p, x, B) : mlpLogits(p, x, B);
  return spec.kind !== "forward" ? crossEntropy(logits, data.labels, 10) : checksum(logits);
}
