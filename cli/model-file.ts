/** Loading a model for the CLI: a folder written by `save` (its model.kir, and its
 *  weights.safetensors for `kiln run`), a `.kir` file in text IR, or a TypeScript/JavaScript module
 *  (imported as is: the CLI runs under tsx) whose default export is a Graph, a
 *  `{ graph, state?, dims? }`, or a function (possibly async) returning one of those; or an
 *  ONNX file, imported (cli/import.ts). */
import { existsSync, readFileSync, statSync } from "node:fs";
import { extname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { KilnError } from "../src/ir/errors.ts";
import { parseGraph } from "../src/ir/parse.ts";
import type { DimEnv } from "../src/ir/shape.ts";
import type { Graph } from "../src/ir/types.ts";
import { importOnnxFile } from "./import.ts";

export interface Model {
  readonly graph: Graph;
  /** Resident state, as CompileOptions.state. */
  readonly state?: Readonly<Record<string, string | null>>;
  /** Sizes for the symbolic dims (the command line's --dim wins). */
  readonly dims?: DimEnv;
  /** A saved model folder's weights.safetensors. */
  readonly weights?: string;
}

const MODULES = new Set([".ts", ".mts", ".js", ".mjs"]);

const isGraph = (v: unknown): v is Graph =>
  typeof v === "object" && v !== null && Array.isArray((v as Graph).nodes) && Array.isArray((v as Graph).outputs);

const TYPESCRIPT = new Set([".ts", ".mts"]);

/** Register tsx's loader (an optional dependency) for TypeScript model files, or say what to install. */
async function typescriptLoader(file: string): Promise<void> {
  let api: { register(): unknown };
  try {
    api = (await import("tsx/esm/api" as string)) as { register(): unknown };
  } catch {
    throw new KilnError(`${file}: loading a TypeScript model needs tsx (npm install --save-dev tsx), or compile the module to .js / .mjs`);
  }
  api.register();
}

/** A module's default export (a function's result, if it is one). */
export async function loadModule(file: string): Promise<unknown> {
  if (!existsSync(file)) throw new KilnError(`no such file ${file}`);
  const ext = extname(file);
  if (!MODULES.has(ext))
    throw new KilnError(
      `${file}: a model is a .kir text-IR file, an .onnx file or a module (${[...MODULES].join(" ")}), not "${ext || "no extension"}"`,
    );
  let mod: { default?: unknown };
  try {
    const url = pathToFileURL(resolve(file)).href;
    try {
      mod = (await import(url)) as { default?: unknown };
    } catch (e) {
      // Plain node has no TypeScript loader (the installed `kiln` runs compiled JavaScript).
      if (!TYPESCRIPT.has(ext) || (e as { code?: string }).code !== "ERR_UNKNOWN_FILE_EXTENSION") throw e;
      await typescriptLoader(file);
      mod = (await import(url)) as { default?: unknown };
    }
  } catch (e) {
    // tsx loads a .ts file outside a "type": "module" package as CommonJS, which cannot import
    // Kiln's ES modules: the error names a require() cycle.
    if (ext === ".ts" && /require\(\)|ERR_REQUIRE/.test(String((e as Error).message))) {
      throw new KilnError(
        `${file}: loaded as CommonJS (no "type": "module" package.json above it); name it .mts, or put it in an ES-module package: ${(e as Error).message}`,
      );
    }
    throw e;
  }
  const v = mod.default;
  return typeof v === "function" ? await (v as () => unknown)() : v;
}

export async function loadModel(file: string): Promise<Model> {
  if (!existsSync(file)) throw new KilnError(`no such file ${file}`);
  if (statSync(file).isDirectory()) {
    const kir = join(file, "model.kir");
    if (!existsSync(kir))
      throw new KilnError(`${file}: a folder is a saved model (save writes model.kir and weights.safetensors), but it has no model.kir`);
    const weights = join(file, "weights.safetensors");
    return { graph: parseGraph(readFileSync(kir, "utf8")), ...(existsSync(weights) ? { weights } : {}) };
  }
  if (extname(file) === ".kir") return { graph: parseGraph(readFileSync(file, "utf8")) };
  if (extname(file) === ".onnx") {
    const { graph, state } = importOnnxFile(file);
    return { graph, state };
  }
  const v = await loadModule(file);
  if (isGraph(v)) return { graph: v };
  if (typeof v === "object" && v !== null && isGraph((v as Model).graph)) {
    const { graph, state, dims } = v as Model;
    return { graph, state, dims };
  }
  throw new KilnError(
    `${file}: the default export must be a Graph, { graph, state?, dims? } or a function returning one (got ${v === undefined ? "no default export" : typeof v})`,
  );
}
