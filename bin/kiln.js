#!/usr/bin/env node
// The `kiln` command. Installed from npm it runs the compiled JavaScript in dist/ with plain node;
// in a checkout (where the TypeScript sources are) it runs them through tsx, a devDependency.
import { existsSync } from "node:fs";

const source = new URL("../cli/cli.ts", import.meta.url);
if (existsSync(source)) {
  const { register } = await import("tsx/esm/api");
  register();
  await import(source.href);
} else {
  await import(new URL("../dist/cli/cli.js", import.meta.url).href);
}
