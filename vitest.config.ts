import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const root = fileURLToPath(new URL(".", import.meta.url));
// Lavapipe compiles each shader slowly; keep its cache in the repo (ignored) so reruns are fast.
const shaderCache = `${root}.cache/mesa-shader`;
mkdirSync(shaderCache, { recursive: true });
// Unset, the Vulkan loader warns on every Dawn start.
const runtimeDir = process.env.XDG_RUNTIME_DIR || `/tmp/xdg-${process.getuid?.() ?? "user"}`;
mkdirSync(runtimeDir, { recursive: true, mode: 0o700 });

export default defineConfig({
  // Examples import Kiln by its package name (tsconfig.json "paths" says the same for tsc and tsx).
  resolve: {
    alias: [
      { find: /^kiln-nn$/, replacement: `${root}lib/index.ts` },
      { find: /^kiln-nn\/browser$/, replacement: `${root}lib/browser.ts` },
    ],
  },
  test: {
    include: ["test/**/*.test.ts"],
    // Dawn is a native addon: each test file gets its own process, which releases it on exit.
    pool: "forks",
    maxWorkers: 2,
    // A guard against hangs only, never a speed check: the slowest tests take about a minute on a
    // quiet 2-core machine and 3× that on a busy one with a cold shader cache. No test sets its own.
    testTimeout: 900_000,
    hookTimeout: 900_000,
    // No JIT helper device (runtime/jit-warm.ts) beside the two workers: with the cache warm it
    // only adds work; test/runtime/jit-warm.test.ts turns it back on for itself.
    // KILN_TUNING off: the suite compiles with the portable GEMM defaults whatever a `kiln tune`
    // left in the user's cache (runtime/tuning-cache.ts); the tuning tests pass their own folder.
    env: { MESA_SHADER_CACHE_DIR: shaderCache, XDG_RUNTIME_DIR: runtimeDir, KILN_JIT_HELPER: "0", KILN_TUNING: "off" },
  },
});
