/** TensorFlow.js runner: `tsx test/bench/runners/tfjs.ts <webgpu|wasm|cpu>`, speaking protocol.ts.
 *
 *  Loaded through the union package `@tensorflow/tfjs`: on Node the core bundle alone registers
 *  no gradients. The webgpu backend runs on the same Dawn as Kiln: `navigator.gpu` must exist
 *  before the backend module is imported (it probes for it at import time). Training uses
 *  tf.train.sgd().minimize with the weights as tf.Variables, so they stay on the device; the
 *  returned loss is awaited with data() every step. W6 is the Keras-style path: tf.sequential of
 *  tf.layers.dense, compile with Adam, and a step is one model.fit epoch, unshuffled. */
import { availableParallelism } from "node:os";
import type { Scalar, Tensor, Tensor4D } from "@tensorflow/tfjs";
import { serveRunner, type Session } from "../protocol.ts";
import { packageVersion } from "../versions.ts";
import { LENET, MLP_LAYERS, batchFor, checksum, matmulOperands, paramsFor, type HostArray, type WorkloadSpec } from "../workloads.ts";

const backend = process.argv[2];
if (backend !== "webgpu" && backend !== "wasm" && backend !== "cpu") {
  console.error(`usage: tfjs.ts <webgpu|wasm|cpu>; got ${JSON.stringify(backend)}`);
  process.exit(2);
}

let adapter: string | undefined;
const notes: string[] = [];
if (backend === "webgpu") {
  const { create, globals } = await import("webgpu");
  for (const [k, v] of Object.entries(globals)) if (!(k in globalThis)) Object.assign(globalThis, { [k]: v });
  process.env.XDG_RUNTIME_DIR ??= "/tmp";
  const gpu = create([]);
  Object.defineProperty(globalThis, "navigator", {
    value: { gpu, userAgent: `Node.js/${process.version}`, hardwareConcurrency: availableParallelism() },
    configurable: true,
  });
  const a = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!a) throw new Error("tfjs-webgpu: Dawn found no adapter");
  adapter = `${a.info.description || a.info.device} [${[a.info.vendor, a.info.architecture].filter(Boolean).join(" ")}]`;
}

const tf = await import("@tensorflow/tfjs");
if (backend === "webgpu") await import("@tensorflow/tfjs-backend-webgpu");
// TF.js turns wasm threads off on Node (tfjs issue #3830); forcing WASM_HAS_MULTITHREAD_SUPPORT
// fails: Node's Worker rejects the blob: URL of the pthread script (ERR_WORKER_PATH).
if (backend === "wasm") await import("@tensorflow/tfjs-backend-wasm");
if (!(await tf.setBackend(backend))) throw new Error(`tfjs: backend ${backend} failed to initialise`);
await tf.ready();
if (backend === "wasm") {
  const simd = await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT");
  const threads = await tf.env().getAsync("WASM_HAS_MULTITHREAD_SUPPORT");
  notes.push(
    `simd ${simd ? "on" : "off"}`,
    `threads ${threads ? "on" : "off (TF.js disables them on Node; forced, its pthread Worker fails to load)"}`,
  );
}
const version = packageVersion("@tensorflow/tfjs");

const toTensor = (h: HostArray) => tf.tensor(h.data, [...h.shape], "float32");

function train(spec: WorkloadSpec, forward: (p: Record<string, Tensor>, x: Tensor) => Tensor): Session {
  const vars = Object.fromEntries(paramsFor(spec).map(({ name, value }) => [name, tf.variable(toTensor(value), true, name)]));
  const data = batchFor(spec);
  const x = toTensor(data.x);
  const y = toTensor(data.onehot);
  const opt = tf.train.sgd(spec.lr);
  return {
    async step() {
      const loss = opt.minimize(() => tf.losses.softmaxCrossEntropy(y, forward(vars, x)) as Scalar, true);
      if (!loss) throw new Error("tfjs: minimize returned no loss");
      const v = (await loss.data())[0];
      loss.dispose();
      return v;
    },
    dispose() {
      tf.dispose([x, y, ...Object.values(vars)]);
      opt.dispose();
    },
  };
}

const dense = (p: Record<string, Tensor>, h: Tensor, l: number) => tf.add(tf.matMul(h, p[`w${l}`]), p[`b${l}`]);

function mlp(p: Record<string, Tensor>, x: Tensor): Tensor {
  const h1 = tf.relu(dense(p, x, 1));
  const h2 = tf.relu(dense(p, h1, 2));
  return dense(p, h2, 3);
}

function lenet(p: Record<string, Tensor>, x: Tensor): Tensor {
  const block = (h: Tensor, f: Tensor, b: Tensor, pad: "same" | "valid") =>
    tf.maxPool(tf.relu(tf.add(tf.conv2d(h as Tensor4D, f as Tensor4D, 1, pad), b)) as Tensor4D, 2, 2, "valid");
  const c1 = block(x, p.c1, p.c1b, "same");
  const c2 = block(c1, p.c2, p.c2b, "valid");
  const f = tf.reshape(c2, [-1, LENET.flat]);
  return dense(p, tf.relu(dense(p, tf.relu(dense(p, f, 1)), 2)), 3);
}

function fit(spec: WorkloadSpec): Session {
  const model = tf.sequential({
    layers: MLP_LAYERS.map(([inputs, units], l) =>
      tf.layers.dense({ units, activation: l < MLP_LAYERS.length - 1 ? "relu" : "softmax", ...(l === 0 ? { inputShape: [inputs] } : {}) }),
    ),
  });
  model.compile({ optimizer: tf.train.adam(spec.lr), loss: "categoricalCrossentropy", metrics: ["accuracy"] });
  const p = Object.fromEntries(paramsFor(spec).map(({ name, value }) => [name, value]));
  // setWeights copies, so the temporary tensors are freed at once.
  model.layers.forEach((layer, l) => tf.tidy(() => layer.setWeights([toTensor(p[`w${l + 1}`]), toTensor(p[`b${l + 1}`])])));
  const data = batchFor(spec);
  const x = toTensor(data.x);
  const y = toTensor(data.onehot);
  return {
    async step() {
      const h = await model.fit(x, y, { epochs: 1, batchSize: spec.batch, shuffle: false, verbose: 0 });
      return h.history.loss[0] as number;
    },
    dispose() {
      tf.dispose([x, y]);
      model.dispose();
    },
  };
}

function readback(compute: () => Tensor, keep: Tensor[]): Session {
  return {
    async step() {
      const out = tf.tidy(compute);
      const v = checksum(await out.data());
      out.dispose();
      return v;
    },
    dispose: () => tf.dispose(keep),
  };
}

async function setup(spec: WorkloadSpec): Promise<Session> {
  switch (spec.id) {
    case "W1":
      return train(spec, mlp);
    case "W3":
      return train(spec, lenet);
    case "W2": {
      const p = Object.fromEntries(paramsFor(spec).map(({ name, value }) => [name, toTensor(value)]));
      const x = toTensor(batchFor(spec).x);
      return readback(() => mlp(p, x), [x, ...Object.values(p)]);
    }
    case "W5": {
      const { a, b } = matmulOperands(spec);
      const [ta, tb] = [toTensor(a), toTensor(b)];
      return readback(() => tf.matMul(ta, tb), [ta, tb]);
    }
    case "W6":
      return fit(spec);
    case "W7":
      throw new Error("W7 is an ONNX file; TF.js has no ONNX importer (onnxruntime and Kiln run it)");
  }
}

await serveRunner({
  info: () => ({ library: `@tensorflow/tfjs ${version}`, backend, adapter, notes }),
  setup,
});
