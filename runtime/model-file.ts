/** Loading a model for the CLI: a `.kir` file in text IR, or a TypeScript/JavaScript module
 *  (imported as is: the CLI runs under tsx) whose default export is a Graph, a
 *  `{ graph, state?, dims? }`, or a function (possibly async) returning one of those. */
import { readFileSync } from "node:fs";
import { extname, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { KilnError } from "../src/ir/errors.ts";
import { parseGraph } from "../src/ir/parse.ts";
import type { DimEnv } from "../src/ir/shape.ts";
import type { Graph } from "../src/ir/types.ts";

export interface Model {
  readonly graph: Graph;
  /** Resident state, as CompileOptions.state. */
  readonly state?: Readonly<Record<string, string | null>>;
  /** Sizes for the symbolic dims (the command line's --dim wins). */
  readonly dims?: DimEnv;
}

const MODULES = new Set([".ts", ".mts", ".js", ".mjs"]);

const isGraph = (v: unknown): v is Graph =>
  typeof v === "object" && v !== null && Array.isArray((v as Graph).nodes) && Array.isArray((v as Graph).outputs);

export async function loadModel(file: string): Promise<Model> {
  const ext = extname(file);
  if (ext === ".kir") return { graph: parseGraph(readFileSync(file, "utf8")) };
  if (!MODULES.has(ext)) throw new KilnError(`${file}: a model is a .kir text-IR file or a module (${[...MODULES].join(" ")}), not "${ext || "no extension"}"`);
  const mod = (await import(pathToFileURL(resolve(file)).href)) as { default?: unknown };
  let v = mod.default;
  if (typeof v === "function") v = await (v as () => unknown)();
  if (isGraph(v)) return { graph: v };
  if (typeof v === "object" && v !== null && isGraph((v as Model).graph)) {
    const { graph, state, dims } = v as Model;
    return { graph, state, dims };
  }
  throw new KilnError(`${file}: the default export must be a Graph, { graph, state?, dims? } or a function returning one (got ${v === undefined ? "no default export" : typeof v})`);
}
