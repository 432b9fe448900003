/** A bundle in a browser: the MNIST MLP and LeNet-5 inference bundles are served from
 *  127.0.0.1 to headless Chromium, whose page imports each bundle's own loader.js, loads it with
 *  fromUrl on a device from navigator.gpu and posts the outputs back. They must match Kiln's
 *  Executable in Node and the float64 reference, with bundle-standalone.test.ts's tolerances.
 *  Chromium's WebGPU here is SwiftShader while Node's Dawn runs on lavapipe; both compile the
 *  same WGSL to f32 code and (measured) agree bit for bit on these models, so the tight
 *  Kiln tolerance holds across them. A bundle built from zeroed weights runs in the same page
 *  and must fail the comparison: the page's outputs depend on the weights it fetched.
 *  Hostile copies (path traversal, an absolute path, an offset out of range, a 2³²-thread
 *  dispatch, no writable binding, a replaced kernel) must be refused there as in Node.
 *  All the bundles go through one page (one Chromium start). Without Chromium or an adapter
 *  the suite says why and skips; under CI (runtime/setup.sh installs Chromium) it fails. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { GPU_TARGET } from "../../compiler/target.ts";
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import { inputNodes } from "../../src/ir/bind.ts";
import { buildBundle, writeBundle, type BuildInput } from "../../cli/build.ts";
import { Executable } from "../../runtime/execute.ts";
import { chromiumAvailable, runInChromium } from "../helpers/browser.ts";
import { batchOf, lenetInput, mlpInput, worst } from "../helpers/bundle.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();
const status = await chromiumAvailable();
const ci = process.env.CI === "true";
if (!status.ok) console.warn(`bundle browser suite: no WebGPU in headless Chromium: ${status.reason}`);

const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
const KILN_TOL = [1e-6, 1e-5] as const;
const REF_TOL = [1e-5, 1e-4] as const;

// Each case lives in its own folder: { dir, inputs } from cases.json. The device asks for what
// the manifest needs beyond WebGPU's defaults (bundles are built for 8 storage buffers, so
// normally nothing), capped at the adapter's limits; a shortfall is then the loader's error.
const PAGE = `<!doctype html><meta charset="utf-8"><title>kiln bundle</title><script type="module">
const post = (r) => fetch("/result", { method: "POST", body: JSON.stringify(r) });
try {
  const cases = await (await fetch("cases.json")).json();
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error("navigator.gpu.requestAdapter() gave no adapter");
  const manifests = await Promise.all(cases.filter((c) => !c.hostile).map(async (c) => (await fetch(c.dir + "/manifest.json")).json()));
  const need = {
    maxStorageBuffersPerShaderStage: Math.max(8, ...manifests.flatMap((m) => m.kernels.map((k) => k.bindings.length))),
    maxBufferSize: Math.max(268435456, ...manifests.flatMap((m) => m.buffers.map((b) => b.bytes))),
    maxStorageBufferBindingSize: Math.max(134217728, ...manifests.flatMap((m) => m.buffers.map((b) => b.bytes))),
  };
  const requiredLimits = Object.fromEntries(Object.entries(need).map(([k, v]) => [k, Math.min(v, adapter.limits[k])]));
  const device = await adapter.requestDevice({ requiredLimits });
  const results = [];
  for (const c of cases) {
    const { load, fromUrl } = await import("./" + c.dir + "/loader.js");
    if (c.hostile) {
      // Must be refused: record the error (or that it loaded and ran).
      try {
        const model = await load(device, fromUrl(new URL(c.dir + "/", location.href).href));
        await model.run(Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, Float32Array.from(v)])));
        model.dispose();
        results.push({ dir: c.dir, refused: null });
      } catch (e) {
        results.push({ dir: c.dir, refused: String((e && e.message) || e) });
      }
      continue;
    }
    let t = performance.now();
    const model = await load(device, fromUrl(new URL(c.dir + "/", location.href).href));
    const loadMs = performance.now() - t;
    const inputs = Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, Float32Array.from(v)]));
    t = performance.now();
    const out = await model.run(inputs);
    const runMs = performance.now() - t;
    t = performance.now();
    await model.run(inputs);
    const rerunMs = performance.now() - t;
    model.dispose();
    results.push({ dir: c.dir, loadMs, runMs, rerunMs, outputs: Object.fromEntries(Object.entries(out).map(([k, v]) => [k, Array.from(v)])) });
  }
  device.destroy();
  const i = adapter.info;
  await post({ adapter: { vendor: i.vendor, architecture: i.architecture, description: i.description, isFallbackAdapter: i.isFallbackAdapter }, limits: requiredLimits, results });
} catch (e) {
  await post({ error: String(e && e.stack || e) });
}
</script>`;

const shapeOf = (input: BuildInput, name: string, n: number) =>
  inputNodes(input.graph)
    .find((x) => x.attrs.name === name)!
    .type.shape.map((d) => (d === "B" ? n : (d as number)));

/** The float64 reference's outputs. */
function reference(input: BuildInput, x: Float32Array, n: number): Record<string, ArrayLike<number>> {
  const all: Record<string, HostTensor> = { x: { shape: shapeOf(input, "x", n), data: x } };
  for (const [k, v] of Object.entries(input.weights)) all[k] = { shape: shapeOf(input, k, n), data: v };
  return Object.fromEntries(Object.entries(interpret(input.graph, all)).map(([k, t]) => [k, t.data]));
}

