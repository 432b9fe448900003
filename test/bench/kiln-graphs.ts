/** The bench's networks in Kiln's IR (used by runners/kiln.ts, and by anyone who wants the W1
 *  and W3 step graphs): the MLP and LeNet-5 forward passes, and a step graph whose inputs are the
 *  batch and the parameters, all resident, with the loss and each parameter's SGD update. */
import { GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import { softmaxCrossEntropy } from "../../src/api/composites.ts";
import { grad } from "../../src/api/grad.ts";
import type { Graph } from "../../src/ir/types.ts";
import { LENET, MLP_LAYERS, type HostArray, type WorkloadSpec } from "./workloads.ts";

export type Params = Record<string, Tensor>;

function dense(p: Params, h: Tensor, l: number): Tensor {
  return h.matmul(p[`w${l}`]).add(p[`b${l}`]);
}

export function mlp(p: Params, x: Tensor): Tensor {
  let h = x;
  for (let l = 1; l <= MLP_LAYERS.length; l++) {
    h = dense(p, h, l);
    if (l < MLP_LAYERS.length) h = h.relu();
  }
  return h;
}

export function lenet(p: Params, x: Tensor): Tensor {
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
export function buildStep(spec: WorkloadSpec, forward: (p: Params, x: Tensor) => Tensor, values: Record<string, HostArray>): { graph: Graph; state: Record<string, string | null> } {
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

