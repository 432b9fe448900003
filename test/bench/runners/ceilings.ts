/** The adapter's ceilings (bench W5), measured on Kiln's own Dawn device:
 *    fma   — GFLOP/s of a kernel that does nothing but independent FMA chains in registers
 *            (16 vec4 chains per thread, so latency is hidden): the arithmetic ceiling;
 *    copy  — GB/s of a vec4 storage-buffer copy kernel: the memory ceiling a kernel can reach;
 *    copyBufferToBuffer — the same bytes copied by the queue, for comparison.
 *  Each is the best of a few launch shapes (lavapipe likes few large workgroups, a real GPU
 *  needs many); each shape doubles its work until one submission takes ≥ MIN_MS, then keeps the
 *  best of REPEATS submissions, each timed from submit to onSubmittedWorkDone. Results are read
 *  back and checked, so the compiler cannot drop the work.
 *
 *  Run alone: `npx tsx test/bench/runners/ceilings.ts` prints one JSON line ({"ok":true,
 *  "ceilings":{…}}) on stdout and a summary on stderr; run.ts starts it as a child like the
 *  other runners. */
import { acquireGpu, checked, releaseGpu, type Gpu } from "../../../runtime/device.ts";
import type { Reply } from "../protocol.ts";

export interface Ceilings {
  readonly adapter: string;
  readonly fmaGflops: number;
  /** Read + write traffic per second: 2 × bytes copied / time. */
  readonly copyGBps: number;
  readonly copyBufferToBufferGBps: number;
  readonly copyBytes: number;
  /** The launch shape that gave each figure. */
  readonly fmaShape: string;
  readonly copyShape: string;
}

const MIN_MS = 150;
const REPEATS = 3;
const CHAINS = 16;
const WG = 64;

const FMA_WGSL = `
// ${CHAINS} independent vec4 FMA chains per thread, iters steps each; 2·4·${CHAINS}·iters FLOP per thread.
struct P { iters: u32, a: f32, b: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;
  let a = vec4<f32>(p.a);
  let b = vec4<f32>(p.b);
${Array.from({ length: CHAINS }, (_, c) => `  var x${c} = vec4<f32>(f32(i) * 1e-9 + ${c}.0 * 1e-3);`).join("\n")}
  for (var k = 0u; k < p.iters; k++) {
${Array.from({ length: CHAINS }, (_, c) => `    x${c} = fma(x${c}, a, b);`).join("\n")}
  }
  out[i] = ${Array.from({ length: CHAINS }, (_, c) => `x${c}`).join(" + ")};
}`;

/** dst[i] = src[i] over vec4s, \`per\` consecutive vec4s per thread. */
const copyWgsl = (wg: number, per: number) => `
// dst = src, ${per} vec4 per thread, workgroup ${wg}.
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = gid.x + gid.y * nwg.x * ${wg}u;
  for (var j = 0u; j < ${per}u; j++) {
    let i = t * ${per}u + j;
    if (i < arrayLength(&src)) { dst[i] = src[i]; }
  }
}`;

async function timeSubmit(gpu: Gpu, encode: (enc: GPUCommandEncoder) => void): Promise<number> {
  const enc = gpu.device.createCommandEncoder();
  encode(enc);
  const cmd = enc.finish();
  const t = performance.now();
  gpu.device.queue.submit([cmd]);
  await gpu.device.queue.onSubmittedWorkDone();
  return performance.now() - t;
}

/** Double `work` from 1 until one run takes MIN_MS; then the best of REPEATS at that size. */
async function best(run: (work: number) => Promise<number>): Promise<{ work: number; ms: number }> {
  let work = 1;
  while ((await run(work)) < MIN_MS && work < 1 << 24) work *= 2;
  let ms = Infinity;
  for (let r = 0; r < REPEATS; r++) ms = Math.min(ms, await run(work));
  return { work, ms };
}

async function readBack(gpu: Gpu, buf: GPUBuffer, bytes: number): Promise<Float32Array> {
  const staging = gpu.device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = gpu.device.createCommandEncoder();
  enc.copyBufferToBuffer(buf, 0, staging, 0, bytes);
  gpu.device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const data = new Float32Array(staging.getMappedRange().slice(0));
  staging.destroy();
  return data;
}

/** A 2-D grid of workgroups covering `groups` (x ≤ 65535). */
const grid = (groups: number): [number, number] => (groups <= 65535 ? [groups, 1] : [65535, Math.ceil(groups / 65535)]);

