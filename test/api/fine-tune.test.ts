/** The fine-tuning step of an imported ONNX CNN, in float64 on the reference interpreter: its
 *  gradient (read from an SGD step with learning rate 1: w − w_next) matches central finite
 *  differences of its loss; frozen weights have no update; bad options are refused by name. */
import { describe, expect, it } from "vitest";
import { fineTuneGraph, type FineTuneGraph } from "../../src/api/fine-tune.ts";
import { sgd, adam } from "../../src/api/optimizers.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import { floats } from "../helpers/data.ts";
import { CONV_WEIGHTS, FC_WEIGHTS, cnnBatch, importCnn } from "../helpers/onnx-cnn.ts";

const N = 6;

function feeds(ft: FineTuneGraph, weights: Record<string, ArrayLike<number>>): Record<string, HostTensor> {
  const { x, classes } = cnnBatch(N, 7);
  const all: Record<string, ArrayLike<number>> = { ...weights, x, y: classes };
  const out: Record<string, HostTensor> = {};
  for (const n of ft.graph.nodes) {
    if (n.op !== "input") continue;
    const name = (n.attrs as { name: string }).name;
    out[name] = { shape: n.type.shape.map((d) => (d === "B" ? N : (d as number))), data: all[name] };
  }
  return out;
}

describe("fineTuneGraph", () => {
  it("its gradient of the loss matches float64 central finite differences, every weight", () => {
    const imported = importCnn(1);
    const ft = fineTuneGraph(imported, { loss: "sparseCategoricalCrossEntropyFromLogits", optimizer: sgd({ learningRate: 1 }) });
    expect(ft.trainable).toEqual([...CONV_WEIGHTS, ...FC_WEIGHTS]);
    const w0 = ft.weights as Record<string, Float32Array>;
    const at = interpret(ft.graph, feeds(ft, w0));
    const gradOf = (name: string) => Array.from(w0[name], (w, i) => w - at[`${name}_next`].data[i]);
    const eps = 1e-6;
    let worstErr = 0;
    for (let d = 0; d < 3; d++) {
      const v = Object.fromEntries(ft.trainable.map((name, k) => [name, floats(w0[name].length, 100 + 10 * d + k)]));
      const shifted = (sign: number) =>
        Object.fromEntries(
          Object.entries(w0).map(([name, w]) => [name, v[name] ? Array.from(w, (x, i) => x + sign * eps * v[name][i]) : w]),
        );
      const lossAt = (sign: number) => interpret(ft.graph, feeds(ft, shifted(sign))).loss.data[0];
      const numeric = (lossAt(1) - lossAt(-1)) / (2 * eps);
      let symbolic = 0;
      for (const name of ft.trainable) gradOf(name).forEach((g, i) => (symbolic += g * v[name][i]));
      expect(Math.abs(symbolic)).toBeGreaterThan(1e-3); // a direction the loss depends on
      worstErr = Math.max(worstErr, Math.abs(symbolic - numeric) / Math.max(Math.abs(symbolic), Math.abs(numeric)));
    }
    console.log(`fine-tune gradcheck: worst relative error ${worstErr.toExponential(2)} over 3 directions`);
    expect(worstErr).toBeLessThan(1e-6);
  });

  it("trains only the weights asked for: the others stay resident without an update", () => {
    const imported = importCnn(2);
    const ft = fineTuneGraph(imported, {
      loss: "sparseCategoricalCrossEntropyFromLogits",
      optimizer: adam(),
      trainable: (n) => n.startsWith("fc/"),
    });
    expect(ft.trainable).toEqual([...FC_WEIGHTS]);
    expect(ft.frozen).toEqual([...CONV_WEIGHTS]);
    for (const name of CONV_WEIGHTS) expect(ft.state[name]).toBeNull();
    for (const name of FC_WEIGHTS) {
      expect(ft.state[name]).toBe(`${name}_next`);
      for (const slot of ["m", "v"]) expect(ft.state[`${name}/${slot}`]).toBe(`${name}/${slot}_next`);
    }
    expect(ft.slots.map((s) => s.param)).not.toContain("conv/weight");
    expect(ft.inputs).toEqual(["x", "y"]);
    const listed = fineTuneGraph(imported, { loss: "sparseCategoricalCrossEntropyFromLogits", optimizer: "sgd", trainable: ["fc/bias"] });
    expect(listed.trainable).toEqual(["fc/bias"]);
  });

  it("refuses a weight it does not have, a missing output and a taken labels name", () => {
    const imported = importCnn(3);
    const base = { loss: "mse", optimizer: "sgd" } as const;
    expect(() => fineTuneGraph(imported, { ...base, trainable: ["fc/kernel"] })).toThrow(
      /trainable "fc\/kernel" is not an f32 weight.*fc\/weight/,
    );
    expect(() => fineTuneGraph(imported, { ...base, trainable: () => false })).toThrow(/no weight is trainable/);
    expect(() => fineTuneGraph(imported, { ...base, output: "logits" })).toThrow(/no output "logits" \(outputs: y\)/);
    expect(() => fineTuneGraph(imported, { ...base, labels: "x" })).toThrow(/already has an input "x"/);
    expect(() => fineTuneGraph(imported, { ...base, loss: "hinge" as never })).toThrow(/unknown loss "hinge"/);
    const trained = { ...imported, state: { ...imported.state, "fc/bias": "fc/bias_next" } };
    expect(() => fineTuneGraph(trained, base)).toThrow(/already updates its state \(fc\/bias ← fc\/bias_next\)/);
  });
});
