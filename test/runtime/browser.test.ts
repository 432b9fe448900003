/** WebGPU in headless Chromium: the harness that will run Kiln's bundle in a page. Here a
 *  hand-written doubling kernel shows the page gets an adapter, runs a compute pass and sends
 *  back exact data. Without Chromium the suite says why and skips; under CI, where
 *  runtime/setup.sh installs it, that is a failure. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { chromiumAvailable, runInChromium } from "../helpers/browser.ts";
import { floats } from "../helpers/data.ts";

const status = await chromiumAvailable();
const ci = process.env.CI === "true";
if (!status.ok) console.warn(`browser suite: no WebGPU in headless Chromium: ${status.reason}`);

// Reads input.json, doubles it in a compute shader (64-wide workgroups, a partial last one),
// posts the output and the adapter it ran on.
const DOUBLE_PAGE = `<!doctype html><meta charset="utf-8"><script type="module">
try {
  const input = Float32Array.from(await (await fetch("input.json")).json());
  const n = input.length;
  const adapter = await navigator.gpu.requestAdapter();
  const device = await adapter.requestDevice();
  const data = device.createBuffer({ size: n * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(data, 0, input);
  const read = device.createBuffer({ size: n * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const module = device.createShaderModule({ code: \`
@group(0) @binding(0) var<storage, read_write> v: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x < arrayLength(&v)) { v[gid.x] = 2.0 * v[gid.x]; }
}\` });
  const pipeline = device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
  const group = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: data } }] });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, group);
  pass.dispatchWorkgroups(Math.ceil(n / 64));
  pass.end();
  enc.copyBufferToBuffer(data, 0, read, 0, n * 4);
  device.queue.submit([enc.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const output = [...new Float32Array(read.getMappedRange())];
  await fetch("/result", { method: "POST", body: JSON.stringify({ output, architecture: adapter.info.architecture }) });
} catch (e) {
  await fetch("/result", { method: "POST", body: JSON.stringify({ error: String(e) }) });
}
</script>`;

const dirs: string[] = [];
function site(files: Readonly<Record<string, string>>): string {
  const dir = mkdtempSync(join(tmpdir(), "kiln-site-"));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe.skipIf(!status.ok && !ci)("headless Chromium WebGPU", () => {
  test("a page gets a WebGPU adapter", () => {
    if (!status.ok) throw new Error(status.reason);
    console.info(
      `${status.version}: adapter ${status.adapter.vendor} ${status.adapter.architecture}${status.adapter.isFallbackAdapter ? " (fallback)" : ""}`,
    );
    expect(status.adapter.architecture).not.toBe("");
  });

  test("a compute shader doubles 1027 f32 exactly", async () => {
    // Scaled past [-1, 1) so exponents vary; 1027 leaves a partial workgroup.
    const input = floats(1027, 7).map((x, i) => Math.fround(x * 2 ** ((i % 41) - 20)));
    const run = await runInChromium({
      dir: site({ "index.html": DOUBLE_PAGE, "input.json": JSON.stringify(input) }),
      page: "index.html",
      timeoutMs: 60_000,
    });
    if (!run.ok) throw new Error(`${run.error}\n${run.log}`);
    const result = run.result as { output?: number[]; architecture?: string; error?: string };
    expect(result.error, run.log).toBeUndefined();
    expect(result.output).toHaveLength(input.length);
    const wrong = input.map((x, i) => [i, x, result.output![i]] as const).filter(([, x, y]) => y !== 2 * x);
    expect(wrong.slice(0, 5)).toEqual([]);
  });

  test("a page that never posts times out, with its console in the log", async () => {
    const page = `<!doctype html><script>console.log("page ran but posts nothing");</script>`;
    const run = await runInChromium({ dir: site({ "index.html": page }), page: "index.html", timeoutMs: 3_000 });
    expect(run.ok).toBe(false);
    if (run.ok) return;
    expect(run.error).toMatch(/^no result from http:\/\/127\.0\.0\.1:\d+\/index\.html within 3000 ms$/);
    expect(run.log).toContain("page ran but posts nothing");
  });

  test("files outside the served folder are refused", async () => {
    const page = `<!doctype html><script type="module">
const r = await fetch("/..%2f..%2f..%2fetc%2fpasswd");
await fetch("/result", { method: "POST", body: JSON.stringify({ status: r.status }) });
</script>`;
    const run = await runInChromium({ dir: site({ "index.html": page }), page: "index.html", timeoutMs: 30_000 });
    expect(run.ok && run.result).toEqual({ status: 403 });
  });
});
