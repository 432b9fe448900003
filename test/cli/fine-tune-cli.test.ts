/** `kiln build model.onnx --train --loss … --optimizer … [--lr] [--trainable]`: an ONNX CNN's
 *  fine-tuning step as a training bundle that runs standalone, its losses and updated weights
 *  those of the in-process steps (training/fine-tune.ts), the frozen weights unchanged; the
 *  flags are refused where they mean nothing. */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { readBundle as filesOf } from "../../examples/run-bundle.ts";
import { adam } from "../../src/api/optimizers.ts";
import { fineTune } from "../../training/fine-tune.ts";
import { removeStandalone, runStandalone, standalone, worst } from "../helpers/bundle.ts";
import { useGpu } from "../helpers/gpu.ts";
import { CNN, CONV_WEIGHTS, FC_WEIGHTS, cnnBatch, cnnOnnx, importCnn } from "../helpers/onnx-cnn.ts";

useGpu();
const root = mkdtempSync(join(tmpdir(), "kiln-finetune-cli-"));
afterAll(() => {
  removeStandalone();
  rmSync(root, { recursive: true, force: true });
});

const kiln = (...args: string[]) => execFileSync("node", ["bin/kiln.js", ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
const N = 12;

describe("kiln build model.onnx --train", () => {
  it("bundles the fine-tuning step of the last layer; standalone it matches the in-process steps", async () => {
    const file = join(root, "cnn.onnx");
    writeFileSync(file, cnnOnnx(4));
    const args = ["--loss", "categoricalCrossEntropyFromLogits", "--optimizer", "adam", "--lr", "0.01", "--trainable", "fc/*"];
    const out = kiln("build", file, "--train", ...args, "--batch", String(N), "--out", join(root, "train"));
    expect(out).toMatch(/train: \d+ kernels/);
    expect(JSON.parse(readFileSync(join(root, "train", "manifest.json"), "utf8")).mode).toBe("train");
    const { x, oneHot } = cnnBatch(N, 9);
    const got = await runStandalone(standalone(filesOf(join(root, "train"))), { x, y: oneHot }, 3);
    const imported = importCnn(4);
    const ft = await fineTune(imported, {
      loss: "categoricalCrossEntropyFromLogits",
      optimizer: adam({ learningRate: 0.01 }),
      trainable: (n) => n.startsWith("fc/"),
      batchSize: N,
    });
    try {
      const ours: number[] = [];
      for (let s = 0; s < 3; s++)
        ours.push(
          await ft.step({ x: { shape: [N, CNN.channels, CNN.size, CNN.size], data: x } }, { shape: [N, CNN.classes], data: oneHot }),
        );
      expect(
        worst(
          got.results.map((r) => r.loss[0]),
          ours,
          1e-5,
          1e-4,
        ),
      ).toBeLessThanOrEqual(1);
      expect(got.results[2].loss[0]).toBeLessThan(got.results[0].loss[0]);
      const w = await ft.weights(true);
      for (const name of Object.keys(w)) expect(worst(got.weights[name], w[name], 1e-5, 1e-4), name).toBeLessThanOrEqual(1);
      for (const name of CONV_WEIGHTS) expect(got.weights[name], name).toEqual(Array.from(imported.weights[name]));
      for (const name of FC_WEIGHTS) expect(worst(got.weights[name], imported.weights[name], 1e-5, 1e-4), name).toBeGreaterThan(1);
      expect(Object.keys(got.weights)).not.toContain("conv/weight/m");
    } finally {
      ft.dispose();
    }
  });

  it("a module { onnx, loss, optimizer, trainable } builds the same training bundle as the flags", async () => {
    writeFileSync(join(root, "cnn6.onnx"), cnnOnnx(6));
    const src = (p: string) => JSON.stringify(pathToFileURL(join(process.cwd(), p)).href);
    writeFileSync(
      join(root, "tune.mts"),
      [
        `import { adam } from ${src("src/api/optimizers.ts")};`,
        `export default { onnx: "cnn6.onnx", loss: "categoricalCrossEntropyFromLogits", optimizer: adam({ learningRate: 0.01 }), trainable: (n) => n.startsWith("fc/") };`,
      ].join("\n"),
    );
    kiln("build", join(root, "tune.mts"), "--train", "--batch", String(N), "--out", join(root, "module-train"));
    const flags = ["--loss", "categoricalCrossEntropyFromLogits", "--optimizer", "adam", "--lr", "0.01", "--trainable", "fc/*"];
    kiln("build", join(root, "cnn6.onnx"), "--train", ...flags, "--batch", String(N), "--out", join(root, "flags-train"));
    const a = filesOf(join(root, "module-train"));
    const b = filesOf(join(root, "flags-train"));
    expect(a.get("weights.safetensors")).toEqual(b.get("weights.safetensors"));
    const { x, oneHot } = cnnBatch(N, 10);
    const got = await runStandalone(standalone(a), { x, y: oneHot }, 2);
    const want = await runStandalone(standalone(b), { x, y: oneHot }, 2);
    expect(got).toEqual(want);
    expect(got.results[1].loss[0]).toBeLessThan(got.results[0].loss[0]);
    kiln("build", join(root, "tune.mts"), "--batch", String(N), "--out", join(root, "module-infer"));
    expect(JSON.parse(readFileSync(join(root, "module-infer", "manifest.json"), "utf8")).mode).toBe("inference");
  });

  it("refuses a missing loss, fine-tuning flags without an .onnx and --train, a --trainable that matches nothing, a bad --lr", () => {
    const file = join(root, "cnn2.onnx");
    writeFileSync(file, cnnOnnx(5));
    const stderr = (...args: string[]) => {
      try {
        kiln(...args);
      } catch (e) {
        return String((e as { stderr: string }).stderr);
      }
      throw new Error(`kiln ${args.join(" ")} succeeded`);
    };
    const out = join(root, "bad");
    expect(stderr("build", file, "--train", "--optimizer", "adam", "--out", out)).toMatch(/needs --loss <name> and --optimizer <name>/);
    expect(stderr("build", file, "--loss", "mse", "--out", out)).toMatch(
      /--loss fine-tune an ONNX model: they go with a \.onnx file and --train/,
    );
    expect(stderr("build", file, "--train", "--loss", "mse", "--optimizer", "sgd", "--trainable", "head/*", "--out", out)).toMatch(
      /--trainable "head\/\*" matches no weight \(weights: conv\/weight, conv\/bias, fc\/weight, fc\/bias\)/,
    );
    expect(stderr("build", file, "--train", "--loss", "mse", "--optimizer", "sgd", "--lr", "-1", "--out", out)).toMatch(
      /--lr must be a positive number/,
    );
    expect(stderr("build", file, "--train", "--loss", "mse", "--optimizer", "adamw", "--out", out)).toMatch(/unknown optimizer "adamw"/);
    expect(existsSync(out)).toBe(false);
  });
});
