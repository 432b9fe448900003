/** The only importer of `webgpu` (Dawn). Owns the one GPU handle, device and pipeline cache of
 *  the process and releases them, so scripts and tests end on their own. Every WebGPU error
 *  (validation, out-of-memory, internal, a lost device) becomes a thrown GpuError naming what
 *  was being done; none is swallowed. */
import { create, globals } from "webgpu";
import { KERNEL_FEATURES, targetForAdapter, type Target } from "../compiler/target.ts";
import { GpuError } from "../src/ir/errors.ts";
import { scoped } from "./executor.ts";

export interface Gpu {
  readonly device: GPUDevice;
  /** e.g. "llvmpipe: Mesa 25.0.7 (LLVM 15.0.6) [mesa software]" */
  readonly adapter: string;
  readonly limits: GPUSupportedLimits;
  /** The adapter's features (`kiln info`); those kernels may use are the device's (`device.features`). */
  readonly features: ReadonlySet<string>;
  /** What to compile for (pass it as `compile(graph, { target })`): CPU_TARGET on a software
   *  rasterizer such as lavapipe, else GPU_TARGET, with the kernel features (compiler/target.ts
   *  KERNEL_FEATURES) the device was given. */
  readonly target: Target;
  /** Pipelines by WGSL text: one compile per distinct shader in the process. */
  readonly pipelines: Map<string, Promise<GPUComputePipeline>>;
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
  handle ??= create([]);
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
  return {
    device,
    adapter: `${i.description || i.device} [${[i.vendor, i.architecture].filter(Boolean).join(" ")}]`,
    target: targetForAdapter([i.description, i.device, i.vendor, i.architecture].join(" "), fallback, device.features),
    limits: device.limits,
    features: new Set(adapter.features),
    pipelines: new Map(),
  };
}

/** Destroy the device and drop Dawn's handle; the next acquireGpu starts afresh. */
export async function releaseGpu(): Promise<void> {
  const g = current;
  current = undefined;
  const device = g && (await g.catch(() => undefined))?.device;
  if (device) {
    released.add(device);
    device.destroy();
  }
  handle = undefined;
}

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