async function fmaCeiling(gpu: Gpu): Promise<{ gflops: number; shape: string }> {
  const device = gpu.device;
  const module = device.createShaderModule({ code: FMA_WGSL });
  const pipeline = await device.createComputePipelineAsync({ layout: "auto", compute: { module, entryPoint: "main" } });
  const uni = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  let top = { gflops: 0, shape: "" };
  for (const groups of [64, 1024, 16384].filter((g) => g <= gpu.limits.maxComputeWorkgroupsPerDimension)) {
    const threads = groups * WG;
    const out = device.createBuffer({ size: threads * 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    const group = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: uni } },
        { binding: 1, resource: { buffer: out } },
      ],
    });
    // x ← 0.999·x + 0.001 stays bounded, so no chain overflows to inf or flushes to 0.
    const run = (iters: number) => {
      device.queue.writeBuffer(uni, 0, new Uint32Array([iters, 0, 0, 0]));
      device.queue.writeBuffer(uni, 4, new Float32Array([0.999, 0.001]));
      return timeSubmit(gpu, (enc) => {
        const pass = enc.beginComputePass();
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, group);
        pass.dispatchWorkgroups(groups);
        pass.end();
      });
    };
    const { work: iters, ms } = await best(run);
    const sample = await readBack(gpu, out, 64);
    out.destroy();
    if (!sample.every(Number.isFinite) || sample.every((v) => v === 0))
      throw new Error(`fma ceiling: implausible output ${sample.slice(0, 4)}`);
    const gflops = (2 * 4 * CHAINS * iters * threads) / (ms * 1e6);
    if (gflops > top.gflops) top = { gflops, shape: `${groups}×${WG} threads, ${iters} iterations` };
  }
  uni.destroy();
  return top;
}

async function copyCeilings(gpu: Gpu): Promise<{ kernel: number; shape: string; queue: number; bytes: number }> {
  const device = gpu.device;
  const bytes = Math.min(64 << 20, gpu.limits.maxStorageBufferBindingSize);
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const src = device.createBuffer({ size: bytes, usage });
  const dst = device.createBuffer({ size: bytes, usage });
  device.queue.writeBuffer(
    src,
    0,
    Float32Array.from({ length: bytes / 4 }, (_, i) => i % 1000),
  );
  const gbps = (b: { work: number; ms: number }) => (2 * bytes * b.work) / (b.ms * 1e6);
  let top = { kernel: 0, shape: "" };
  for (const [wg, per] of [
    [64, 1],
    [256, 1],
    [64, 4],
  ] as const) {
    const module = device.createShaderModule({ code: copyWgsl(wg, per) });
    const pipeline = await device.createComputePipelineAsync({ layout: "auto", compute: { module, entryPoint: "main" } });
    const group = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: src } },
        { binding: 1, resource: { buffer: dst } },
      ],
    });
    const [gx, gy] = grid(Math.ceil(bytes / 16 / per / wg));
    await device.queue.onSubmittedWorkDone();
    device.queue.writeBuffer(dst, 0, new Float32Array(1024).fill(-1));
    const b = await best((reps) =>
      timeSubmit(gpu, (enc) => {
        const pass = enc.beginComputePass();
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, group);
        for (let r = 0; r < reps; r++) pass.dispatchWorkgroups(gx, gy);
        pass.end();
      }),
    );
    const check = await readBack(gpu, dst, 4096);
    if (!check.every((v, i) => v === i % 1000))
      throw new Error(`copy ceiling: the copy kernel (workgroup ${wg}, ${per} per thread) wrote wrong values`);
    if (gbps(b) > top.kernel) top = { kernel: gbps(b), shape: `workgroup ${wg}, ${per} vec4 per thread` };
  }
  const queue = await best((reps) =>
    timeSubmit(gpu, (enc) => {
      for (let r = 0; r < reps; r++) enc.copyBufferToBuffer(src, 0, dst, 0, bytes);
    }),
  );
  src.destroy();
  dst.destroy();
  return { ...top, queue: gbps(queue), bytes };
}

export async function measureCeilings(): Promise<Ceilings> {
  const gpu = await acquireGpu();
  const fma = await checked(gpu, "fma ceiling", () => fmaCeiling(gpu));
  const copy = await checked(gpu, "copy ceilings", () => copyCeilings(gpu));
  return {
    adapter: gpu.adapter,
    fmaGflops: fma.gflops,
    copyGBps: copy.kernel,
    copyBufferToBufferGBps: copy.queue,
    copyBytes: copy.bytes,
    fmaShape: fma.shape,
    copyShape: copy.shape,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    const c = await measureCeilings();
    console.error(
      `${c.adapter}: FMA ${c.fmaGflops.toFixed(1)} GFLOP/s (${c.fmaShape}); copy kernel ${c.copyGBps.toFixed(1)} GB/s (${c.copyShape}), copyBufferToBuffer ${c.copyBufferToBufferGBps.toFixed(1)} GB/s (read+write, ${c.copyBytes >> 20} MiB)`,
    );
    const reply: Reply = { ok: true, ceilings: c };
    process.stdout.write(`${JSON.stringify(reply)}\n`);
  } catch (e) {
    const reply: Reply = { ok: false, error: e instanceof Error ? e.message : String(e) };
    process.stdout.write(`${JSON.stringify(reply)}\n`);
    process.exitCode = 1;
  } finally {
    await releaseGpu();
  }
}
