/** The MLP and LeNet-5 of the benchmarks in Kiln's IR, and a training (or forward) step graph
 *  whose inputs are the batch and the parameters, with the loss and each parameter's SGD update.
 *  Used by examples/models/*-train.ts (`kiln explain`) and, re-exported, by test/bench. */
import { grad, GraphBuilder, softmaxCrossEntropy, type Graph, type Shape, type Tensor } from "kiln-nn";

// The same constants as test/bench/workloads.ts (examples may not import tests).
export const CLASSES = 10;
export const MLP_LAYERS: readonly (readonly [number, number])[] = [
  [784, 500],
  [500, 500],
  [500, 10],
];
/** LeNet-5: conv 5×5×6 same → relu → pool 2; conv 5×5×16 valid → relu → pool 2; dense 120, 84, 10. */
export const LENET = { size: 28, conv1: 6, conv2: 16, kernel: 5, flat: 5 * 5 * 16, dense: [120, 84, 10] } as const;

export type Params = Record<string, Tensor>;
/** Anything with a shape: a host array, or just `{ shape }` when only the graph is wanted. */
export type Shaped = Readonly<Record<string, { readonly shape: Shape }>>;

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
  const c1 = x
    .conv2d(p.c1, { padding: [half, half, half, half] })
    .add(p.c1b)
    .relu()
    .maxPool2d([2, 2]);
  const c2 = c1.conv2d(p.c2).add(p.c2b).relu().maxPool2d([2, 2]);
  let h = c2.reshape([x.shape[0], LENET.flat]);
  for (let l = 1; l <= LENET.dense.length; l++) {
    h = dense(p, h, l);
    if (l < LENET.dense.length) h = h.relu();
  }
  return h;
}

/** Parameter shapes in the bench's order: w1 b1 w2 b2 … (dense weights [in, out]). */
export function mlpShapes(): Record<string, { shape: number[] }> {
  return Object.fromEntries(
    MLP_LAYERS.flatMap(([i, o], l) => [
      [`w${l + 1}`, { shape: [i, o] }],
      [`b${l + 1}`, { shape: [o] }],
    ]),
  );
}

/** LeNet-5's parameter shapes: conv filters HWIO c1 c1b c2 c2b, then the dense layers. */
export function lenetShapes(): Record<string, { shape: number[] }> {
  const { kernel: k, conv1, conv2, flat } = LENET;
  const out: Record<string, { shape: number[] }> = {
    c1: { shape: [k, k, 1, conv1] },
    c1b: { shape: [conv1] },
    c2: { shape: [k, k, conv1, conv2] },
    c2b: { shape: [conv2] },
  };
  LENET.dense.forEach((o, l) => {
    out[`w${l + 1}`] = { shape: [l === 0 ? flat : LENET.dense[l - 1], o] };
    out[`b${l + 1}`] = { shape: [o] };
  });
  return out;
}

/** Inputs: the batch `x` (and labels `y` when training) and every parameter, all resident;
 *  outputs: the loss `out` and, for training, each parameter's SGD update `<name>_next`, which
 *  replaces it after the step. `kind: "forward"` builds the forward pass only. */
export function buildStep(
  spec: { readonly kind: string; readonly lr: number },
  forward: (p: Params, x: Tensor) => Tensor,
  values: Shaped,
): { graph: Graph; state: Record<string, string | null> } {
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
  const grads = grad(
    loss,
    names.map((n) => p[n]),
  );
  const outputs: Record<string, Tensor> = { out: loss };
  names.forEach((n, i) => {
    outputs[`${n}_next`] = p[n].sub(grads[i].mul(spec.lr));
    state[n] = `${n}_next`;
  });
  return { graph: g.build(outputs), state };
}
