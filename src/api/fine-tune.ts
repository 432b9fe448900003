/** Fine-tuning an imported graph (formats/onnx/import.ts importOnnx, or any graph whose weights
 *  are resident inputs): the training step of the model API (./model.ts trainStepGraph) over a
 *  graph that was not built from layers.
 *      const m = importOnnx(bytes);
 *      const step = fineTuneGraph(m, { loss: "sparseCategoricalCrossEntropyFromLogits", optimizer: adam(),
 *                                       trainable: (name) => name.startsWith("fc") });
 *      // step.graph: inputs the data inputs, the labels "y", the weights, the optimizer slots and
 *      // "step/t"; outputs "loss" and "<name>_next" for every trainable weight and slot.
 *      // step.state: for compile(graph, { state }); step.weights: every resident input's start value.
 *  The loss is the model API's (./losses.ts, by name or object) on one output of the graph; the
 *  gradient is grad (./grad.ts) with respect to the trainable weights only, so a frozen weight is
 *  resident and never written (its value stays bit for bit). The optimizer's update is the one
 *  trainStepGraph uses (./model.ts optimizerUpdates). Nothing here runs anything: the GPU part is
 *  training/fine-tune.ts. */
import { KilnError } from "../ir/errors.ts";
import { formatType } from "../ir/shape.ts";
import type { Graph, Node } from "../ir/types.ts";
import { GraphBuilder, type Tensor } from "./builder.ts";
import { grad } from "./grad.ts";
import { lossByName, type Loss, type LossName } from "./losses.ts";
import { optimizerUpdates, type SlotInfo } from "./model.ts";
import type { Optimizer } from "./optimizer.ts";
import { optimizerByName, type OptimizerName } from "./optimizers.ts";
import { withSite } from "./site.ts";

type WeightArray = Float32Array | Int32Array | Uint32Array | Uint8Array;

/** What importOnnx returns, as far as fine-tuning needs it. */
export interface ImportedGraph {
  readonly graph: Graph;
  /** The weight inputs (resident state; null: kept). */
  readonly state: Readonly<Record<string, string | null>>;
  readonly weights: Readonly<Record<string, WeightArray>>;
}

export interface FineTuneOptions {
  readonly loss: LossName | Loss;
  readonly optimizer: OptimizerName | Optimizer;
  /** Which weights train: a list of names, or a predicate on the name (default: every f32
   *  weight). The others are resident and unchanged. */
  readonly trainable?: readonly string[] | ((name: string) => boolean);
  /** The graph output the loss reads (default: the graph's only output). */
  readonly output?: string;
  /** The labels' input name (default "y"). */
  readonly labels?: string;
}

export interface FineTuneGraph {
  readonly graph: Graph;
  /** For compile(graph, { state }): every weight, slot and "step/t" → its update output (null: kept). */
  readonly state: Record<string, string | null>;
  /** The start value of every resident input: the imported weights, the slots' initial values
   *  and the step counter 1. */
  readonly weights: Record<string, WeightArray>;
  readonly trainable: readonly string[];
  readonly frozen: readonly string[];
  readonly slots: readonly SlotInfo[];
  /** The inputs fed each step: the graph's data inputs and the labels. */
  readonly inputs: readonly string[];
  readonly labels: string;
  readonly loss: string;
}

const nameOf = (n: Node) => (n.attrs as { name: string }).name;

