/** Kiln's runner: `tsx test/bench/runners/kiln.ts`, speaking protocol.ts.
 *
 *  Each workload is built directly in Kiln's IR, compiled for the device's target and loaded
 *  once. Parameters and the batch are resident inputs (written once, as the peers' tf.Variables
 *  and device tensors are); a training step is one submission — forward, backward and the SGD
 *  update, whose new parameters replace the old on the GPU — and reads back only the loss. */
import { GraphBuilder, type Tensor } from "../../../src/api/builder.ts";
import { softmaxCrossEntropy } from "../../../src/api/composites.ts";
import { grad } from "../../../src/api/grad.ts";
import type { Graph } from "../../../src/ir/types.ts";
import { acquireGpu } from "../../../runtime/device.ts";
import { Executable } from "../../../runtime/execute.ts";
import { serveRunner, type Session } from "../protocol.ts";
import { readFileSync } from "node:fs";
import { LENET, MLP_LAYERS, batchFor, checksum, matmulOperands, paramsFor, type HostArray, type WorkloadSpec } from "../workloads.ts";

type Params = Record<string, Tensor>;

function dense(p: Params, h: Tensor, l: number): Tensor {
  return h.matmul(p[`w${l}`]).add(p[`b${l}`]);
}

function mlp(p: Params, x: Tensor): Tensor {
  let h = x;
  for (let l = 1; l <= MLP_LAYERS.length; l++) {
    h = dense(p, h, l);
    if (l < MLP_LAYERS.length) h = h.relu();
  }
  return h;
}

function lenet(p: Params, x: Tensor): Tensor {
  const half = Math.floor(LENET.kernel / 2);
  const c1 = x.conv2d(p.c1, { padding: [half, half, half, half] }).add(p.c1b).relu().maxPool2d([2, 2]);
  const c2 = c1.conv2d(p.c2).add(p.c2b).relu().maxPool2d([2, 2]);
  let h = c2.reshape([x.shape[0], LENET.flat]);
  for (let l = 1; l <= LENET.dense.length; l++) {
    h = dense(p, h, l);
    if (l < LENET.dense.length) h = h.relu();
  }
  return h;
}

/** Inputs: the batch and every parameter, all resident; outputs: the loss and, for training,
 *  each parameter's SGD update, which replaces it after the step. */
function buildStep(spec: WorkloadSpec, forward: (p: Params, x: Tensor) => Tensor, values: Record<string, HostArray>): { graph: Graph; state: Record<string, string | null> } {
  const g = new GraphBuilder();
  const input = (name: string) => g.input(name, "f32", values[name].shape);
  const x = input("x");
  const names = Object.keys(values).filter((n) => n !== "x" && n !== "y");
  const p: Params = Object.fromEntries(names.map((n) => [n, input(n)]));
  const logits = forward(p, x);
  const state: Record<string, string | null> = { x: null };
  if (spec.kind === "forward") {
    for (const n of names) state[n] = null;
    return { graph: g.build({ out: logits }), state };
  }
  const loss = softmaxCrossEntropy(logits, input("y"));
  state.y = null;
  const grads = grad(loss, names.map((n) => p[n]));
  const outputs: Record<string, Tensor> = { out: loss };
  names.forEach((n, i) => {
    outputs[`${n}_next`] = p[n].sub(grads[i].mul(spec.lr));
    state[n] = `${n}_next`;
  });
  return { graph: g.build(outputs), state };
}

async function setup(spec: WorkloadSpec): Promise<Session> {
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
  const exe = await Executable.fromGraph(built.graph, { state: built.state });
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
    return { library: `kiln ${(JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string }).version}`, backend: "webgpu", adapter: gpu.adapter, notes: [`target ${gpu.target.name}`] };
  },
  setup,
});
