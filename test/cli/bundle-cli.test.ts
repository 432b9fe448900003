/** `kiln build` on a saved model (TrainedModel.save): the inference bundle predicts what
 *  loadPredictor predicts, and the training bundle's Adam step gives the float64 reference's
 *  loss and updates — both run standalone. Bad arguments are refused. */
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { dense } from "../../src/api/layers.ts";
import { sequential } from "../../src/api/model.ts";
import { adam } from "../../src/api/optimizers.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import { inputNodes } from "../../src/ir/bind.ts";
import { parseGraph } from "../../src/ir/parse.ts";
import { compileModel, loadPredictor } from "../../training/compile-model.ts";
import { readSafetensors } from "../../formats/safetensors.ts";
import { readBundle as filesOf } from "../../examples/run-bundle.ts";
import { batchOf, removeStandalone, runStandalone, standalone } from "../helpers/bundle.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();
afterAll(removeStandalone);

const kiln = (...args: string[]) => execFileSync("node", ["bin/kiln.js", ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

describe("kiln build", () => {
  it("builds inference and training bundles from a saved model that run standalone and match", async () => {
    const root = mkdtempSync(join(tmpdir(), "kiln-build-"));
    const saved = join(root, "tiny-mlp");
    const m = await compileModel(
      sequential([dense(32, { activation: "relu" }), dense(10, { activation: "softmax" })], { inputShape: [784] }),
      { optimizer: adam({ learningRate: 1e-2 }), loss: "categoricalCrossEntropy", seed: 3 },
    );
    await m.save(saved);
    m.dispose();

    const out = kiln("build", saved, "--out", join(root, "infer"), "--batch", "4");
    expect(out).toMatch(/infer: \d+ kernels, \d+ files, [\d.]+ KiB \(dims \{"B":4\}/);
    expect(readdirSync(root).filter((f) => f.includes(".tmp-"))).toEqual([]);
    const { x, y } = batchOf(3, 784, 9);
    const got = (await runStandalone(standalone(filesOf(join(root, "infer"))), { x })).results[0].y;
    const p = await loadPredictor(saved, { batchSize: 4 });
    const want = (await p.predict({ shape: [3, 784], data: x })).data;
    p.dispose();
    got.forEach((v, i) => expect(v).toBeCloseTo(want[i], 6));

    kiln("build", saved, "--out", join(root, "train"), "--batch", "4", "--train", "--no-fuse");
    const manifest = JSON.parse(readFileSync(join(root, "train", "manifest.json"), "utf8"));
    expect(manifest.mode).toBe("train");
    expect(manifest.compiler.fuse).toBe(false);
    const step = await runStandalone(standalone(filesOf(join(root, "train"))), { x, y: y.subarray(0, 30) }, 1);
    // The float64 reference of the saved training step on the saved weights.
    const graph = parseGraph(readFileSync(join(saved, "train.kir"), "utf8"));
    const { state } = JSON.parse(readFileSync(join(saved, "train.json"), "utf8")) as { state: Record<string, string | null> };
    const w = readSafetensors(join(saved, "weights.safetensors")).tensors;
    const inputs: Record<string, HostTensor> = { x: { shape: [3, 784], data: x }, y: { shape: [3, 10], data: y.subarray(0, 30) } };
    for (const n of inputNodes(graph))
      if (n.attrs.name in w) inputs[n.attrs.name] = { shape: n.type.shape as number[], data: w[n.attrs.name].data };
    const ref = interpret(graph, inputs);
    expect(step.results[0].loss[0]).toBeCloseTo(ref.loss.data[0], 5);
    for (const [name, next] of Object.entries(state)) {
      if (next === null) continue;
      const r = ref[next].data;
      step.weights[name].forEach((v, i) => expect(Math.abs(v - r[i]), `${name}[${i}]`).toBeLessThan(1e-5 + 1e-4 * Math.abs(r[i])));
    }
  });

  it("refuses a bad batch, a module without weights, and leaves no folder behind", () => {
    const root = mkdtempSync(join(tmpdir(), "kiln-build-"));
    const fail = (...args: string[]) => {
      try {
        kiln(...args);
      } catch (e) {
        return String((e as { stderr: string }).stderr);
      }
      throw new Error("kiln build succeeded");
    };
    cpSync("examples/ir/affine-tanh.kir", join(root, "m.kir"));
    expect(fail("build", join(root, "m.kir"), "--out", join(root, "b"), "--batch", "0")).toMatch(
      /--batch must be a positive integer, got "0"/,
    );
    expect(fail("build", join(root, "m.kir"), "--out", join(root, "b"))).toMatch(
      /m\.kir: a \.kir file has no weights; build a saved-model folder/,
    );
    expect(existsSync(join(root, "b"))).toBe(false);
  });

  // .mts: a .ts file outside a "type": "module" package would be loaded as CommonJS.
  it("builds from a module: a model of the model API at its initial weights, or a graph with its weights", async () => {
    const root = mkdtempSync(join(tmpdir(), "kiln-build-"));
    const src = (f: string) => JSON.stringify(pathToFileURL(join(process.cwd(), f)).href);
    writeFileSync(
      join(root, "keras.mts"),
      [
        `import { dense } from ${src("src/api/layers.ts")};`,
        `import { sequential } from ${src("src/api/model.ts")};`,
        `import { sgd } from ${src("src/api/optimizers.ts")};`,
        `export default { model: sequential([dense(4, { activation: "relu" }), dense(2, { activation: "softmax" })], { inputShape: [3] }), optimizer: sgd({ learningRate: 0.1 }), loss: "categoricalCrossEntropy", seed: 5 };`,
      ].join("\n"),
    );
    writeFileSync(
      join(root, "graph.mts"),
      [
        `import { GraphBuilder } from ${src("src/api/builder.ts")};`,
        `const g = new GraphBuilder();`,
        `const x = g.input("x", "f32", ["B", 3]);`,
        `const w = g.input("w", "f32", [3, 2]);`,
        `export default { graph: g.build({ y: x.matmul(w) }), state: { w: null }, weights: { w: Float32Array.from([1, 2, 3, 4, 5, 6]) } };`,
      ].join("\n"),
    );
    const x = Float32Array.from([0.5, -1, 2, 1, 0, -0.25]);
    kiln("build", join(root, "keras.mts"), "--out", join(root, "keras"), "--batch", "2");
    const got = (await runStandalone(standalone(filesOf(join(root, "keras"))), { x })).results[0].y;
    const m = await compileModel(sequential([dense(4, { activation: "relu" }), dense(2, { activation: "softmax" })], { inputShape: [3] }), {
      optimizer: adam({}),
      loss: "categoricalCrossEntropy",
      seed: 5,
    });
    const want = (await m.predict({ shape: [2, 3], data: x })).data;
    m.dispose();
    got.forEach((v, i) => expect(v).toBeCloseTo(want[i], 6));
    kiln("build", join(root, "keras.mts"), "--out", join(root, "keras-train"), "--train");
    expect(JSON.parse(readFileSync(join(root, "keras-train", "manifest.json"), "utf8")).mode).toBe("train");
    kiln("build", join(root, "graph.mts"), "--out", join(root, "graph"), "--batch", "2");
    const y = (await runStandalone(standalone(filesOf(join(root, "graph"))), { x })).results[0].y;
    expect(y).toEqual([0.5 * 1 - 1 * 3 + 2 * 5, 0.5 * 2 - 1 * 4 + 2 * 6, 1 * 1 + 0 - 0.25 * 5, 1 * 2 + 0 - 0.25 * 6]);
  });
});
