/** The `kiln` command line (`npx kiln …`, via bin/kiln.js). One function per command;
 *  `cli()` only wires them to commander, so a new command is a function and three lines. */
import { Command } from "commander";
import pkg from "../package.json" with { type: "json" };
import { acquireGpu, releaseGpu, SETUP_HINT } from "./device.ts";

/** The limits that decide how Kiln binds, sizes and dispatches kernels. */
const LIMITS = [
  "maxStorageBuffersPerShaderStage",
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeWorkgroupsPerDimension",
  "minStorageBufferOffsetAlignment",
] as const satisfies readonly (keyof GPUSupportedLimits)[];

/** kiln info: the adapter Dawn found and what it allows. */
async function info(): Promise<void> {
  try {
    const gpu = await acquireGpu();
    const width = 4 + Math.max(...LIMITS.map((k) => k.length));
    const row = (label: string, value: unknown) => console.log(`${label.padEnd(width)}${value}`);
    row("adapter", gpu.adapter);
    for (const k of LIMITS) row(`  ${k}`, gpu.limits[k]);
    row("features", [...gpu.features].sort().join(" ") || "(none)");
    row("MESA_SHADER_CACHE_DIR", process.env.MESA_SHADER_CACHE_DIR ?? "(unset: Mesa's default)");
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    throw new Error(message.includes(SETUP_HINT) ? message : `${message}\n${SETUP_HINT}`);
  } finally {
    await releaseGpu();
  }
}

function cli(): Command {
  const program = new Command("kiln")
    .description("Kiln: a compute-graph compiler for neural nets, WGSL on WebGPU")
    .version(pkg.version);
  program.command("info").description("show the WebGPU adapter, its limits and features").action(info);
  return program;
}

try {
  await cli().parseAsync();
} catch (e) {
  console.error(`kiln: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
}
