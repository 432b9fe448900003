/** The layering the README promises: imports point one way (src ← formats ← compiler ← runtime ←
 *  training ← cli), only runtime/device.ts imports `webgpu`, and no module cycle closes through
 *  value imports (type-only imports are erased and may point anywhere within the rule). */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { expect, test } from "vitest";

const ROOT = resolve(import.meta.dirname, "..");
const LAYERS = ["src", "formats", "compiler", "runtime", "training", "cli"];

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
    else if (m[3] === "webgpu") out.push(["webgpu", false]);
  }
  return out;
}

test("imports point one way, and only runtime/device.ts imports webgpu", () => {
  const wrong: string[] = [];
  for (const f of files) {
    for (const [t] of imports(f)) {
      if (t === "webgpu") {
        if (f !== "runtime/device.ts") wrong.push(`${f} imports webgpu`);
      } else if (layer(t) > layer(f)) wrong.push(`${f} → ${t}`);
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
