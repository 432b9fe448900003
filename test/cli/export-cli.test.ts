/** `kiln export`: saved models (an MNIST MLP after a little training, LeNet-5 at its initial
 *  weights) and modules become ONNX files that ONNX Runtime runs to what Kiln predicts — Dawn
 *  through loadPredictor, and the float64 reference — within 1e-5 abs + 1e-5 rel. A graph with
 *  no ONNX form is refused and leaves no file. */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { dense, dropout } from "../../src/api/layers.ts";
import { predictGraph, sequential, type Model } from "../../src/api/model.ts";
import { interpret } from "../../src/interpret.ts";
import { inputNodes } from "../../src/ir/bind.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import { parseGraph } from "../../src/ir/parse.ts";
import { compileModel, loadPredictor } from "../../training/compile-model.ts";
import { readSafetensors } from "../../formats/safetensors.ts";
import { lenet5 } from "../../examples/lenet5.ts";
import { floats } from "../helpers/data.ts";
import { useGpu } from "../helpers/gpu.ts";
import { agreement, runOrt } from "../helpers/ort.ts";

useGpu();

const kiln = (...args: string[]) => execFileSync("node", ["bin/kiln.js", ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
const pixels = (n: number, seed: number) => floats(n, seed).map((v) => (v + 1) / 2);

/** Save `model` (after `epochs` of fit on random digits), export it, and compare ORT with
 *  loadPredictor on Dawn and with the float64 reference of model.kir. */
async function roundTrip(name: string, model: Model, shape: number[], epochs: number): Promise<string> {
  const root = mkdtempSync(join(tmpdir(), "kiln-export-"));
  const saved = join(root, name);
  const m = await compileModel(model, { optimizer: "adam", loss: "categoricalCrossEntropy", seed: 5 });
  const n = 16;
  const size = shape.reduce((a, d) => a * d, 1);
  if (epochs) {
    const y = new Float32Array(n * 10).map((_, i) => (i % 10 === (i / 10) % 7 ? 1 : 0));
    await m.fit({ shape: [n, ...shape], data: pixels(n * size, 1) }, { shape: [n, 10], data: y }, { epochs, batchSize: 8, verbose: 0 });
  }
  await m.save(saved);
  m.dispose();

  const out = kiln("export", saved, "--out", join(root, "model.onnx"));
  expect(out).toMatch(
    /model\.onnx: ONNX opset 17, \d+ nodes, \d+ initializers, [\d.]+ KiB; inputs x f32\[B,[\d,]+\]; outputs y f32\[B,10\]/,
  );
  expect(readdirSync(root).filter((f) => f.includes(".tmp-"))).toEqual([]);

  const x: HostTensor = { shape: [3, ...shape], data: pixels(3 * size, 2) };
  const graph = parseGraph(readFileSync(join(saved, "model.kir"), "utf8"));
  const ort = await runOrt(readFileSync(join(root, "model.onnx")), graph, { x });
  const p = await loadPredictor(saved, { batchSize: 4 });
  const dawn = await p.predict(x);
  p.dispose();
  const weights = readSafetensors(join(saved, "weights.safetensors")).tensors;
  const all: Record<string, HostTensor> = { x };
  const read = new Set(inputNodes(graph).map((nd) => nd.attrs.name));
  for (const [k, v] of Object.entries(weights)) if (read.has(k)) all[k] = { shape: v.shape, data: v.data };
  const ref = interpret(graph, all);
  const vsDawn = agreement(ort, { y: dawn });
  const vsRef = agreement(ort, ref);
  expect(vsDawn.mismatch, "ORT vs Dawn").toBeUndefined();
  expect(vsRef.mismatch, "ORT vs float64").toBeUndefined();
  return `${name}: vs Dawn ${vsDawn.maxAbs.toExponential(1)} abs; vs float64 ${vsRef.maxAbs.toExponential(1)} abs, ${vsRef.maxRel.toExponential(1)} rel`;
}

describe("kiln export", () => {
  it("exports a saved MNIST MLP (trained a little) that ONNX Runtime runs as Kiln does", async () => {
    const mlp = sequential(
      [dense(500, { activation: "relu" }), dropout(0.2), dense(500, { activation: "relu" }), dense(10, { activation: "softmax" })],
      {
        inputShape: [784],
      },
    );
    console.log(await roundTrip("mnist-mlp", mlp, [784], 2));
  });

  it("exports a saved LeNet-5", async () => {
    console.log(await roundTrip("lenet5", lenet5(), [28, 28, 1], 0));
  });

  it("exports modules: { model, seed } at its initial weights, { graph, weights }; refuses random", async () => {
    const root = mkdtempSync(join(tmpdir(), "kiln-export-"));
    const src = (f: string) => JSON.stringify(pathToFileURL(join(process.cwd(), f)).href);
    writeFileSync(
      join(root, "keras.mts"),
      `import { dense } from ${src("src/api/layers.ts")};\nimport { sequential } from ${src("src/api/model.ts")};\n` +
        `export default { model: sequential([dense(4, { activation: "tanh" }), dense(2)], { inputShape: [3] }), seed: 11 };\n`,
    );
    writeFileSync(
      join(root, "noise.mts"),
      `import { GraphBuilder } from ${src("src/api/builder.ts")};\nconst g = new GraphBuilder();\nconst x = g.input("x", "f32", ["B", 3]);\n` +
        `export default { graph: g.build({ y: x.mul(g.random(["B", 3], 1)) }), weights: {} };\n`,
    );
    kiln("export", join(root, "keras.mts"), "--out", join(root, "keras.onnx"));
    const model = sequential([dense(4, { activation: "tanh" }), dense(2)], { inputShape: [3] });
    const mg = predictGraph(model);
    const x: HostTensor = { shape: [2, 3], data: [0.1, -0.4, 0.9, 1, 0, -1] };
    const inputs: Record<string, HostTensor> = { x };
    for (const p of mg.params) inputs[p.name] = { shape: p.shape, data: p.initial(11) };
    const got = await runOrt(readFileSync(join(root, "keras.onnx")), mg.graph, { x });
    expect(agreement(got, interpret(mg.graph, inputs)).mismatch).toBeUndefined();

    expect(() => kiln("export", join(root, "noise.mts"), "--out", join(root, "noise.onnx"))).toThrow(
      /random %\d+ @ .*: random has no ONNX form/,
    );
    expect(existsSync(join(root, "noise.onnx"))).toBe(false);
    expect(() => kiln("export", join(root, "missing"), "--out", join(root, "m.onnx"))).toThrow(/missing: no such file or folder/);
  });
});
