/** The only importer of `webgpu` (Dawn). Owns the one GPU handle, device and pipeline cache of
 *  the process and releases them, so scripts and tests end on their own. Every WebGPU error
 *  (validation, out-of-memory, internal, a lost device) becomes a thrown GpuError naming what
 *  was being done; none is swallowed. */
import { create, globals } from "webgpu";
import { KERNEL_FEATURES, targetForAdapter, type Target } from "../compiler/target.ts";
import { withTuning, type Tuning } from "../compiler/tuning.ts";
import { GpuError } from "../src/ir/errors.ts";
import { scoped } from "./executor.ts";
import { asTuning, readTuning, tuningMode } from "./tuning-cache.ts";

export interface Gpu {
  readonly device: GPUDevice;
  /** e.g. "llvmpipe: Mesa 25.0.7 (LLVM 15.0.6) [mesa software]" */
  readonly adapter: string;
  readonly limits: GPUSupportedLimits;
  /** The device's features: those of KERNEL_FEATURES (compiler/target.ts) the adapter offers,
   *  requested at creation; kernels may use exactly these. */
  readonly features: ReadonlySet<string>;
  /** The adapter as the tuning cache keys it (./tuning-cache.ts): `adapter` and Dawn's device
   *  string (lavapipe's names its SIMD width); the description carries the driver's version. */
  readonly adapterId: string;
  /** Every feature the adapter offers (kiln info). */
  readonly adapterFeatures: ReadonlySet<string>;
  /** What to compile for (pass it as `compile(graph, { target })`): CPU_TARGET on a software
   *  rasterizer such as lavapipe, else GPU_TARGET, with the kernel features (compiler/target.ts
   *  KERNEL_FEATURES) the device was given and the GEMM configurations tuned for this adapter
   *  from the tuning cache (./tuning-cache.ts) unless KILN_TUNING=off. */
  readonly target: Target;
  /** Pipelines by WGSL text: one compile per distinct shader in the process. */
  readonly pipelines: Map<string, Promise<GPUComputePipeline>>;
  /** Whether the driver compiles a pipeline's machine code at its first dispatch, on its one
   *  queue thread, and keeps it in an on-disk cache that every device of the process reads:
   *  Mesa's llvmpipe (lavapipe) with its shader cache on (MESA_SHADER_CACHE_DISABLE unset).
   *  Then a second device can compile a program's kernels beside the first (jit-warm.ts). */
  readonly sharedJitCache: boolean;
}

let handle: GPU | undefined;
let current: Promise<Gpu> | undefined;
let lost: string | undefined;
let uncaptured: string | undefined;
/** Devices releaseGpu destroyed: work on them fails with an AbortError that explains nothing. */
const released = new WeakSet<GPUDevice>();

export const SETUP_HINT =
  "WebGPU found no adapter. Kiln runs on Dawn over Vulkan: on Debian bookworm run `bash runtime/setup.sh` " +
  "(as root it installs libvulkan1 and mesa-vulkan-drivers ≥ 25 from bookworm-backports; Mesa 22 is too old for Dawn), " +
  "or install your GPU's Vulkan driver.";

/** Dawn's creation flags. KILN_DAWN_FEATURES adds toggles, comma-separated, e.g.
 *  `disable_robustness` (no bounds clamps on storage accesses: measured in test/bench). */
function dawnFlags(): string[] {
  const toggles = (process.env.KILN_DAWN_FEATURES ?? "").split(",").filter(Boolean);
  return toggles.length ? [`enable-dawn-features=${toggles.join(",")}`] : [];
}

/** Throw unless the device has every feature in `needed`, naming what needs them. */
export function requireFeatures(gpu: Pick<Gpu, "features" | "adapter">, needed: Iterable<string>, what: string): void {
  const missing = [...needed].filter((f) => !gpu.features.has(f));
  if (missing.length)
    throw new GpuError(
      `${what} needs the WebGPU feature${missing.length > 1 ? "s" : ""} ${missing.map((f) => `"${f}"`).join(", ")}, which this adapter (${gpu.adapter}) does not offer${missing.includes("shader-f16") ? '; compile with precision: "f32"' : ""}`,
    );
}

