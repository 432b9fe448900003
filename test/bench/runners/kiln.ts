/** Kiln's runner: `tsx test/bench/runners/kiln.ts`, speaking protocol.ts.
 *
 *  Each workload is built directly in Kiln's IR, compiled for the device's target and loaded
 *  once. Parameters and the batch are resident inputs (written once, as the peers' tf.Variables
 *  and device tensors are); a training step is one submission — forward, backward and the SGD
 *  update, whose new parameters replace the old on the GPU — and reads back only the loss.
 *
 *  W6 is the Keras-style path instead: compileModel(sequential([...])) with Adam, and a step is
 *  one `fit` epoch, unshuffled, from the workload's weights (set through setWeights).
 *
 *  With the argument "mixed" (the runner kiln-mixed) every workload compiles with precision
 *  "mixed" (compiler/precision.ts: activations stored as f16, f32 arithmetic; W6's compileModel
 *  with its dynamic loss scaling); W1 and W3 are buildStep's plain SGD step, without loss scaling.
 *
 *  W7 imports the bench's ONNX file (onnx-models.ts) with importOnnx and runs the imported graph,
 *  weights and batch resident; where this checkout has no importer, setup says "not built". */
import { GraphBuilder } from "../../../src/api/builder.ts";
import { dense } from "../../../src/api/layers.ts";
import { sequential } from "../../../src/api/model.ts";
import { adam } from "../../../src/api/optimizers.ts";
import type { Graph } from "../../../src/ir/types.ts";
import { buildStep, lenet, mlp } from "../kiln-graphs.ts";
import { acquireGpu } from "../../../runtime/device.ts";
import { Executable } from "../../../runtime/execute.ts";
import { compileModel } from "../../../training/compile-model.ts";
import { loadImporter, NO_IMPORTER } from "../../helpers/onnx-importer.ts";
import { squeezeNetOnnx } from "../onnx-models.ts";
import { NotBuilt, serveRunner, type Session } from "../protocol.ts";
import { readFileSync } from "node:fs";
import { MLP_LAYERS, batchFor, checksum, matmulOperands, paramsFor, type HostArray, type WorkloadSpec } from "../workloads.ts";

const precision = process.argv[2] === "mixed" ? "mixed" : "f32";

async function fitSession(spec: WorkloadSpec): Promise<Session> {
  const [[inputs]] = MLP_LAYERS;
  const layers = MLP_LAYERS.map(([, units], l) => dense(units, { activation: l < MLP_LAYERS.length - 1 ? "relu" : "softmax" }));
  const m = await compileModel(sequential(layers, { inputShape: [inputs] }), {
    optimizer: adam({ learningRate: spec.lr }),
    loss: "categoricalCrossEntropy",
    metrics: ["accuracy"],
    precision,
  });
  // The workload's w1 b1 w2 b2 … become dense_1/kernel, dense_1/bias, …; setWeights checks
  // every name and size.
  await m.setWeights(
    Object.fromEntries(
      paramsFor(spec).map(({ name, value }) => [`dense_${name.slice(1)}/${name[0] === "w" ? "kernel" : "bias"}`, value.data]),
    ),
  );
  const { x, onehot } = batchFor(spec);
  return {
    async step() {
      const h = await m.fit(x, onehot, { epochs: 1, batchSize: spec.batch, shuffle: false, verbose: 0 });
      return h.loss[0];
    },
    dispose: () => m.dispose(),
  };
}

async function onnxSession(spec: WorkloadSpec): Promise<Session> {
  const importOnnx = await loadImporter();
  if (!importOnnx) throw new NotBuilt(`Kiln's side of W7 needs the ONNX importer: ${NO_IMPORTER}`);
  const m = importOnnx(squeezeNetOnnx(spec.seed));
  const [x] = m.inputs;
  const [y] = m.outputInfo;
  // The weights stay resident; the batch is fed each step, as ONNX Runtime is fed (its batch
  // dim is the file's symbolic N, which resident state cannot have).
  const exe = await Executable.fromGraph(m.graph, { state: m.state, precision });
  for (const n of m.graph.nodes) {
    const name = n.op === "input" ? (n.attrs as { name: string }).name : undefined;
    if (name && name in m.weights) await exe.write(name, { shape: n.type.shape as number[], data: m.weights[name] });
  }
  const batch = batchFor(spec).x;
  return {
    async step() {
      const out = await exe.run({ [x.name]: batch }, [y.name]);
      return checksum(out[y.name].data);
    },
    dispose: () => exe.dispose(),
  };
}

async function setup(spec: WorkloadSpec): Promise<Session> {
  if (spec.kind === "fit") return fitSession(spec);
  if (spec.id === "W7") return onnxSession(spec);
  const values: Record<string, HostArray> = {};
  let built: { graph: Graph; state: Record<string, string | null> };
  if (spec.id === "W5") {
    const { a, b } = matmulOperands(spec);
    const g = new GraphBuilder();
    built = { graph: g.build({ out: g.input("x", "f32", a.shape).matmul(g.input("b", "f32", b.shape)) }), state: { x: null, b: null } };
    Object.assign(values, { x: a, b });
  } else {
    const data = batchFor(spec);
    values.x = data.x;
    if (spec.kind === "train") values.y = data.onehot;
    for (const { name, value } of paramsFor(spec)) values[name] = value;
    built = buildStep(spec, spec.id === "W3" ? lenet : mlp, values);
  }
  const exe = await Executable.fromGraph(built.graph, { state: built.state, precision });
  for (const name of Object.keys(built.state)) await exe.write(name, values[name]);
  const scalar = spec.kind === "train";
  return {
    async step() {
      const { out } = await exe.run({}, ["out"]);
      return scalar ? out.data[0] : checksum(out.data);
    },
    dispose: () => exe.dispose(),
  };
}

await serveRunner({
  info: async () => {
    const gpu = await acquireGpu();
    return {
      library: `kiln ${(JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string }).version}`,
      backend: "webgpu",
      adapter: gpu.adapter,
      notes: [
        `target ${gpu.target.name}`,
        `${Object.keys(gpu.target.tuning?.configs ?? {}).length} GEMM classes from the tuning cache`,
        ...(precision === "mixed" ? ["precision mixed (f16 activations)"] : []),
      ],
    };
  },
  setup,
});