export function fineTuneGraph(imported: ImportedGraph, opts: FineTuneOptions): FineTuneGraph {
  if (!imported?.graph || !imported.state || !imported.weights)
    throw new KilnError("fineTuneGraph: the first argument must be an imported model { graph, state, weights } (importOnnx's result)");
  const updated = Object.entries(imported.state).filter(([, o]) => o !== null);
  if (updated.length)
    throw new KilnError(
      `fineTuneGraph: the graph already updates its state (${updated.map(([k, o]) => `${k} ← ${o}`).join(", ")}); it takes an inference graph whose weights are kept (null)`,
    );
  const loss = lossByName(opts.loss);
  const optimizer = optimizerByName(opts.optimizer);
  const { graph } = imported;
  const outs = graph.outputs;
  const output = opts.output ?? (outs.length === 1 ? outs[0].name : undefined);
  if (output === undefined)
    throw new KilnError(
      `fineTuneGraph: the graph has ${outs.length} outputs (${outs.map((o) => o.name).join(", ")}); say which one the loss reads (output)`,
    );
  const out = outs.find((o) => o.name === output);
  if (!out) throw new KilnError(`fineTuneGraph: no output "${output}" (outputs: ${outs.map((o) => o.name).join(", ")})`);

  const inputs = graph.nodes.filter((n) => n.op === "input");
  const weightNodes = inputs.filter((n) => nameOf(n) in imported.state);
  for (const n of weightNodes)
    if (!imported.weights[nameOf(n)]) throw new KilnError(`fineTuneGraph: no value for the weight "${nameOf(n)}" ${formatType(n.type)}`);
  const f32 = weightNodes.filter((n) => n.type.dtype === "f32").map(nameOf);
  const pick = opts.trainable;
  let trainable: string[];
  if (pick === undefined) trainable = f32;
  else if (typeof pick === "function") trainable = f32.filter((name) => pick(name));
  else {
    for (const name of pick) {
      if (!f32.includes(name))
        throw new KilnError(`fineTuneGraph: trainable "${name}" is not an f32 weight of the graph (weights: ${f32.join(", ") || "none"})`);
    }
    trainable = f32.filter((name) => pick.includes(name));
  }
  if (trainable.length === 0) throw new KilnError(`fineTuneGraph: no weight is trainable (weights: ${f32.join(", ") || "none"})`);
  const labels = opts.labels ?? "y";
  if (inputs.some((n) => nameOf(n) === labels))
    throw new KilnError(`fineTuneGraph: the graph already has an input "${labels}"; name the labels input otherwise (labels)`);
  for (const name of ["step/t", "loss"])
    if (inputs.some((n) => nameOf(n) === name))
      throw new KilnError(`fineTuneGraph: the graph has an input "${name}", a name the training step uses`);

  const g = GraphBuilder.from(graph);
  const pred = g.tensor(out.id);
  const lt = loss.labels(pred.shape);
  const y = g.input(labels, lt.dtype, lt.shape);
  const site = `fine-tune (loss ${loss.name})`;
  const value = withSite(site, () => loss.compute(pred, y));
  if (value.rank !== 0 || value.dtype !== "f32") throw new KilnError(`${site}: the loss is ${formatType(value.type)}, not an f32 scalar`);
  const outputs: Record<string, Tensor> = { loss: value };
  const state: Record<string, string | null> = { ...imported.state };
  const resident = (name: string, next: Tensor) => {
    state[name] = `${name}_next`;
    outputs[`${name}_next`] = next;
  };
  const params = trainable.map((name) => {
    const n = weightNodes.find((w) => nameOf(w) === name)!;
    return { name, shape: n.type.shape as number[], tensor: g.tensor(n.id) };
  });
  const t = g.input("step/t", "f32", []);
  const grads = grad(
    value,
    params.map((p) => p.tensor),
  );
  const slots = optimizerUpdates(optimizer, params, grads, t, resident);
  resident("step/t", t.add(1));

  const weights: Record<string, WeightArray> = { ...imported.weights, "step/t": new Float32Array([1]) };
  for (const s of slots) weights[s.name] = new Float32Array(s.shape.reduce((a, d) => a * d, 1)).fill(s.init);
  const data = inputs.map(nameOf).filter((name) => !(name in imported.state));
  return {
    graph: g.build(outputs),
    state,
    weights,
    trainable,
    frozen: weightNodes.map(nameOf).filter((name) => !trainable.includes(name)),
    slots,
    inputs: [...data, labels],
    labels,
    loss: loss.name,
  };
}
