/** The tuning cache: GEMM configurations tuned on an adapter (compiler/tuning.ts), one JSON file
 *  per adapter under the cache folder, read when the device opens (runtime/device.ts) so every
 *  compile for it uses them.
 *
 *      $KILN_CACHE_DIR (else $XDG_CACHE_HOME/kiln, else ~/.cache/kiln)
 *        tuning/llvmpipe-mesa-25-0-7-…-3f9a1c2e.json    one file per adapter
 *      { "format": "kiln-tuning/1", "adapter": "llvmpipe: Mesa 25.0.7 … [mesa software]",
 *        "writers": "gemm-writers/1",
 *        "entries": { "matmul/register-blocked/M1024xN1024xK1024":
 *                       { "config": { "writer": "register-blocked", "rm": 16, … },
 *                         "ms": 161.2, "defaultMs": 187.5, "candidates": 8, "at": "2026-…" } } }
 *  The file's name hashes the adapter's description (its driver version is part of it) and the
 *  writers' version (GEMM_WRITERS_VERSION): a new driver or a changed writer reads no old
 *  timings. Writes go to a temporary file renamed over the old one, so a reader sees the old file
 *  or the new, never half of one; a file that cannot be read or parsed, or holds the wrong
 *  format, is ignored with a warning, never an error: the defaults still work.
 *  KILN_TUNING: "off" ignores the cache (portable defaults), "cache" (the default) reads it,
 *  "auto" also tunes a GEMM class at its first use (runtime/execute.ts `fromGraph`). */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { GEMM_WRITERS_VERSION, validConfig, type GemmConfig, type Tuning } from "../compiler/tuning.ts";
import { KilnError } from "../src/ir/errors.ts";
import { writeFileAtomic } from "../formats/safetensors.ts";

export const TUNING_FORMAT = "kiln-tuning/1";

/** One shape class's result: the fastest candidate and what the search saw. */
export interface TuningEntry {
  readonly config: GemmConfig;
  /** Median milliseconds of a dispatch: the chosen candidate's, and the default's. */
  readonly ms: number;
  readonly defaultMs: number;
  /** Candidates timed. */
  readonly candidates: number;
  /** When (ISO time). */
  readonly at: string;
}

export interface TuningFile {
  readonly format: string;
  readonly adapter: string;
  readonly writers: string;
  readonly entries: Readonly<Record<string, TuningEntry>>;
}

export type TuningMode = "off" | "cache" | "auto";

/** KILN_TUNING, checked: "off", "cache" (default) or "auto". */
export function tuningMode(env: Readonly<Record<string, string | undefined>> = process.env): TuningMode {
  const m = env.KILN_TUNING ?? "cache";
  if (m === "off" || m === "cache" || m === "auto") return m;
  throw new KilnError(`KILN_TUNING must be off, cache or auto, got "${m}"`);
}

/** The cache folder: KILN_CACHE_DIR, else $XDG_CACHE_HOME/kiln, else ~/.cache/kiln. */
export function cacheDir(env: Readonly<Record<string, string | undefined>> = process.env): string {
  return env.KILN_CACHE_DIR || join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "kiln");
}

/** The tuning file of `adapter` in `dir`: a readable slug and a hash of the adapter and the
 *  writers' version. */
export function tuningPath(adapter: string, dir = cacheDir()): string {
  const slug = adapter
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-|-$/g, "")
    .slice(0, 48);
  const hash = createHash("sha256").update(`${adapter}\n${GEMM_WRITERS_VERSION}`).digest("hex").slice(0, 12);
  return join(dir, "tuning", `${slug}-${hash}.json`);
}

/** The cached entries for `adapter`: empty when there is no file, and (with a warning through
 *  `warn`) when the file is unreadable, corrupt or for another adapter or writers' version;
 *  entries with an invalid configuration are dropped the same way. */
export function readTuning(adapter: string, dir = cacheDir(), warn: (m: string) => void = console.warn): Record<string, TuningEntry> {
  const path = tuningPath(adapter, dir);
  if (!existsSync(path)) return {};
  let f: Partial<TuningFile>;
  try {
    f = JSON.parse(readFileSync(path, "utf8")) as Partial<TuningFile>;
  } catch (e) {
    warn(`kiln: ignoring the tuning cache ${path}: ${(e as Error).message.split("\n")[0]} (the default GEMM configurations are used)`);
    return {};
  }
  if (typeof f !== "object" || f === null || f.format !== TUNING_FORMAT || f.adapter !== adapter || f.writers !== GEMM_WRITERS_VERSION) {
    warn(`kiln: ignoring the tuning cache ${path}: not a ${TUNING_FORMAT} file for this adapter and ${GEMM_WRITERS_VERSION}`);
    return {};
  }
  const entries: Record<string, TuningEntry> = {};
  for (const [cls, e] of Object.entries(f.entries ?? {})) {
    if (typeof e === "object" && e !== null && isConfig(e.config) && validConfig(e.config)) entries[cls] = e;
    else warn(`kiln: ignoring the tuning cache's entry ${JSON.stringify(cls)} in ${path}: not a valid GEMM configuration`);
  }
  return entries;
}

function isConfig(c: unknown): c is GemmConfig {
  if (typeof c !== "object" || c === null) return false;
  const o = c as Record<string, unknown>;
  const nums = (...k: string[]) => k.every((x) => typeof o[x] === "number");
  return (
    (o.writer === "register-blocked" && nums("rm", "rn", "lanes")) || (o.writer === "workgroup-tiled" && nums("tile", "tk", "threads"))
  );
}

/** Merge `entries` into `adapter`'s file (read again first, so a concurrent tuner's other
 *  classes survive), written atomically. Returns the file's path. */
export function writeTuning(adapter: string, entries: Readonly<Record<string, TuningEntry>>, dir = cacheDir()): string {
  const path = tuningPath(adapter, dir);
  mkdirSync(join(dir, "tuning"), { recursive: true });
  const merged = { ...readTuning(adapter, dir, () => {}), ...entries };
  const file: TuningFile = { format: TUNING_FORMAT, adapter, writers: GEMM_WRITERS_VERSION, entries: merged };
  writeFileAtomic(path, `${JSON.stringify(file, null, 2)}\n`);
  return path;
}

/** Entries as a Target's Tuning (compiler/tuning.ts withTuning); undefined when there are none. */
export function asTuning(adapter: string, entries: Readonly<Record<string, TuningEntry>>): Tuning | undefined {
  const configs = Object.fromEntries(Object.entries(entries).map(([cls, e]) => [cls, e.config]));
  return Object.keys(configs).length ? { tunedFor: adapter, configs } : undefined;
}