/** The process's GPU, created on first use. */
export function acquireGpu(): Promise<Gpu> {
  current ??= open().catch((e) => {
    current = undefined;
    throw e;
  });
  return current;
}

async function open(): Promise<Gpu> {
  for (const [k, v] of Object.entries(globals)) if (!(k in globalThis)) Object.assign(globalThis, { [k]: v });
  process.env.XDG_RUNTIME_DIR ??= "/tmp";
  handle ??= create(dawnFlags());
  const adapter = await handle.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new GpuError(SETUP_HINT);
  const a = adapter.limits;
  // Every optional feature some kernel variant can use, where the adapter offers it.
  const requiredFeatures = KERNEL_FEATURES.filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({
    requiredFeatures,
    requiredLimits: {
      maxStorageBufferBindingSize: a.maxStorageBufferBindingSize,
      maxBufferSize: a.maxBufferSize,
      maxStorageBuffersPerShaderStage: a.maxStorageBuffersPerShaderStage,
      maxComputeWorkgroupStorageSize: a.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: a.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: a.maxComputeWorkgroupSizeX,
      maxComputeWorkgroupSizeY: a.maxComputeWorkgroupSizeY,
    },
  });
  lost = undefined;
  uncaptured = undefined;
  void device.lost.then((info) => {
    if (info.reason !== "destroyed") lost = `device lost (${info.reason}): ${info.message}`;
  });
  device.addEventListener("uncapturederror", (ev) => {
    uncaptured ??= (ev as GPUUncapturedErrorEvent).error.message;
  });
  const i = adapter.info;
  // isFallbackAdapter moved from GPUAdapter to GPUAdapterInfo in the spec; read either (Dawn: info).
  const fallback = Boolean(
    (i as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter,
  );
  const name = `${i.description || i.device} [${[i.vendor, i.architecture].filter(Boolean).join(" ")}]`;
  const adapterId = i.device && i.description ? `${name} ${i.device}` : name;
  const base = targetForAdapter([i.description, i.device, i.vendor, i.architecture].join(" "), fallback, device.features);
  const gpu: Gpu = {
    device,
    adapter: name,
    adapterId,
    target: base,
    limits: device.limits,
    features: new Set(device.features),
    adapterFeatures: new Set(adapter.features),
    pipelines: new Map(),
    sharedJitCache: /llvmpipe/i.test(i.description || i.device) && !/^(1|true|yes)$/i.test(process.env.MESA_SHADER_CACHE_DISABLE ?? ""),
  };
  untuned.set(gpu, base);
  if (tuningMode() !== "off") setTuning(gpu, asTuning(adapterId, readTuning(adapterId)));
  return gpu;
}

/** Targets before tuning, by device. */
const untuned = new WeakMap<Gpu, Target>();

/** Make `gpu.target` the adapter's target with `tuning` (none: the portable defaults). */
export function setTuning(gpu: Gpu, tuning: Tuning | undefined): void {
  const base = untuned.get(gpu) ?? gpu.target;
  (gpu as { target: Target }).target = withTuning(base, tuning);
}

/** Work beside the process's device (jit-warm.ts), waited for by releaseGpu. */
const helpers = new Set<Promise<unknown>>();

/** A second device on another adapter object of the same Dawn instance, with the limits of
 *  `gpu`'s: on lavapipe its own queue thread. `use` gets it for a task releaseGpu waits for; the
 *  device is destroyed when the task ends. */
export function besideGpu(gpu: Gpu, use: (device: GPUDevice) => Promise<void>): Promise<void> {
  const task = (async () => {
    const adapter = await handle!.requestAdapter({ powerPreference: "high-performance" });
    if (!adapter) throw new GpuError("no second adapter for a helper device");
    const l = gpu.limits;
    const device = await adapter.requestDevice({
      requiredFeatures: KERNEL_FEATURES.filter((f) => gpu.features.has(f)),
      requiredLimits: {
        maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
        maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
        maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
        maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
        maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
        maxComputeWorkgroupSizeY: l.maxComputeWorkgroupSizeY,
      },
    });
    try {
      await use(device);
    } finally {
      device.destroy();
    }
  })();
  helpers.add(task);
  const done = () => helpers.delete(task);
  task.then(done, done);
  return task;
}

/** Destroy the device and drop Dawn's handle; the next acquireGpu starts afresh. */
export async function releaseGpu(): Promise<void> {
  await Promise.allSettled(helpers);
  const g = current;
  current = undefined;
  const device = g && (await g.catch(() => undefined))?.device;
  if (device) {
    released.add(device);
    device.destroy();
  }
  if (handle) retired.push(handle);
  handle = undefined;
}

/** Dawn instances releaseGpu let go of, kept referenced: one collected while the process goes on
 *  with a new one crashed Dawn (`pthread_mutex_lock` assertion, or a hang) after a few release and
 *  acquire cycles on a device with shader-f16 (test/cli/tune-cli.test.ts, lavapipe). */
const retired: GPU[] = [];

/** Node's `webgpu` binding polls Dawn for events back to back (setImmediate) as long as any of
 *  its promises is pending: waiting for a step's readback keeps a core busy the whole time, and on
 *  a CPU rasterizer that core is one the GPU's own threads need (lavapipe, 2 cores: W1's step
 *  took 1.4× as long). Waiting with `settle` puts the main thread to sleep between the binding's
 *  polls instead, a little longer the longer the wait (at most 1 ms: ≤ 2% of it is latency). */
export async function settle<T>(p: Promise<T>): Promise<T> {
  let done = false;
  const mark = () => {
    done = true;
  };
  p.then(mark, mark);
  const start = performance.now();
  await Promise.resolve();
  while (!done) {
    Atomics.wait(SLEEP, 0, 0, Math.min(1, Math.max(0.05, (performance.now() - start) / 50)));
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return p;
}
const SLEEP = new Int32Array(new SharedArrayBuffer(4));
/** Refuse kernels that need a feature `device` lacks, naming the first such kernel: `what` says
 *  what was being loaded ("kiln: loading the program", "kiln bundle: manifest.json"). */
export function assertFeatures(
  device: Pick<GPUDevice, "features">,
  kernels: readonly { readonly name: string; readonly features?: readonly string[] }[],
  what: string,
): void {
  for (const k of kernels)
    for (const f of k.features ?? [])
      if (!device.features.has(f))
        throw new GpuError(
          `${what}: kernel ${k.name} uses the WebGPU feature "${f}", which this device lacks (it has: ${[...device.features].sort().join(", ") || "none"}); ` +
            `compile for the device's own target (acquireGpu().target), or without it (withFeatures(target, []))`,
        );
}

/** Throw if the device was lost or reported an error outside any scope. */
export function assertHealthy(what: string): void {
  if (lost) throw new GpuError(`${what}: ${lost}`);
  if (uncaptured) {
    const m = uncaptured;
    uncaptured = undefined;
    throw new GpuError(`${what}: ${m}`);
  }
}

/** Run `fn` inside error scopes (runtime/executor.ts `scoped`, the bundle's too); a WebGPU error
 *  raised by it, a lost device or an error outside any scope is thrown as a GpuError naming `what`. */
export async function checked<T>(gpu: Gpu, what: string, fn: () => T | Promise<T>): Promise<T> {
  if (released.has(gpu.device)) throw new GpuError(`${what}: the GPU was released (releaseGpu); load the program again`);
  assertHealthy(what);
  const result = await scoped(gpu.device, what, fn);
  assertHealthy(what);
  return result;
}
