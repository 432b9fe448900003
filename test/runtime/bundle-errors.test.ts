/** A generated loader refuses bad bundles and bad calls with a clear error: a corrupt manifest,
 *  another format version, truncated or altered weights, a manifest of another model, and
 *  inputs missing, of the wrong dtype or length, or past the batch bound. The loader.js of a
 *  built bundle is imported from a temporary folder and run on this process's device. */
import { createHash } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { buildBundle } from "../../cli/build.ts";
import { acquireGpu } from "../../runtime/device.ts";
import { decodeSafetensors, encodeSafetensors, type SafeTensor } from "../../formats/safetensors.ts";
import { mlpInput } from "../helpers/bundle.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();

type Files = Map<string, string | Uint8Array>;
interface Loaded {
  run(inputs: Record<string, unknown>, dims?: Record<string, number>): Promise<Record<string, Float32Array>>;
  weights(): Promise<Record<string, Float32Array>>;
  dispose(): void;
}
interface Loader {
  load(device: GPUDevice, files: { text(n: string): Promise<string>; bytes(n: string): Promise<Uint8Array> }): Promise<Loaded>;
  fromDirectory(dir: string): { text(n: string): Promise<string>; bytes(n: string): Promise<Uint8Array> };
  fromUrl(base: string): { text(n: string): Promise<string>; bytes(n: string): Promise<Uint8Array> };
}

const files: Files = buildBundle(mlpInput("forward", 4), { name: "mnist-mlp" });
let loader: Loader;
let device: GPUDevice;

/** The bundle's files in memory, with some replaced. */
const serve = (over: Record<string, string | Uint8Array> = {}) => {
  const all = new Map([...files, ...Object.entries(over)]);
  const get = (n: string) => {
    const f = all.get(n);
    if (f === undefined) throw new Error(`no file ${n}`);
    return f;
  };
  return {
    text: async (n: string) => {
      const f = get(n);
      return typeof f === "string" ? f : new TextDecoder().decode(f);
    },
    bytes: async (n: string) => {
      const f = get(n);
      return typeof f === "string" ? new TextEncoder().encode(f) : f;
    },
  };
};
const manifest = () => JSON.parse(files.get("manifest.json") as string);
const weights = () => files.get("weights.safetensors") as Uint8Array;

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), "kiln-loader-"));
  writeFileSync(join(dir, "loader.js"), files.get("loader.js")!);
  loader = (await import(pathToFileURL(join(dir, "loader.js")).href)) as Loader;
  device = (await acquireGpu()).device;
});

