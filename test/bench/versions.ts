/** Installed versions of the bench's libraries, read from their package.json files (some, like
 *  @jax-js/jax, do not export package.json, so it is found by walking up from the entry point).
 *  A runner bundled by scripts/gpu-kit.mjs no longer has its packages' folders: the kit records
 *  their versions in a JSON file that KILN_BENCH_VERSIONS names. */
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const require = createRequire(import.meta.url);
const recorded: Readonly<Record<string, string>> = process.env.KILN_BENCH_VERSIONS
  ? JSON.parse(readFileSync(process.env.KILN_BENCH_VERSIONS, "utf8"))
  : {};

/** The version of `name`, or "not installed" where it is neither installed nor recorded. */
export function packageVersion(name: string): string {
  if (recorded[name]) return recorded[name];
  let entry: string;
  try {
    entry = require.resolve(name);
  } catch {
    return "not installed";
  }
  for (let dir = dirname(entry); ; dir = dirname(dir)) {
    const file = join(dir, "package.json");
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, "utf8")) as { name?: string; version?: string };
      if (pkg.name === name && pkg.version) return pkg.version;
    }
    if (dirname(dir) === dir) throw new Error(`packageVersion: no package.json named ${name} above ${entry}`);
  }
}
