/** Bundle emission without a GPU: the files and manifest, determinism, manifest validation, and
 *  the generated loader type-checked by the TypeScript compiler (strict, DOM + @webgpu/types,
 *  no Node types), with a typed use of it that must and must not compile. */
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { FORMAT, validateManifest, type Manifest } from "../../formats/bundle-manifest.ts";
import { buildBundle } from "../../cli/build.ts";
import { SHIPPED_SOURCES } from "../../compiler/bundle/loader.ts";
import { lenetInput, mlpInput } from "../helpers/bundle.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

const mlp = buildBundle(mlpInput("forward", 16), { name: "mnist-mlp" });
const train = buildBundle(mlpInput("train", 16), { name: "mnist-mlp-train", mode: "train" });
const manifestOf = (files: Map<string, string | Uint8Array>): Manifest => JSON.parse(files.get("manifest.json") as string);

/** Diagnostics of `files` (written to a temp folder) compiled strictly for a browser: with
 *  TypeScript's own DOM WebGPU types, and again with @webgpu/types (which the DOM lib of
 *  TypeScript 6 partly duplicates: lib checking off for that run). No Node types either way. */
function typecheck(files: Record<string, string>): string[] {
  return [...typecheckWith(files, false), ...typecheckWith(files, true)];
}

function typecheckWith(files: Record<string, string>, webgpuTypes: boolean): string[] {
  const dir = mkdtempSync(join(tmpdir(), "kiln-loader-tsc-"));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const program = ts.createProgram(
    Object.keys(files).map((f) => join(dir, f)),
    {
      strict: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ES2022,
      moduleResolution: ts.ModuleResolutionKind.Bundler,
      lib: ["lib.es2022.d.ts", "lib.dom.d.ts"],
      allowImportingTsExtensions: true,
      ...(webgpuTypes ? { typeRoots: [join(ROOT, "node_modules/@webgpu")], types: ["types"], skipLibCheck: true } : { types: [] }),
    },
  );
  return ts
    .getPreEmitDiagnostics(program)
    .map(
      (d) =>
        `${webgpuTypes ? "@webgpu/types" : "dom"} ${d.file?.fileName.replace(dir, "") ?? ""}: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`,
    );
}