describe("the generated loader refuses", () => {
  it("a manifest that is not JSON", async () => {
    await expect(loader.load(device, serve({ "manifest.json": '{"format": "kiln-bundle/1",' }))).rejects.toThrow(
      /kiln bundle: manifest\.json is not valid JSON/,
    );
  });

  it("another format version", async () => {
    await expect(
      loader.load(device, serve({ "manifest.json": JSON.stringify({ ...manifest(), format: "kiln-bundle/2" }) })),
    ).rejects.toThrow(/format "kiln-bundle\/2" is not "kiln-bundle\/1"/);
  });

  it("a structurally broken manifest, naming the field", async () => {
    const m = manifest();
    m.kernels[0].bindings[0].value = 12345;
    await expect(loader.load(device, serve({ "manifest.json": JSON.stringify(m) }))).rejects.toThrow(
      /kernels\[0\]\.bindings\[0\]\.value: no value 12345/,
    );
  });

  it("truncated weights", async () => {
    await expect(loader.load(device, serve({ "weights.safetensors": weights().subarray(0, weights().length - 100) }))).rejects.toThrow(
      /weights\.safetensors is \d+ bytes, the manifest says \d+: truncated/,
    );
  });

  it("altered weights (same size, another SHA-256)", async () => {
    const w = weights().slice();
    w[w.length - 1] ^= 0x40;
    await expect(loader.load(device, serve({ "weights.safetensors": w }))).rejects.toThrow(
      /has SHA-256 [0-9a-f]{64}, the manifest says [0-9a-f]{64}: the weights were altered/,
    );
  });

  it("weights exported empty, or of other shapes, even with a matching checksum", async () => {
    const withWeights = (tensors: Record<string, SafeTensor>) => {
      const bytes = encodeSafetensors(tensors);
      const m = {
        ...manifest(),
        weights: { file: "weights.safetensors", bytes: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex") },
      };
      return serve({ "weights.safetensors": bytes, "manifest.json": JSON.stringify(m) });
    };
    await expect(loader.load(device, withWeights({}))).rejects.toThrow(/weights\.safetensors lacks "w1" f32\[784,500\]/);
    const tensors = decodeSafetensors(weights()).tensors;
    const b1 = tensors.b1;
    await expect(loader.load(device, withWeights({ ...tensors, b1: { ...b1, shape: [250, 2] } }))).rejects.toThrow(
      /"b1" is f32\[250,2\], the manifest says f32\[500\]/,
    );
  });

  it("a device without a WebGPU feature the kernels need, before compiling anything", async () => {
    const m = { ...manifest(), features: ["subgroups"] };
    const bare = { limits: device.limits, features: new Set<string>() } as unknown as GPUDevice;
    await expect(loader.load(bare, serve({ "manifest.json": JSON.stringify(m) }))).rejects.toThrow(
      /kiln bundle: manifest\.json: its kernels need the WebGPU feature "subgroups", which this device lacks/,
    );
  });

  it("a manifest of another model", async () => {
    const m = manifest();
    m.outputs[0].name = "logits";
    await expect(loader.load(device, serve({ "manifest.json": JSON.stringify(m) }))).rejects.toThrow(
      /other inputs or outputs than this loader was generated for/,
    );
  });

  it("inputs that are missing, of the wrong dtype or length, or past the batch bound", async () => {
    const model = await loader.load(device, serve());
    try {
      await expect(model.run({})).rejects.toThrow(/input "x" f32\[B,784\] is missing/);
      await expect(model.run({ x: new Float64Array(784) })).rejects.toThrow(
        /input "x" f32\[B,784\] must be a Float32Array, got Float64Array/,
      );
      await expect(model.run({ x: new Int32Array(784) })).rejects.toThrow(/must be a Float32Array, got Int32Array/);
      await expect(model.run({ x: new Float32Array(785) })).rejects.toThrow(/input "x" f32\[B,784\] has 785 values, not a multiple of 784/);
      await expect(model.run({ x: new Float32Array(784 * 2) }, { B: 3 })).rejects.toThrow(
        /input "x" f32\[B,784\] with \{"B":3\} needs 2352 values, got 1568/,
      );
      await expect(model.run({ x: new Float32Array(784 * 5) })).rejects.toThrow(/dim B = 5 exceeds the bundle's bound 4/);
      await expect(model.run({ x: new Float32Array(784), z: new Float32Array(1) })).rejects.toThrow(/unknown input "z"/);
      // And still runs after refusing: nothing was half done.
      const out = await model.run({ x: new Float32Array(784 * 2).fill(0.5) });
      expect(out.out).toHaveLength(20);
      expect(out.out.every(Number.isFinite)).toBe(true);
    } finally {
      model.dispose();
    }
    await expect(model.run({ x: new Float32Array(784) })).rejects.toThrow(/disposed/);
  });

  it("(and loads over HTTP with fromUrl, as a browser would; a missing file names its status)", async () => {
    const server = createServer((req, res) => {
      const f = files.get((req.url ?? "/").slice("/bundle/".length));
      res.writeHead(f === undefined ? 404 : 200).end(f);
    });
    await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/bundle/`;
    try {
      const model = await loader.load(device, loader.fromUrl(base));
      expect((await model.run({ x: new Float32Array(784) })).out).toHaveLength(10);
      model.dispose();
      await expect(loader.load(device, loader.fromUrl(`${base}missing/`))).rejects.toThrow(/fetching manifest\.json from .*: HTTP 404/);
    } finally {
      server.close();
    }
  });

  it("a missing bundle folder, naming the file", async () => {
    await expect(loader.load(device, loader.fromDirectory("/nonexistent/bundle"))).rejects.toThrow(
      /cannot read \/nonexistent\/bundle\/manifest\.json/,
    );
  });
});
