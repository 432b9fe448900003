/** Installed versions of the bench's libraries, read from their package.json files (some, like
 *  @jax-js/jax, do not export package.json, so it is found by walking up from the entry point). */
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const require = createRequire(import.meta.url);

export function packageVersion(name: string): string {
  let dir = dirname(require.resolve(name));
  for (;;) {
    const file = join(dir, "package.json");
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, "utf8")) as { name?: string; version?: string };
      if (pkg.name === name && pkg.version) return pkg.version;
    }
    const up = dirname(dir);
    if (up === dir) throw new Error(`packageVersion: no package.json named ${name} above ${require.resolve(name)}`);
    dir = up;
  }
}