describe("bundle emission", () => {
  it("writes a kernel file per kernel, a valid manifest and a checksummed weights file", () => {
    const m = validateManifest(JSON.parse(mlp.get("manifest.json") as string));
    expect(m.format).toBe(FORMAT);
    expect(m.dims).toEqual({ B: 16 });
    expect(m.inputs.map((i) => [i.name, i.shape])).toEqual([["x", ["B", 784]]]);
    expect(m.outputs.map((o) => [o.name, o.dtype, o.shape])).toEqual([["out", "f32", ["B", 10]]]);
    expect(m.state.map((s) => s.name).sort()).toEqual(["b1", "b2", "b3", "w1", "w2", "w3"]);
    const kernels = [...mlp.keys()].filter((f) => f.startsWith("kernels/"));
    expect(kernels.sort()).toEqual(m.kernels.map((k) => k.file).sort());
    m.kernels.forEach((k, i) => {
      const wgsl = mlp.get(k.file) as string;
      expect(k.file).toMatch(/^kernels\/k\d+-[a-z0-9-]+\.wgsl$/);
      expect(wgsl.startsWith(`// mnist-mlp: kernel ${i + 1} of ${m.kernels.length} (${k.name}), dispatched `)).toBe(true);
      expect(wgsl).toContain("@compute");
    });
    const w = mlp.get("weights.safetensors") as Uint8Array;
    expect(m.weights).toEqual({ file: "weights.safetensors", bytes: w.length, sha256: createHash("sha256").update(w).digest("hex") });
    // The arena is planned at the bound: x [16,784] alone needs 50 KB of it.
    expect(m.buffers.filter((b) => b.kind === "arena").reduce((a, b) => a + b.bytes, 0)).toBeGreaterThanOrEqual(16 * 784 * 4);
  });

  it("a training bundle keeps every parameter resident and updated by the step", () => {
    const m = manifestOf(train);
    expect(m.mode).toBe("train");
    expect(m.inputs.map((i) => i.name)).toEqual(["x", "y"]);
    expect(m.outputs.map((o) => o.name)).toEqual(["out"]);
    expect(m.state.every((s) => s.update !== null)).toBe(true);
    expect(train.get("loader.ts")).toMatch(/step\(batch: Batch, dims\?: Dims\): Promise<Outputs>/);
  });

  it("is deterministic: the same model gives byte-identical files", () => {
    const again = buildBundle(mlpInput("forward", 16), { name: "mnist-mlp" });
    expect([...again.keys()]).toEqual([...mlp.keys()]);
    for (const [k, v] of mlp) expect(again.get(k), k).toEqual(v);
  });

  it("honours the pass pipeline: without fusion there are more kernels", () => {
    const unfused = buildBundle(mlpInput("forward", 16), { name: "mnist-mlp", fuse: false });
    expect(manifestOf(unfused).kernels.length).toBeGreaterThan(manifestOf(mlp).kernels.length);
    expect(manifestOf(unfused).compiler.fuse).toBe(false);
  });

  it("a bundle built with subgroups says so: features, and `enable subgroups;` in those kernels", () => {
    const sg = buildBundle(mlpInput("train", 16), { name: "mnist-mlp", features: ["subgroups"] });
    const m = manifestOf(sg);
    expect(m.features).toEqual(["subgroups"]);
    const enabled = m.kernels.filter((k) => (sg.get(k.file) as string).includes("\nenable subgroups;\n"));
    // The bias gradients (column sums over the symbolic batch) are subgroup reductions.
    expect(enabled.length).toBeGreaterThan(0);
    expect(manifestOf(train).features).toBeUndefined();
    expect(sg.get("loader.ts")).toContain('export const REQUIRED_FEATURES: readonly GPUFeatureName[] = ["subgroups"];');
    expect(sg.get("loader.ts")).toContain(
      "// Needs the WebGPU features subgroups: adapter.requestDevice({ requiredFeatures: REQUIRED_FEATURES }).",
    );
    expect(train.get("loader.ts")).toContain("export const REQUIRED_FEATURES: readonly GPUFeatureName[] = [];");
    const good = JSON.parse(sg.get("manifest.json") as string);
    expect(() => validateManifest(good, "manifest.json", undefined, new Set(["subgroups"]))).not.toThrow();
    expect(() => validateManifest(good, "manifest.json", undefined, new Set())).toThrow(
      /its kernels need the WebGPU feature "subgroups", which this device lacks: create the device with adapter\.requestDevice\(\{ requiredFeatures: \["subgroups"\] \}\)/,
    );
    expect(() => validateManifest({ ...good, features: ["Sub groups"] })).toThrow(
      /features\[0\] "Sub groups" is not a WebGPU feature name/,
    );
  });

  it("validateManifest refuses a wrong format, a dangling value and an unbounded dim", () => {
    const good = JSON.parse(mlp.get("manifest.json") as string);
    expect(() => validateManifest({ ...good, format: "kiln-bundle/0" })).toThrow(/format "kiln-bundle\/0" is not "kiln-bundle\/1"/);
    expect(() => validateManifest({ ...good, outputs: [{ ...good.outputs[0], value: 9999 }] })).toThrow(
      /outputs\[0\]\.value: no value 9999/,
    );
    expect(() => validateManifest({ ...good, inputs: [{ ...good.inputs[0], shape: ["N", 784] }] })).toThrow(
      /dim "N" has no declared bound/,
    );
    expect(() => validateManifest([])).toThrow(/not a JSON object/);
  });

  it("the loader ships Kiln's own files: error classes, safetensors codec, manifest validator, executor core", () => {
    const loader = mlp.get("loader.ts") as string;
    for (const f of SHIPPED_SOURCES) {
      // Each file's text from its first declaration after the imports, verbatim.
      const text = readFileSync(join(ROOT, f), "utf8");
      const imports = text.lastIndexOf('.ts";\n');
      const body = (imports < 0 ? text : text.slice(imports + 6)).trim();
      expect(loader, f).toContain(body.slice(0, 2000));
      expect(loader, f).toContain(body.slice(-2000));
    }
    expect(loader).toMatch(/const INTEGRITY = "[0-9a-f]{64}"/);
  });

  it("the generated loader type-checks strictly, and its types reject wrong inputs", () => {
    const use = (mode: "run" | "step", good: string, bad: string) => `import { fromUrl, load } from "./loader.ts";
export async function use(device: GPUDevice): Promise<Float32Array> {
  const model = await load(device, fromUrl("https://example.com/bundle/"));
  const out = await model.${mode}(${good});
  // @ts-expect-error: the inputs are typed
  await model.${mode}(${bad});
  return out.out;
}
`;
    expect(
      typecheck({
        "loader.ts": mlp.get("loader.ts") as string,
        "use.ts": use("run", "{ x: new Float32Array(784) }, { B: 1 }", "{ x: new Int32Array(784) }"),
      }),
    ).toEqual([]);
    expect(
      typecheck({
        "loader.ts": train.get("loader.ts") as string,
        "use.ts": use("step", "{ x: new Float32Array(784), y: new Float32Array(10) }", "{ x: new Float32Array(784) }"),
      }),
    ).toEqual([]);
    const lenet = buildBundle(lenetInput(4), { name: "lenet5" });
    expect(typecheck({ "loader.ts": lenet.get("loader.ts") as string })).toEqual([]);
    // loader.js: types erased, no static import of anything.
    expect(lenet.get("loader.js") as string).not.toMatch(/^\s*import\s/m);
    expect(lenet.get("loader.js") as string).toContain("export async function load(device, files)");
  });
});
