/** The Quick start demo: build a small MLP as a graph, run it on the GPU through Dawn, and
 *  check it against the float64 reference.  Run: npm run demo */
import { acquireGpu, compile, Executable, GraphBuilder, interpret, releaseGpu, softmax } from "kiln-nn";

const [IN, HIDDEN, OUT, BATCH] = [784, 128, 10, 16];

// A seeded generator (mulberry32), so every run shows the same numbers.
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(1);
const normal = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
const fill = (n: number, scale: number) => Float32Array.from({ length: n }, () => normal() * scale);

// x: [B, 784] → dense 128 + ReLU → dense 10 → softmax. B is symbolic: one compiled program
// serves every batch size.
const g = new GraphBuilder();
const x = g.input("x", "f32", ["B", IN]);
const w1 = g.input("w1", "f32", [IN, HIDDEN]);
const b1 = g.input("b1", "f32", [HIDDEN]);
const w2 = g.input("w2", "f32", [HIDDEN, OUT]);
const b2 = g.input("b2", "f32", [OUT]);
const probs = softmax(x.matmul(w1).add(b1).relu().matmul(w2).add(b2));
const graph = g.build({ probs, digit: probs.argmax(-1) });

const inputs = {
  x: { shape: [BATCH, IN], data: Float32Array.from({ length: BATCH * IN }, () => rand()) },
  w1: { shape: [IN, HIDDEN], data: fill(IN * HIDDEN, Math.sqrt(2 / IN)) },
  b1: { shape: [HIDDEN], data: fill(HIDDEN, 0.1) },
  w2: { shape: [HIDDEN, OUT], data: fill(HIDDEN * OUT, Math.sqrt(2 / HIDDEN)) },
  b2: { shape: [OUT], data: fill(OUT, 0.1) },
};

try {
  const gpu = await acquireGpu();
  console.log(`adapter: ${gpu.adapter}`);
  const t0 = performance.now();
  const program = compile(graph, { target: gpu.target, maxStorageBuffers: gpu.limits.maxStorageBuffersPerShaderStage });
  const exe = await Executable.load(program, gpu);
  const t1 = performance.now();
  const out = await exe.run(inputs);
  const t2 = performance.now();
  console.log(
    `MLP ${IN}-${HIDDEN}-${OUT}, batch ${BATCH}: ${program.kernels.length} kernels; compile ${(t1 - t0).toFixed(0)} ms, first run ${(t2 - t1).toFixed(0)} ms`,
  );

  const ref = interpret(graph, inputs);
  let maxErr = 0;
  out.probs.data.forEach((v, i) => (maxErr = Math.max(maxErr, Math.abs(v - ref.probs.data[i]))));
  const agree = out.digit.data.every((d, i) => d === ref.digit.data[i]);
  for (let r = 0; r < 3; r++) {
    const row = Array.from(out.probs.data.slice(r * OUT, (r + 1) * OUT), (p) => p.toFixed(3)).join(" ");
    console.log(`  sample ${r}: [${row}] → ${out.digit.data[r]}`);
  }
  console.log(`max |gpu − float64 reference| = ${maxErr.toExponential(2)}; argmax agrees on ${agree ? "all" : "NOT all"} ${BATCH} samples`);
  exe.dispose();
  if (maxErr > 1e-4 || !agree) process.exitCode = 1;
} finally {
  await releaseGpu();
}
