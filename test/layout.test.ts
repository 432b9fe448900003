/** The layering the README promises: imports point one way (src ← formats ← compiler ← runtime ←
 *  training ← cli ← lib, the package's entries), only runtime/device.ts imports `webgpu`, no
 *  module cycle closes through value imports (type-only imports are erased and may point anywhere
 *  within the rule), and the browser entry reaches no Node module. */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { expect, test } from "vitest";

const ROOT = resolve(import.meta.dirname, "..");
const LAYERS = ["src", "formats", "compiler", "runtime", "training", "cli", "lib"];

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith(".ts"))
    .map((e) => relative(ROOT, join(e.parentPath, e.name)));
}

const files = LAYERS.flatMap(sources);
const layer = (f: string) => LAYERS.indexOf(f.split("/")[0]);
/** Relative imports of a file: [target, type-only]. */
function imports(f: string): [string, boolean][] {
  const text = readFileSync(join(ROOT, f), "utf8");
  const out: [string, boolean][] = [];
  for (const m of text.matchAll(/^(import|export)(\s+type)?\s[^;]*?from\s+"([^"]+)";/gms)) {
    if (m[3].startsWith(".")) out.push([relative(ROOT, resolve(ROOT, dirname(f), m[3])), Boolean(m[2])]);
    else if (m[3] === "webgpu" || m[3].startsWith("node:")) out.push([m[3], Boolean(m[2])]);
  }
  return out;
}

test("imports point one way, and only runtime/device.ts imports webgpu", () => {
  const wrong: string[] = [];
  for (const f of files) {
    for (const [t] of imports(f)) {
      if (t === "webgpu") {
        if (f !== "runtime/device.ts") wrong.push(`${f} imports webgpu`);
      } else if (!t.startsWith("node:") && layer(t) > layer(f)) wrong.push(`${f} → ${t}`);
    }
  }
  expect(wrong).toEqual([]);
});

test("no cycle of value imports", () => {
  const edges = new Map(
    files.map((f) => [
      f,
      imports(f)
        .filter(([t, type]) => !type && t !== "webgpu")
        .map(([t]) => t),
    ]),
  );
  const state = new Map<string, 1 | 2>();
  const stack: string[] = [];
  const cycles: string[] = [];
  const visit = (u: string) => {
    state.set(u, 1);
    stack.push(u);
    for (const v of edges.get(u) ?? []) {
      if (state.get(v) === 1) cycles.push([...stack.slice(stack.indexOf(v)), v].join(" → "));
      else if (!state.has(v)) visit(v);
    }
    stack.pop();
    state.set(u, 2);
  };
  for (const f of files) if (!state.has(f)) visit(f);
  expect(cycles).toEqual([]);
});

test("the browser entry reaches no Node module, no webgpu package and no process global", () => {
  const seen = new Set<string>();
  const todo = ["lib/browser.ts"];
  const bad: string[] = [];
  while (todo.length) {
    const f = todo.pop()!;
    if (seen.has(f)) continue;
    seen.add(f);
    if (/(^|[^.\w])process\./.test(readFileSync(join(ROOT, f), "utf8").replace(/\/\/.*|\/\*[\s\S]*?\*\//g, "")))
      bad.push(`${f} reads process`);
    for (const [t, type] of imports(f)) {
      if (type) continue;
      if (t === "webgpu" || t.startsWith("node:")) bad.push(`${f} imports ${t}`);
      else todo.push(t);
    }
  }
  expect(bad).toEqual([]);
  expect(seen.size).toBeGreaterThan(30);
});

test("src/version.ts states package.json's version", async () => {
  const { VERSION } = await import("../src/version.ts");
  expect(VERSION).toBe(JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version);
});
