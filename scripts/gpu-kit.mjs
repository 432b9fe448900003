#!/usr/bin/env node
/** Packs what a lent GPU machine needs to run Kiln's GPU tests and `npm run bench` there, into
 *  .gpu-kit/ (git-ignored), for scripts/gpu-run.sh to unpack on that machine.
 *
 *  The machine has no Node, no npm registry and takes a working tree of at most 64 MiB, so the
 *  kit is one xz tarball (≈ 50 MiB) of:
 *    bin/node                 this Node binary (glibc-only dependencies)
 *    node_modules/            the packages the selected tests and the bench import, closed over
 *                             their dependencies; webgpu with only its linux-x64 Dawn
 *    bench/<peer>.mjs         the WebGPU peers' runners bundled with esbuild (TF.js and jax-js
 *                             would be 140 MiB as installed; bundled they are a few MiB)
 *    bench/versions.json      the peers' versions, which a bundle can no longer look up
 *    debs/libvulkan1_*.deb    the Vulkan loader, unpacked there only if the machine lacks one
 *    tests.txt                the test files that need nothing outside the kit
 *  The repository's sources travel as the working tree; the kit holds only what is not in git.
 *
 *    node scripts/gpu-kit.mjs            then: device run, carry [".gpu-kit"], command
 *                                        "bash scripts/gpu-run.sh" (see that file) */
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const KIT = join(ROOT, ".gpu-kit");
const STAGE = join(KIT, "stage");
const NM = join(ROOT, "node_modules");

/** Packages the kit carries for the tests and Kiln's bench runner (tsx runs the .ts files). */
const ROOTS = [
  "vitest",
  "fast-check",
  "tsx",
  "webgpu",
  "ts-morph",
  "@viz-js/viz",
  "@bufbuild/protobuf",
  "onnx-buf",
  "commander",
  "cli-progress",
  "pngjs",
];
/** The WebGPU peers, bundled: runner file → the packages whose versions its rows report. */
const PEERS = {
  "tfjs.ts": ["@tensorflow/tfjs", "@tensorflow/tfjs-backend-webgpu"],
  "jax.ts": ["@jax-js/jax"],
};

/** `name` and every package it depends on (optional ones where installed). */
function closure(names) {
  const seen = new Set();
  const visit = (name) => {
    if (seen.has(name) || !existsSync(join(NM, name, "package.json"))) return;
    seen.add(name);
    const pkg = JSON.parse(readFileSync(join(NM, name, "package.json"), "utf8"));
    for (const dep of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies, ...pkg.peerDependencies })) visit(dep);
  };
  names.forEach(visit);
  return [...seen].sort();
}

/** Bare specifiers `file` imports, and the repository files it imports (static and literal
 *  dynamic imports; type-only imports are erased, so they do not count). */
function importsOf(file) {
  const text = readFileSync(file, "utf8");
  const specs = [];
  for (const m of text.matchAll(/^\s*import\s+(?!type\s)(?:[^'";]*?\sfrom\s+)?["']([^"']+)["']/gm)) specs.push(m[1]);
  for (const m of text.matchAll(/^\s*export\s+(?!type\s)[^'";]*?\sfrom\s+["']([^"']+)["']/gm)) specs.push(m[1]);
  for (const m of text.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g)) specs.push(m[1]);
  const local = [];
  const bare = [];
  for (const s of specs) {
    if (s.startsWith(".")) local.push(join(dirname(file), s));
    else if (s === "kiln-nn") local.push(join(ROOT, "lib/index.ts"));
    else if (!s.startsWith("node:") && !builtinModules.includes(s))
      bare.push(s.startsWith("@") ? s.split("/").slice(0, 2).join("/") : s.split("/")[0]);
  }
  return { bare, local: local.filter((f) => existsSync(f) && statSync(f).isFile()) };
}

/** Every bare package a file reaches through the repository's own imports. */
function reach(file, memo = new Map()) {
  if (memo.has(file)) return memo.get(file);
  const out = new Set();
  memo.set(file, out);
  const { bare, local } = importsOf(file);
  for (const b of bare) out.add(b);
  for (const l of local) for (const b of reach(l, memo)) out.add(b);
  return out;
}

const testFiles = (dir) =>
  readdirSync(dir, { recursive: true })
    .map((f) => join(dir, String(f)))
    .filter((f) => f.endsWith(".test.ts"));

rmSync(KIT, { recursive: true, force: true });
mkdirSync(join(STAGE, "bin"), { recursive: true });
cpSync(process.execPath, join(STAGE, "bin/node"));

const packages = closure(ROOTS);
for (const name of packages) {
  const from = join(NM, name);
  cpSync(from, join(STAGE, "node_modules", name), {
    recursive: true,
    dereference: true,
    // Dawn for other platforms is most of webgpu's 132 MiB.
    filter: (src) => !(name === "webgpu" && /dist[/\\](?!linux-x64)[^/\\]+$/.test(relative(from, src))),
  });
}

const carried = new Set(packages);
// The pack-and-install test needs npm, which that machine lacks.
const tests = testFiles(join(ROOT, "test"))
  .filter((f) => !relative(ROOT, f).startsWith("test/package/") && [...reach(f)].every((b) => carried.has(b)))
  .map((f) => relative(ROOT, f))
  .sort();
writeFileSync(join(STAGE, "tests.txt"), `${tests.join("\n")}\n`);

mkdirSync(join(STAGE, "bench"), { recursive: true });
const versions = {};
for (const [runner, pkgs] of Object.entries(PEERS)) {
  await build({
    entryPoints: [join(ROOT, "test/bench/runners", runner)],
    outfile: join(STAGE, "bench", runner.replace(/\.ts$/, ".mjs")),
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    external: ["webgpu"],
    // CommonJS packages inside an ESM bundle call require.
    banner: { js: 'import { createRequire as __kilnRequire } from "node:module"; const require = __kilnRequire(import.meta.url);' },
    logLevel: "warning",
  });
  for (const p of pkgs) versions[p] = JSON.parse(readFileSync(join(NM, p, "package.json"), "utf8")).version;
}
writeFileSync(join(STAGE, "bench/versions.json"), `${JSON.stringify(versions, null, 2)}\n`);

mkdirSync(join(STAGE, "debs"), { recursive: true });
try {
  execFileSync("apt-get", ["download", "libvulkan1"], { cwd: join(STAGE, "debs"), stdio: "ignore" });
} catch {
  console.warn("gpu-kit: apt-get download libvulkan1 failed; the kit relies on the machine's Vulkan loader");
}

execFileSync("tar", ["-cJf", join(KIT, "kit.tar.xz"), "-C", STAGE, "."], { env: { ...process.env, XZ_OPT: "-6 -T0" } });
rmSync(STAGE, { recursive: true, force: true });
const mib = (statSync(join(KIT, "kit.tar.xz")).size / 2 ** 20).toFixed(1);
console.log(
  `gpu-kit: .gpu-kit/kit.tar.xz ${mib} MiB: node ${process.version}, ${packages.length} packages, ${tests.length} test files, peers ${Object.keys(versions).join(" ")}`,
);
if (Number(mib) > 56) console.warn("gpu-kit: over 56 MiB: with the working tree it may not fit the device's 64 MiB");
