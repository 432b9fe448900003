// `npm run build` (and `npm pack`, through prepack): dist/ holds tsc's JavaScript and
// declarations (tsconfig.build.json), plus the TypeScript sources that every bundle's generated
// loader copies as text (compiler/bundle/loader.ts SHIPPED_SOURCES), under dist/shipped/.
import { execFileSync } from "node:child_process";
import { cpSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../", import.meta.url));
const dist = (f = "") => `${root}dist/${f}`;
rmSync(dist(), { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
execFileSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], { cwd: root, stdio: "inherit" });
const { SHIPPED_SOURCES } = await import(new URL("compiler/bundle/loader.js", `file://${dist()}`).href);
// Under dist/shipped/: beside dist's declarations a .ts would shadow its .d.ts for tsc.
for (const f of SHIPPED_SOURCES) cpSync(`${root}${f}`, dist(`shipped/${f}`));
console.log(`build: dist/ written (${SHIPPED_SOURCES.length} sources shipped as text for bundle loaders, in dist/shipped/)`);
