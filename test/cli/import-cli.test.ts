/** `kiln import model.onnx --out dir`: a Gemm MLP written as PyTorch exports one (input "input",
 *  output "probs", batch dim_param "batch") becomes a saved-model folder whose predictions
 *  through loadPredictor on Dawn agree with ONNX Runtime within 1e-5; `kiln explain`, `kiln run`
 *  and `kiln build` take the .onnx file directly; a file that is not ONNX is refused by name. */
import { toBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema } from "onnx-buf";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseGraph } from "../../src/ir/parse.ts";
import { Elem, OnnxWriter } from "../../formats/onnx/export-writer.ts";
import { readSafetensors } from "../../formats/safetensors.ts";
import { loadPredictor } from "../../training/compile-model.ts";
import { floats } from "../helpers/data.ts";
import { useGpu } from "../helpers/gpu.ts";
import { agreement, runOrtFeeds } from "../helpers/ort.ts";

useGpu();

const kiln = (...args: string[]) => execFileSync("node", ["bin/kiln.js", ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

function mlpOnnx(): Uint8Array {
  const w = new OnnxWriter([], new Map());
  const p = (name: string, dims: number[], seed: number) =>
    w.weight(
      name,
      Elem.FLOAT,
      dims,
      floats(dims[0] * (dims[1] ?? 1), seed).map((v) => v * 0.3),
    );
  const h = w.node("Relu", [w.node("Gemm", ["input", p("fc1.weight", [16, 8], 1), p("fc1.bias", [16], 2)], { transB: 1 })]);
  w.node(
    "Softmax",
    [w.node("Gemm", [h, p("fc2.weight", [4, 16], 3), p("fc2.bias", [4], 4)], { transB: 1 })],
    { axis: 1 },
    { out: "probs" },
  );
  const model = w.model({
    name: "mlp",
    inputs: [{ name: "input", type: { dtype: "f32", shape: ["batch", 8] } }],
    outputs: [{ name: "probs", type: { dtype: "f32", shape: ["batch", 4] } }],
    opset: 17,
    producer: { name: "pytorch-style", version: "1" },
  });
  return toBinary(ModelProtoSchema, model);
}

describe("kiln import", () => {
  const root = mkdtempSync(join(tmpdir(), "kiln-import-"));
  const file = join(root, "mlp.onnx");
  writeFileSync(file, mlpOnnx());

  it("writes model.kir and weights.safetensors that loadPredictor runs, agreeing with ONNX Runtime", async () => {
    const dir = join(root, "saved");
    const out = kiln("import", file, "--out", dir);
    expect(out).toMatch(
      /saved: \d+ Kiln nodes from ONNX opset 17, 4 weights; inputs x f32\[B,8\] \(input\); outputs y f32\[B,4\] \(probs\)/,
    );
    const graph = parseGraph(readFileSync(join(dir, "model.kir"), "utf8"));
    expect(graph.outputs.map((o) => o.name)).toEqual(["y"]);
    const weights = readSafetensors(join(dir, "weights.safetensors"));
    expect(Object.keys(weights.tensors).sort()).toEqual(["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]);
    expect(JSON.parse(weights.metadata.inputs)).toEqual([{ name: "x", onnx: "input" }]);

    const x = { shape: [3, 8], data: floats(24, 9) };
    const p = await loadPredictor(dir, { batchSize: 4 });
    const dawn = await p.predict(x);
    p.dispose();
    const ort = await runOrtFeeds(readFileSync(file), { input: { dtype: "f32", ...x } });
    expect(agreement({ probs: dawn }, ort).mismatch).toBeUndefined();
  });

  it("explain, run and build take the .onnx file directly", () => {
    expect(kiln("explain", file, "-d", "B=4")).toMatch(/kernel/i);
    expect(kiln("run", file, "-d", "B=2")).toMatch(/y: f32\[2,4\] max \|gpu − reference\| = /);
    const bundle = join(root, "bundle");
    kiln("build", file, "--out", bundle, "--batch", "4");
    expect(existsSync(join(bundle, "manifest.json"))).toBe(true);
  });

  it("refuses a file that is not ONNX, naming the problem", () => {
    const bad = join(root, "bad.onnx");
    writeFileSync(bad, new Uint8Array([0xff, 0xff, 0xff, 0x01, 0x02]));
    expect(() => kiln("import", bad, "--out", join(root, "nothing"))).toThrow(/onnx import: the bytes are not an ONNX model/);
    expect(existsSync(join(root, "nothing"))).toBe(false);
  });
});
