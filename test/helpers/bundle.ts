/** Shared by the bundle suites: the MNIST MLP (784-500-500-10) and LeNet-5 as bundle inputs
 *  with seeded weights; examples/run-bundle.ts makes the standalone folder and runs it. */
import { buildStep, lenet, lenetShapes, mlp, mlpShapes } from "../../examples/models/networks.ts";
import { mulberry32 } from "../../src/api/initializers.ts";
import { rmSync } from "node:fs";
import type { BundleFiles } from "../../compiler/bundle/emit.ts";
import { standalone as makeStandalone } from "../../examples/run-bundle.ts";
import type { BuildInput } from "../../cli/build.ts";

export { runStandalone, type StandaloneResult } from "../../examples/run-bundle.ts";

/** Uniform in ±1/√fan-in (biases too: zeroed weights must change every output). */
function seeded(shape: readonly number[], seed: number): Float32Array {
  const r = mulberry32(seed);
  const fan = shape.length > 1 ? shape.slice(0, -1).reduce((a, d) => a * d, 1) : 16;
  return Float32Array.from({ length: shape.reduce((a, d) => a * d, 1) }, () => (2 * r() - 1) / Math.sqrt(fan));
}

function asInput(
  kind: "forward" | "train",
  forward: typeof mlp,
  params: Record<string, { shape: number[] }>,
  xShape: (string | number)[],
  batch: number,
): BuildInput {
  const shapes = { x: { shape: xShape }, ...(kind === "train" ? { y: { shape: ["B", 10] } } : {}), ...params };
  const { graph, state } = buildStep({ kind, lr: 0.05 }, forward, shapes);
  // x and y are per-call inputs in a bundle, not resident.
  delete state.x;
  delete state.y;
  const weights = Object.fromEntries(Object.entries(params).map(([n, p], i) => [n, seeded(p.shape, 100 + i)]));
  return { graph, state, weights, dims: { B: batch } };
}

export const mlpInput = (kind: "forward" | "train", batch: number): BuildInput => asInput(kind, mlp, mlpShapes(), ["B", 784], batch);
export const lenetInput = (batch: number): BuildInput => asInput("forward", lenet, lenetShapes(), ["B", 28, 28, 1], batch);

/** Seeded pixel-like x and one-hot y for `n` examples. */
export function batchOf(n: number, xRow: number, seed: number): { x: Float32Array; y: Float32Array } {
  const r = mulberry32(seed);
  const x = Float32Array.from({ length: n * xRow }, () => r());
  const y = new Float32Array(n * 10);
  for (let i = 0; i < n; i++) y[i * 10 + Math.floor(r() * 10)] = 1;
  return { x, y };
}

const made: string[] = [];

/** examples/run-bundle.ts standalone, remembered for removeStandalone (each holds a Dawn copy). */
export function standalone(files: BundleFiles): string {
  const dir = makeStandalone(files);
  made.push(dir);
  return dir;
}

/** Remove the standalone folders made so far (suites call it in afterAll). */
export function removeStandalone(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** Largest |a − b| / (atol + rtol·|b|): ≤ 1 is a match. */
export function worst(a: ArrayLike<number>, b: ArrayLike<number>, atol: number, rtol: number): number {
  if (a.length !== b.length) throw new Error(`worst: ${a.length} values against ${b.length}`);
  let w = 0;
  for (let i = 0; i < a.length; i++) w = Math.max(w, Math.abs(a[i] - b[i]) / (atol + rtol * Math.abs(b[i])));
  return w;
}
