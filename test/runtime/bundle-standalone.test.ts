/** Bundles run for real outside Kiln: each is copied into an empty temporary folder whose only
 *  dependency is `webgpu`, run there by a plain `node`, and its outputs compared with Kiln's
 *  runtime (the same Program: equal to a few ulps) and the float64 reference. A bundle whose
 *  weights were zeroed (built again from them, so it loads) must fail the comparison. */
import { afterAll, describe, expect, it } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { GPU_TARGET } from "../../compiler/target.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import { inputNodes } from "../../src/ir/bind.ts";
import { buildBundle, type BuildInput } from "../../cli/build.ts";
import { Executable } from "../../runtime/execute.ts";
import { batchOf, removeStandalone, lenetInput, mlpInput, runStandalone, standalone, worst } from "../helpers/bundle.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();
afterAll(removeStandalone);

const shapeOf = (input: BuildInput, name: string, n: number) =>
  inputNodes(input.graph)
    .find((x) => x.attrs.name === name)!
    .type.shape.map((d) => (d === "B" ? n : (d as number)));

/** Kiln's runtime on the same compile options as buildBundle: `steps` runs, outputs per run. */
async function kiln(input: BuildInput, batch: Record<string, Float32Array>, n: number, steps: number) {
  const exe = await Executable.load(
    compile(input.graph, { state: input.state, dims: input.dims, target: GPU_TARGET, maxStorageBuffers: 8 }),
  );
  try {
    for (const [k, v] of Object.entries(input.weights)) await exe.write(k, { shape: shapeOf(input, k, n), data: v as Float32Array });
    const runs = [];
    for (let s = 0; s < steps; s++)
      runs.push(await exe.run(Object.fromEntries(Object.entries(batch).map(([k, v]) => [k, { shape: shapeOf(input, k, n), data: v }]))));
    const weights = Object.fromEntries(
      await Promise.all(Object.keys(input.weights).map(async (k) => [k, (await exe.read(k)).data] as const)),
    );
    return { runs, weights };
  } finally {
    exe.dispose();
  }
}

/** The float64 reference: `steps` runs, feeding each state update back. */
function reference(input: BuildInput, batch: Record<string, Float32Array>, n: number, steps: number) {
  let weights: Record<string, ArrayLike<number>> = { ...input.weights };
  const runs = [];
  for (let s = 0; s < steps; s++) {
    const all: Record<string, HostTensor> = {};
    for (const [k, v] of [...Object.entries(batch), ...Object.entries(weights)]) all[k] = { shape: shapeOf(input, k, n), data: v };
    const out = interpret(input.graph, all);
    runs.push(out);
    weights = Object.fromEntries(Object.entries(input.state).map(([k, o]) => [k, o === null ? weights[k] : out[o].data]));
  }
  return { runs, weights };
}

/** The same bundle built from zeroed weights (a bundle whose files were edited is refused: its
 *  integrity hash is the loader's). */
function zeroed(input: BuildInput, opts: Parameters<typeof buildBundle>[1]): Map<string, string | Uint8Array> {
  const zeros = Object.fromEntries(Object.entries(input.weights).map(([k, v]) => [k, new Float32Array(v.length)]));
  return buildBundle({ ...input, weights: zeros }, opts);
}

/** An inference bundle run standalone on `n` examples matches Kiln's runtime and the float64
 *  reference, and the same bundle with zeroed weights does not; returns its output. */
async function checkInference(input: BuildInput, name: string, n: number, size: number, seed: number): Promise<number[]> {
  const files = buildBundle(input, { name });
  const { x } = batchOf(n, size, seed);
  const got = (await runStandalone(standalone(files), { x })).results[0].out;
  const ours = (await kiln(input, { x }, n, 1)).runs[0].out.data;
  const ref = reference(input, { x }, n, 1).runs[0].out.data;
  expect(worst(got, ours, 1e-6, 1e-5)).toBeLessThanOrEqual(1);
  expect(worst(got, ref, 1e-5, 1e-4)).toBeLessThanOrEqual(1);
  const empty = (await runStandalone(standalone(zeroed(input, { name })), { x })).results[0].out;
  expect(worst(empty, ref, 1e-5, 1e-4)).toBeGreaterThan(1);
  return got;
}

describe("standalone bundles", () => {
  it("MNIST MLP inference: matches Kiln's runtime and the float64 reference below its batch bound; zeroed weights do not", async () => {
    const got = await checkInference(mlpInput("forward", 8), "mnist-mlp", 5, 784, 1);
    expect(got).toHaveLength(5 * 10);
  });

  it("MNIST MLP training step: losses and updated weights match over two steps", async () => {
    const input = mlpInput("train", 8);
    const files = buildBundle(input, { name: "mnist-mlp-train", mode: "train" });
    const n = 8;
    const { x, y } = batchOf(n, 784, 2);
    const got = await runStandalone(standalone(files), { x, y }, 2);
    const ours = await kiln(input, { x, y }, n, 2);
    const ref = reference(input, { x, y }, n, 2);
    for (let s = 0; s < 2; s++) {
      expect(worst(got.results[s].out, ours.runs[s].out.data, 1e-6, 1e-5)).toBeLessThanOrEqual(1);
      expect(worst(got.results[s].out, ref.runs[s].out.data, 1e-5, 1e-4)).toBeLessThanOrEqual(1);
    }
    expect(got.results[1].out[0]).not.toBe(got.results[0].out[0]); // the step learned something
    for (const k of Object.keys(input.weights)) {
      expect(worst(got.weights[k], ours.weights[k], 1e-6, 1e-5), k).toBeLessThanOrEqual(1);
      expect(worst(got.weights[k], ref.weights[k], 1e-5, 1e-4), k).toBeLessThanOrEqual(1);
    }
    const empty = await runStandalone(standalone(zeroed(input, { name: "mnist-mlp-train", mode: "train" })), { x, y }, 1);
    expect(worst(empty.results[0].out, ref.runs[0].out.data, 1e-5, 1e-4)).toBeGreaterThan(1);
  });

  it("LeNet-5 inference: matches Kiln's runtime and the float64 reference; zeroed weights do not", async () => {
    await checkInference(lenetInput(4), "lenet5", 3, 28 * 28, 3);
  });
});
