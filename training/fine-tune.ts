/** Fine-tuning an imported model on the GPU: the training step of src/api/fine-tune.ts compiled
 *  once, its weights, optimizer slots and step counter resident and updated in place.
 *      const ft = await fineTune(importOnnx(bytes), { loss: "sparseCategoricalCrossEntropyFromLogits",
 *                                                   optimizer: adam({ learningRate: 1e-3 }), batchSize: 8 });
 *      const loss = await ft.step({ x: { shape: [8, 1, 8, 8], data } }, { shape: [8], data: labels });
 *      const w = await ft.weights();   // every imported weight, fine-tuned or frozen
 *      await ft.save("tuned");         // a saved-model folder for loadPredictor / kiln run
 *      ft.dispose();
 *      const losses = await ft.fit({ x: images }, labels, { epochs: 3, batchSize: 8 }); // the loss of every step
 *  Each step returns its loss (the batch mean, before the update). */
import { join } from "node:path";
import { mkdirSync } from "node:fs";
import { fineTuneGraph, type FineTuneGraph, type FineTuneOptions, type ImportedGraph } from "../src/api/fine-tune.ts";
import { KilnError } from "../src/ir/errors.ts";
import type { HostTensor } from "../src/ir/host.ts";
import { printGraph } from "../src/ir/print.ts";
import type { DType } from "../src/ir/types.ts";
import { writeFileAtomic, writeSafetensors, type SafeDtype, type SafeTensor } from "../formats/safetensors.ts";
import { Executable } from "../runtime/execute.ts";

const SAFE: Readonly<Record<DType, SafeDtype>> = { f32: "F32", i32: "I32", u32: "U32", bool: "BOOL" };

export interface FineTuneRunOptions extends FineTuneOptions {
  /** The largest batch a step takes (the bound of the symbolic batch dim "B"; default 32). */
  readonly batchSize?: number;
}

export class FineTuner {
  private constructor(
    private readonly imported: ImportedGraph,
    /** The training step's graph, state and start values. */
    readonly spec: FineTuneGraph,
    private readonly exe: Executable,
    /** The largest batch a step takes. */
    readonly batchSize: number,
  ) {}

  static async create(imported: ImportedGraph, opts: FineTuneRunOptions): Promise<FineTuner> {
    const { batchSize, ...rest } = opts;
    if (batchSize !== undefined && !(Number.isSafeInteger(batchSize) && batchSize >= 1))
      throw new KilnError(`fineTune: batchSize must be a positive integer, got ${batchSize}`);
    const spec = fineTuneGraph(imported, rest);
    const exe = await Executable.fromGraph(spec.graph, { state: spec.state, dims: { B: batchSize ?? 32 } });
    try {
      for (const n of spec.graph.nodes) {
        const name = n.op === "input" ? (n.attrs as { name: string }).name : undefined;
        if (name !== undefined && name in spec.state)
          await exe.write(name, { shape: n.type.shape as number[], data: spec.weights[name] as Float32Array });
      }
    } catch (e) {
      exe.dispose();
      throw e;
    }
    return new FineTuner(imported, spec, exe, batchSize ?? 32);
  }

  /** One step on a batch: `inputs` the graph's data inputs by name, `labels` the loss's labels.
   *  Returns the batch's loss. */
  async step(inputs: Readonly<Record<string, HostTensor>>, labels: HostTensor): Promise<number> {
    const out = await this.exe.run({ ...inputs, [this.spec.labels]: labels }, ["loss"]);
    return out.loss.data[0];
  }

  /** Epochs over a data set held in host memory: `inputs` each data input's rows (the first dim
   *  the examples), `labels` theirs, in batches of `batchSize` (at most the bound; the last batch
   *  may be smaller) in order. Returns the loss of every step, in order. */
  async fit(
    inputs: Readonly<Record<string, HostTensor>>,
    labels: HostTensor,
    opts: { readonly epochs?: number; readonly batchSize?: number } = {},
  ): Promise<number[]> {
    const epochs = opts.epochs ?? 1;
    const batch = opts.batchSize ?? this.batchSize;
    if (!(Number.isSafeInteger(epochs) && epochs >= 1))
      throw new KilnError(`fineTune fit: epochs must be a positive integer, got ${epochs}`);
    if (!(Number.isSafeInteger(batch) && batch >= 1 && batch <= this.batchSize))
      throw new KilnError(`fineTune fit: batchSize must be an integer from 1 to the compiled bound ${this.batchSize}, got ${batch}`);
    const n = labels.shape[0];
    for (const [name, t] of Object.entries(inputs))
      if (t.shape[0] !== n) throw new KilnError(`fineTune fit: ${name} has ${t.shape[0]} examples, the labels ${n}`);
    const rows = (t: HostTensor, from: number, to: number): HostTensor => {
      const row = t.shape.slice(1).reduce((a, d) => a * d, 1);
      return { shape: [to - from, ...t.shape.slice(1)], data: Array.prototype.slice.call(t.data, from * row, to * row) as number[] };
    };
    const losses: number[] = [];
    for (let e = 0; e < epochs; e++) {
      for (let from = 0; from < n; from += batch) {
        const to = Math.min(n, from + batch);
        const xs = Object.fromEntries(Object.entries(inputs).map(([k, t]) => [k, rows(t, from, to)]));
        losses.push(await this.step(xs, rows(labels, from, to)));
      }
    }
    return losses;
  }

  /** The current value of every imported weight (and, with `all`, of the slots and "step/t"). */
  async weights(all = false): Promise<Record<string, Float32Array | Int32Array | Uint32Array | Uint8Array>> {
    const names = all ? Object.keys(this.spec.state) : Object.keys(this.imported.state);
    const out: Record<string, Float32Array | Int32Array | Uint32Array | Uint8Array> = {};
    for (const name of names) out[name] = (await this.exe.read(name)).data as Float32Array;
    return out;
  }

  /** A saved-model folder — model.kir (the imported inference graph) and weights.safetensors
   *  (the fine-tuned weights) — that loadPredictor and `kiln run` take. */
  async save(dir: string): Promise<void> {
    const values = await this.weights();
    const tensors: Record<string, SafeTensor> = {};
    for (const n of this.imported.graph.nodes) {
      const name = n.op === "input" ? (n.attrs as { name: string }).name : "";
      if (name in values) tensors[name] = { dtype: SAFE[n.type.dtype], shape: n.type.shape as number[], data: values[name] };
    }
    mkdirSync(dir, { recursive: true });
    writeSafetensors(join(dir, "weights.safetensors"), tensors, { source: "kiln fine-tune" });
    writeFileAtomic(join(dir, "model.kir"), `${printGraph(this.imported.graph)}\n`);
  }

  dispose(): void {
    this.exe.dispose();
  }
}

/** Compile the fine-tuning step of `imported` and load its start values (see FineTuner). */
export const fineTune = (imported: ImportedGraph, opts: FineTuneRunOptions): Promise<FineTuner> => FineTuner.create(imported, opts);
