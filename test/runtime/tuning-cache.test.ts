/** The tuning cache on disk (runtime/tuning-cache.ts): where it lives, a round trip, merging,
 *  atomic writes, and files that are corrupt or not ours — ignored with a warning, never thrown. */
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, expect, test } from "vitest";
import { GEMM_WRITERS_VERSION } from "../../compiler/tuning.ts";
import {
  asTuning,
  cacheDir,
  readTuning,
  TUNING_FORMAT,
  tuningMode,
  tuningPath,
  writeTuning,
  type TuningEntry,
} from "../../runtime/tuning-cache.ts";

const ADAPTER = "llvmpipe: Mesa 25.0.7 (LLVM 15.0.6) [mesa software] llvmpipe-256-bits";
const entry = (rm: number): TuningEntry => ({
  config: { writer: "register-blocked", rm, rn: 8, lanes: 64 },
  ms: 1,
  defaultMs: 2,
  candidates: 8,
  at: "2026-12-03T12:00:00.000Z",
});
const fresh = () => mkdtempSync(join(tmpdir(), "kiln-tuning-"));
const collect = () => {
  const warnings: string[] = [];
  return { warnings, warn: (m: string) => void warnings.push(m) };
};

describe("where", () => {
  test("KILN_CACHE_DIR, else $XDG_CACHE_HOME/kiln, else ~/.cache/kiln", () => {
    expect(cacheDir({ KILN_CACHE_DIR: "/c", XDG_CACHE_HOME: "/x" })).toBe("/c");
    expect(cacheDir({ XDG_CACHE_HOME: "/x" })).toBe("/x/kiln");
    expect(cacheDir({})).toBe(join(homedir(), ".cache", "kiln"));
  });

  test("one file per adapter and writers' version, named readably", () => {
    const p = tuningPath(ADAPTER, "/c");
    expect(p).toMatch(/^\/c\/tuning\/llvmpipe-mesa-25-0-7-llvm-15-0-6-mesa-software-l-[0-9a-f]{12}\.json$/);
    expect(tuningPath(`${ADAPTER} (newer driver)`, "/c")).not.toBe(p);
  });

  test("KILN_TUNING is off, cache (the default) or auto; anything else is an error naming it", () => {
    expect(tuningMode({})).toBe("cache");
    expect(tuningMode({ KILN_TUNING: "auto" })).toBe("auto");
    expect(() => tuningMode({ KILN_TUNING: "yes" })).toThrow(/KILN_TUNING must be off, cache or auto, got "yes"/);
  });
});

describe("read and write", () => {
  test("a round trip, merged with what the file holds, written atomically", () => {
    const dir = fresh();
    expect(readTuning(ADAPTER, dir)).toEqual({});
    writeTuning(ADAPTER, { a: entry(16) }, dir);
    const path = writeTuning(ADAPTER, { b: entry(8) }, dir);
    expect(readTuning(ADAPTER, dir)).toEqual({ a: entry(16), b: entry(8) });
    const file = JSON.parse(readFileSync(path, "utf8"));
    expect(file).toMatchObject({ format: TUNING_FORMAT, adapter: ADAPTER, writers: GEMM_WRITERS_VERSION });
    // No temporary file is left beside it.
    expect(readdirSync(dirname(path))).toEqual([path.slice(dirname(path).length + 1)]);
    expect(asTuning(ADAPTER, readTuning(ADAPTER, dir))).toEqual({
      tunedFor: ADAPTER,
      configs: { a: entry(16).config, b: entry(8).config },
    });
    expect(asTuning(ADAPTER, {})).toBeUndefined();
  });

  test.each([
    ["not JSON", "{ truncated"],
    ["another format", JSON.stringify({ format: "other/1", adapter: ADAPTER, writers: GEMM_WRITERS_VERSION, entries: {} })],
    ["another writers' version", JSON.stringify({ format: TUNING_FORMAT, adapter: ADAPTER, writers: "gemm-writers/0", entries: {} })],
    ["another adapter", JSON.stringify({ format: TUNING_FORMAT, adapter: "other", writers: GEMM_WRITERS_VERSION, entries: {} })],
    ["JSON null", "null"],
  ])("a file that is %s is ignored with a warning", (_, text) => {
    const dir = fresh();
    writeTuning(ADAPTER, { a: entry(16) }, dir);
    writeFileSync(tuningPath(ADAPTER, dir), text);
    const { warnings, warn } = collect();
    expect(readTuning(ADAPTER, dir, warn)).toEqual({});
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`ignoring the tuning cache ${tuningPath(ADAPTER, dir)}`);
    // Writing again replaces the bad file.
    writeTuning(ADAPTER, { b: entry(8) }, dir);
    expect(readTuning(ADAPTER, dir)).toEqual({ b: entry(8) });
  });

  test("an entry with an invalid or malformed configuration is dropped with a warning, the rest kept", () => {
    const dir = fresh();
    writeTuning(ADAPTER, { good: entry(16) }, dir);
    const path = tuningPath(ADAPTER, dir);
    const file = JSON.parse(readFileSync(path, "utf8"));
    file.entries.huge = entry(64); // 512 accumulators
    file.entries.odd = { config: { writer: "register-blocked", rm: "16" } };
    file.entries.none = 3;
    writeFileSync(path, JSON.stringify(file));
    const { warnings, warn } = collect();
    expect(Object.keys(readTuning(ADAPTER, dir, warn))).toEqual(["good"]);
    expect(warnings.map((w) => /entry "(\w+)"/.exec(w)?.[1])).toEqual(["huge", "odd", "none"]);
  });
});
