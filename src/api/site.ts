/** Where the user made a node: the first stack frame outside Kiln's own src/, as "mlp.ts:12". */
import { fileURLToPath } from "node:url";
import { dirname } from "node:path";

const srcDir = dirname(dirname(fileURLToPath(import.meta.url)));

export function callSite(): string {
  const stack = new Error().stack?.split("\n").slice(1) ?? [];
  for (const frame of stack) {
    const m = /\(?((?:file:\/\/)?[^()\s]+):(\d+):\d+\)?$/.exec(frame.trim());
    if (!m) continue;
    let file = m[1];
    if (file.startsWith("file://")) file = fileURLToPath(file);
    if (file.startsWith(srcDir) || file.startsWith("node:") || file.includes("/node_modules/")) continue;
    return `${file.slice(file.lastIndexOf("/") + 1)}:${m[2]}`;
  }
  return "";
}
