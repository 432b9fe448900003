/** Where the user made a node: the first stack frame outside Kiln's own code (its top-level
 *  folders, from source or from the built dist/, and node_modules), as "mlp.ts:12" — or, while a
 *  model builds a layer, the line that made the layer and its name, "mnist-mlp.ts:33
 *  (dense_1)": the graph is built long after that line ran. No Node imports: this runs in a
 *  browser too (lib/browser.ts), where frames are URLs. */

/** Kiln's folders as path prefixes (this file is <root>/src/api/site.ts, or dist/src/api/site.js). */
const root = decodeURIComponent(new URL("../../", import.meta.url).pathname);
const OWN = ["src", "formats", "compiler", "runtime", "training", "cli", "lib"].map((d) => `${root}${d}/`);

let override: string | undefined;

export function callSite(): string {
  if (override !== undefined) return override;
  const stack = new Error().stack?.split("\n").slice(1) ?? [];
  for (const frame of stack) {
    const m = /\(?((?:file:\/\/)?[^()\s]+):(\d+):\d+\)?$/.exec(frame.trim());
    if (!m) continue;
    let file = m[1];
    if (/^[a-z]+:\/\//.test(file)) file = decodeURIComponent(new URL(file).pathname);
    if (OWN.some((d) => file.startsWith(d)) || file.startsWith("node:") || file.includes("/node_modules/")) continue;
    return `${file.slice(file.lastIndexOf("/") + 1)}:${m[2]}`;
  }
  return "";
}

/** Run `fn` with every node it makes attributed to `site`. */
export function withSite<T>(site: string, fn: () => T): T {
  const outer = override;
  override = site;
  try {
    return fn();
  } finally {
    override = outer;
  }
}