/** Kiln's Executable on the same compile options as buildBundle, and the float64 reference. */
async function expected(input: BuildInput, x: Float32Array, n: number) {
  const exe = await Executable.load(
    compile(input.graph, { state: input.state, dims: input.dims, target: GPU_TARGET, maxStorageBuffers: 8 }),
  );
  let kiln: Record<string, ArrayLike<number>>;
  try {
    for (const [k, v] of Object.entries(input.weights)) await exe.write(k, { shape: shapeOf(input, k, n), data: v as Float32Array });
    kiln = Object.fromEntries(
      Object.entries(await exe.run({ x: { shape: shapeOf(input, "x", n), data: x } })).map(([k, t]) => [k, t.data]),
    );
  } finally {
    exe.dispose();
  }
  return { kiln, ref: reference(input, x, n) };
}

interface PageResult {
  readonly dir: string;
  /** A hostile case's error (null: it loaded). */
  readonly refused?: string | null;
  readonly loadMs: number;
  readonly runMs: number;
  readonly rerunMs: number;
  readonly outputs: Record<string, number[]>;
}
interface PageReport {
  readonly error?: string;
  readonly adapter: { vendor: string; architecture: string; description: string; isFallbackAdapter: boolean };
  readonly limits: Record<string, number>;
  readonly results: readonly PageResult[];
}

/** Hostile bundles: the manifest edited (and sometimes a file replaced); each must be refused
 *  in the page before the device, with the error Node gives (bundle-fuzz.test.ts). */
// biome-ignore lint/suspicious/noExplicitAny: manifests edited at will
const HOSTILE: Record<string, (m: any, files: Map<string, string | Uint8Array>) => Record<string, string> | undefined> = {
  "hostile-traversal": (m) => void (m.kernels[0].file = "kernels/../../secret.wgsl"),
  "hostile-absolute": (m) => void (m.kernels[0].file = "/secret.wgsl"),
  "hostile-offset": (m) => void (m.values[0].offset = 2 ** 40),
  "hostile-dispatch": (m) => void (m.kernels[0].dispatch = { kind: "linear", total: { k: 2 ** 32, syms: [] }, perGroup: 64 }),
  "hostile-access": (m) => void m.kernels[0].bindings.forEach((b: { access: string }) => (b.access = "read")),
  "hostile-kernel": (m) => ({ [m.kernels[0].file]: "@compute @workgroup_size(1) fn main() { loop {} }" }),
};
const REFUSALS: Record<string, RegExp> = {
  "hostile-traversal": /kernels\[0\]\.file "kernels\/\.\.\/\.\.\/secret\.wgsl" is not a file in the bundle's kernels\/ folder/,
  "hostile-absolute": /kernels\[0\]\.file "\/secret\.wgsl" is not a file/,
  "hostile-offset": /values\[0\] .* runs past buffers/,
  "hostile-dispatch": /workgroups at \{"B":8\}, more than its largest binding has elements/,
  "hostile-access": /writes nothing/,
  "hostile-kernel": /have SHA-256 [0-9a-f]{64}, not [0-9a-f]{64} as built with this loader/,
};

const mlp = mlpInput("forward", 8);
const lenet = lenetInput(4);
const mlpX = batchOf(5, 784, 1).x;
const lenetX = batchOf(3, 28 * 28, 3).x;
const site = mkdtempSync(join(tmpdir(), "kiln-bundle-site-"));
afterAll(() => rmSync(site, { recursive: true, force: true }));
let report: PageReport;

