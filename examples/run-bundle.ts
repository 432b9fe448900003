/** Run a built bundle standalone: copy it into an empty temporary folder whose only dependency
 *  is `webgpu` (its loader and this platform's Dawn binary), and run it there with a plain
 *  `node` — no Kiln code, no NODE_PATH. `npm run demo` builds the MNIST MLP's bundle and runs it
 *  once this way on held-out digits:
 *      tsx examples/run-bundle.ts out/mnist-mlp-bundle --saved out/mnist-mlp
 *  The bundle suites (test/runtime/bundle-*.test.ts) use the same two functions. */
import { execFile } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { writeBundle, type BundleFiles } from "kiln-nn";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** An empty temporary folder holding the bundle in `bundle/`, `node_modules/webgpu` (only its
 *  loader and this platform's Dawn binary) and nothing else. */
export function standalone(files: BundleFiles): string {
  const dir = mkdtempSync(join(tmpdir(), "kiln-bundle-"));
  writeBundle(join(dir, "bundle"), files);
  const src = join(ROOT, "node_modules/webgpu");
  const dst = join(dir, "node_modules/webgpu");
  mkdirSync(join(dst, "dist"), { recursive: true });
  for (const f of ["package.json", "index.js"]) cpSync(join(src, f), join(dst, f));
  const platform = `${process.platform}-${process.platform === "darwin" ? "universal" : process.arch}`;
  cpSync(join(src, "dist", platform), join(dst, "dist", platform), { recursive: true });
  writeFileSync(
    join(dir, "package.json"),
    JSON.stringify({ name: "bundle-user", private: true, type: "module", dependencies: { webgpu: "*" } }),
  );
  writeFileSync(join(dir, "run.mjs"), RUN);
  return dir;
}

/** run.mjs: device from `webgpu` with default limits and the bundle's REQUIRED_FEATURES, load, `steps` calls, outputs (and, for a
 *  training bundle, the weights after) as JSON on stdout. */
const RUN = `import { readFileSync } from "node:fs";
import { create, globals } from "webgpu";
import { fromDirectory, load, REQUIRED_FEATURES } from "./bundle/loader.js";
Object.assign(globalThis, globals);
const { inputs, steps } = JSON.parse(readFileSync("inputs.json", "utf8"));
const gpu = create([]); // kept: Dawn crashes if its handle is collected while a device lives
const adapter = await gpu.requestAdapter();
// A bundle built in mixed precision needs shader-f16: REQUIRED_FEATURES lists what its kernels need.
const device = await adapter.requestDevice({ requiredFeatures: REQUIRED_FEATURES });
const model = await load(device, fromDirectory("./bundle"));
const typed = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, Float32Array.from(v)]));
const results = [];
for (let i = 0; i < steps; i++) {
  const out = model.manifest.mode === "train" ? await model.step(typed) : await model.run(typed);
  results.push(Object.fromEntries(Object.entries(out).map(([k, v]) => [k, Array.from(v)])));
}
const weights = model.manifest.mode === "train" ? Object.fromEntries(Object.entries(await model.weights()).map(([k, v]) => [k, Array.from(v)])) : {};
model.dispose();
device.destroy();
process.stdout.write(JSON.stringify({ results, weights }));
`;

export interface StandaloneResult {
  readonly results: Record<string, number[]>[];
  readonly weights: Record<string, number[]>;
}

/** Run the bundle in `dir` with plain \`node\` (no NODE_PATH, cwd the folder). */
export async function runStandalone(dir: string, inputs: Record<string, Float32Array>, steps = 1): Promise<StandaloneResult> {
  writeFileSync(
    join(dir, "inputs.json"),
    JSON.stringify({ inputs: Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, Array.from(v)])), steps }),
  );
  const env = { ...process.env };
  delete env.NODE_PATH;
  delete env.NODE_OPTIONS; // vitest's loader hooks must not leak in
  const { stdout } = await promisify(execFile)(process.execPath, ["run.mjs"], { cwd: dir, env, maxBuffer: 256 * 2 ** 20 });
  return JSON.parse(stdout) as StandaloneResult;
}

/** A bundle folder's files. */
export function readBundle(dir: string): BundleFiles {
  const files: BundleFiles = new Map();
  const walk = (sub: string) => {
    for (const e of readdirSync(join(dir, sub), { withFileTypes: true })) {
      const rel = sub ? `${sub}/${e.name}` : e.name;
      if (e.isDirectory()) walk(rel);
      else files.set(rel, readFileSync(join(dir, rel)));
    }
  };
  walk("");
  return files;
}

async function main(): Promise<void> {
  const [bundle, flag, saved] = process.argv.slice(2);
  if (!bundle || (flag !== undefined && flag !== "--saved"))
    throw new Error("usage: tsx examples/run-bundle.ts <bundle-dir> [--saved <saved-model-dir>]");
  const { loadMnist } = await import("./data/mnist.ts");
  const { test } = loadMnist();
  const manifest = JSON.parse(readFileSync(join(bundle, "manifest.json"), "utf8")) as { dims: { B: number }; kernels: unknown[] };
  const n = Math.min(manifest.dims.B, test.n);
  const x = test.x.slice(0, n * 784);
  const dir = standalone(readBundle(bundle));
  const t0 = performance.now();
  const { results } = await runStandalone(dir, { x }).finally(() => rmSync(dir, { recursive: true, force: true }));
  const y = results[0].y ?? Object.values(results[0])[0];
  const argmax = (i: number) => y.slice(i * 10, i * 10 + 10).reduce((b, v, c, a) => (v > a[b] ? c : b), 0);
  const correct = Array.from({ length: n }, (_, i) => Number(argmax(i) === test.labels[i])).reduce((a, b) => a + b, 0);
  console.log(
    `${bundle} run standalone (${manifest.kernels.length} kernels): ${correct}/${n} held-out digits right, ${(performance.now() - t0).toFixed(0)} ms in a fresh node`,
  );
  if (saved) {
    const { loadPredictor } = await import("../training/compile-model.ts");
    const { releaseGpu } = await import("../runtime/device.ts");
    const p = await loadPredictor(saved, { batchSize: n });
    const want = (await p.predict({ shape: [n, 784], data: x })).data;
    p.dispose();
    await releaseGpu();
    const diff = y.reduce((a, v, i) => Math.max(a, Math.abs(v - want[i])), 0);
    console.log(`max |bundle − Kiln's runtime| = ${diff.toExponential(2)}`);
    if (!(diff < 1e-5)) throw new Error("the bundle disagrees with Kiln's runtime");
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
