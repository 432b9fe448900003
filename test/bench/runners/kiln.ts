/** Kiln's runner: `tsx test/bench/runners/kiln.ts`, speaking protocol.ts.
 *
 *  Each workload is built directly in Kiln's IR, compiled for the device's target and loaded
 *  once. Parameters and the batch are resident inputs (written once, as the peers' tf.Variables
 *  and device tensors are); a training step is one submission — forward, backward and the SGD
 *  update, whose new parameters replace the old on the GPU — and reads back only the loss. */
import { GraphBuilder } from "../../../src/api/builder.ts";
import type { Graph } from "../../../src/ir/types.ts";
import { buildStep, lenet, mlp } from "../kiln-graphs.ts";
import { acquireGpu } from "../../../runtime/device.ts";
import { Executable } from "../../../runtime/execute.ts";
import { serveRunner, type Session } from "../protocol.ts";
import { readFileSync } from "node:fs";
import { batchFor, checksum, matmulOperands, paramsFor, type HostArray, type WorkloadSpec } from "../workloads.ts";

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