describe.skipIf(!status.ok && !ci)("bundles in headless Chromium", () => {
  beforeAll(async () => {
    if (!status.ok) throw new Error(status.reason);
    const zeros = Object.fromEntries(Object.entries(mlp.weights).map(([k, v]) => [k, new Float32Array(v.length)]));
    writeBundle(join(site, "mlp"), buildBundle(mlp, { name: "mnist-mlp" }));
    writeBundle(join(site, "lenet"), buildBundle(lenet, { name: "lenet5" }));
    writeBundle(join(site, "mlp-zeroed"), buildBundle({ ...mlp, weights: zeros }, { name: "mnist-mlp" }));
    const cases: { dir: string; inputs: Record<string, number[]>; hostile?: boolean }[] = [
      { dir: "mlp", inputs: { x: Array.from(mlpX) } },
      { dir: "lenet", inputs: { x: Array.from(lenetX) } },
      { dir: "mlp-zeroed", inputs: { x: Array.from(mlpX) } },
    ];
    // Hostile copies of the MLP bundle, each with its own (generated) loader.js.
    const built = buildBundle(mlp, { name: "mnist-mlp" });
    writeFileSync(join(site, "secret.wgsl"), "SECRET-CONTENT");
    for (const [dir, edit] of Object.entries(HOSTILE)) {
      const files = new Map(built);
      const m = JSON.parse(files.get("manifest.json") as string);
      const other = edit(m, files);
      files.set("manifest.json", JSON.stringify(m));
      for (const [k, v] of Object.entries(other ?? {})) files.set(k, v);
      writeBundle(join(site, dir), files);
      cases.push({ dir, inputs: { x: Array.from(mlpX) }, hostile: true });
    }
    writeFileSync(join(site, "cases.json"), JSON.stringify(cases));
    writeFileSync(join(site, "index.html"), PAGE);
    const run = await runInChromium({ dir: site, page: "index.html", timeoutMs: 60_000 });
    if (!run.ok) throw new Error(`${run.error}\n${run.log.slice(-4000)}`);
    report = run.result as PageReport;
    if (report.error) throw new Error(`the page failed: ${report.error}\n${run.log.slice(-4000)}`);
    const a = report.adapter;
    console.info(
      `${status.version}: adapter ${a.vendor} ${a.architecture} "${a.description}"${a.isFallbackAdapter ? " (fallback)" : ""}, limits ${JSON.stringify(report.limits)}; page ${run.ms.toFixed(0)} ms`,
    );
    for (const r of report.results.filter((x) => x.refused === undefined))
      console.info(`  ${r.dir}: load ${r.loadMs.toFixed(0)} ms, run ${r.runMs.toFixed(0)} ms, rerun ${r.rerunMs.toFixed(0)} ms`);
  });

  const page = (dir: string) => report.results.find((r) => r.dir === dir)!;

  it("MNIST MLP inference matches Kiln's Executable and the float64 reference", async () => {
    const got = page("mlp").outputs;
    const { kiln, ref } = await expected(mlp, mlpX, 5);
    expect(Object.keys(got).sort()).toEqual(Object.keys(kiln).sort());
    for (const k of Object.keys(kiln)) {
      expect(got[k]).toHaveLength(5 * 10);
      console.info(
        `  mlp ${k}: max |page − Kiln| ${maxAbs(got[k], kiln[k]).toExponential(2)}, max |page − float64| ${maxAbs(got[k], ref[k]).toExponential(2)}`,
      );
      expect(worst(got[k], kiln[k], ...KILN_TOL), k).toBeLessThanOrEqual(1);
      expect(worst(got[k], ref[k], ...REF_TOL), k).toBeLessThanOrEqual(1);
    }
  });

  it("LeNet-5 inference matches Kiln's Executable and the float64 reference", async () => {
    const got = page("lenet").outputs;
    const { kiln, ref } = await expected(lenet, lenetX, 3);
    expect(Object.keys(got).sort()).toEqual(Object.keys(kiln).sort());
    for (const k of Object.keys(kiln)) {
      expect(got[k]).toHaveLength(3 * 10);
      console.info(
        `  lenet ${k}: max |page − Kiln| ${maxAbs(got[k], kiln[k]).toExponential(2)}, max |page − float64| ${maxAbs(got[k], ref[k]).toExponential(2)}`,
      );
      expect(worst(got[k], kiln[k], ...KILN_TOL), k).toBeLessThanOrEqual(1);
      expect(worst(got[k], ref[k], ...REF_TOL), k).toBeLessThanOrEqual(1);
    }
  });

  it("hostile bundles are refused in the page before the device, naming what is wrong", () => {
    for (const [dir, message] of Object.entries(REFUSALS)) {
      const r = page(dir);
      console.info(`  ${dir}: ${r.refused}`);
      expect(r.refused, dir).toMatch(message);
      expect(r.refused, dir).not.toContain("SECRET-CONTENT");
    }
  });

  it("the MLP bundle with zeroed weights fails the comparison in the page", () => {
    const got = page("mlp-zeroed").outputs;
    const ref = reference(mlp, mlpX, 5);
    for (const k of Object.keys(ref)) {
      console.info(`  mlp-zeroed ${k}: max |page − float64| ${maxAbs(got[k], ref[k]).toExponential(2)}`);
      expect(worst(got[k], ref[k], ...REF_TOL), k).toBeGreaterThan(1);
    }
  });
});
