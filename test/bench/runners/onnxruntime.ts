/** ONNX Runtime's runner: `tsx test/bench/runners/onnxruntime.ts`, speaking protocol.ts, on its
 *  CPU execution provider (onnxruntime-node has no WebGPU provider on Node). It runs ONNX files:
 *  W2 is the MLP exported by Kiln (onnx-models.ts, formats/onnx/export.ts), written to a
 *  temporary file and loaded from it as a user would; W7 is the SqueezeNet-style file the bench
 *  generates. Graph optimizations at "all" (fusions, layout transforms), ONNX Runtime's default
 *  thread pools. A step feeds the batch (a tensor over the same Float32Array each time: no
 *  copy on the JS side), runs the session and reduces the whole output with checksum(). */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { mlpOnnx, squeezeNetOnnx } from "../onnx-models.ts";
import { serveRunner, type Session } from "../protocol.ts";
import { packageVersion } from "../versions.ts";
import { batchFor, checksum, type WorkloadSpec } from "../workloads.ts";

async function setup(spec: WorkloadSpec): Promise<Session> {
  if (spec.id !== "W2" && spec.id !== "W7")
    throw new Error(`${spec.id}: ONNX Runtime runs inference of ONNX files here (W2, W7), not training`);
  const dir = mkdtempSync(join(tmpdir(), "kiln-bench-ort-"));
  const file = join(dir, `${spec.id}.onnx`);
  writeFileSync(file, spec.id === "W2" ? mlpOnnx(spec) : squeezeNetOnnx(spec.seed));
  const session = await ort.InferenceSession.create(file, { executionProviders: ["cpu"], graphOptimizationLevel: "all" });
  const { x } = batchFor(spec);
  const feeds = { [session.inputNames[0]]: new ort.Tensor("float32", x.data, [...x.shape]) };
  const [output] = session.outputNames;
  return {
    async step() {
      const out = await session.run(feeds);
      return checksum(out[output].data as Float32Array);
    },
    async dispose() {
      await session.release();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

await serveRunner({
  info: () => ({
    library: `onnxruntime-node ${packageVersion("onnxruntime-node")}`,
    backend: "cpu",
    notes: [`CPU execution provider, default intra-op threads (${availableParallelism()} cores)`, "graph optimization: all"],
  }),
  setup,
});
