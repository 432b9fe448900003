#!/usr/bin/env node
// The `kiln` command. Installed from npm it runs the compiled JavaScript in dist/ with plain node;
// in a checkout (where the TypeScript sources are) it runs them through tsx, a devDependency.
//
// Dawn prints two warnings from native code whenever an adapter is made on drivers that report
// huge dynamic-buffer limits (lavapipe): "Warning: maxDynamic…BuffersPerPipelineLayout
// artificially reduced from … to … to fit dynamic offset allocation limit." JavaScript cannot
// silence a native write to fd 2, so the command runs as a child whose stderr passes through here
// with exactly those two lines dropped; everything else, and the exit status, is passed on.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";

const DAWN_NOISE =
  /^Warning: maxDynamic(Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.$/;

if (process.env.KILN_CLI_CHILD !== "1") {
  const child = spawn(process.execPath, [...process.execArgv, new URL(import.meta.url).pathname, ...process.argv.slice(2)], {
    stdio: ["inherit", "inherit", "pipe"],
    env: { ...process.env, KILN_CLI_CHILD: "1" },
  });
  createInterface({ input: child.stderr, crlfDelay: Infinity }).on("line", (line) => {
    if (!DAWN_NOISE.test(line)) process.stderr.write(`${line}\n`);
  });
  for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => child.kill(signal));
  child.on("close", (code, signal) => {
    if (signal) process.kill(process.pid, signal);
    else process.exitCode = code ?? 1;
  });
} else {
  const source = new URL("../cli/cli.ts", import.meta.url);
  if (existsSync(source)) {
    const { register } = await import("tsx/esm/api");
    register();
    await import(source.href);
  } else {
    await import(new URL("../dist/cli/cli.js", import.meta.url).href);
  }
}
