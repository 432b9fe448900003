/** What the compiler knows about the device it writes kernels for: the choices where the fast
 *  habit on a real GPU is the slow one on a CPU rasterizer, and the reverse.
 *
 *  GEMMs (matmul, conv2d and its gradients) are the main case. A GPU wants workgroup-memory
 *  tiling: each storage load is reused from fast shared memory by 64 threads. On lavapipe /
 *  llvmpipe (and SwiftShader) a workgroup is a loop over SIMD lanes, so a barrier ends the loop
 *  and starts another, and every storage load is a per-lane scalar loop with a bounds check:
 *  speed follows loads per FMA, and a large block of outputs in each invocation's registers wins
 *  (measured on lavapipe, 2 cores: ≈3 GFLOP/s tiled, ≈20 register-blocked). */
import type { Tuning } from "./tuning.ts";

export interface Target {
  /** Shown in benchmark notes and kernel dumps. */
  readonly name: string;
  /** The GEMM writer: "workgroup-tiled" (./wgsl/kernels/matmul.ts) or "register-blocked"
   *  (./wgsl/kernels/gemm-register.ts). */
  readonly gemm: "workgroup-tiled" | "register-blocked";
  /** Consecutive output elements one invocation of an elementwise kernel computes
   *  (./wgsl/kernels/elementwise.ts). On a CPU rasterizer an invocation has a fixed cost that
   *  dwarfs one multiply-add: 8 a thread ran m·0.9 + g·0.1 over 392,000 floats 3.4× faster than
   *  1 (0.76 vs 2.63 ms, lavapipe, 2 cores). On a GPU one a thread is the norm. */
  readonly elementsPerThread: number;
  /** Whether a long reduction to few outputs may run as a 256-thread workgroup tree
   *  (./wgsl/kernels/reduce.ts). On a CPU rasterizer a workgroup is one core's loop over its
   *  invocations and every barrier splits that loop: a [B,500] column sum at B = 128 took
   *  5–7 ms as trees, 0.2–0.3 ms as a loop a thread (lavapipe), so it always loops there. */
  readonly reductionTree: boolean;
  /** GEMM configurations tuned on one adapter, by shape class (./tuning.ts); without it, or for
   *  a class it lacks, each GEMM writer uses its portable default. */
  readonly tuning?: Tuning;
  /** WebGPU features the kernels may use, beyond core WebGPU: a kernel that uses one opens with
   *  its `enable` directive and records it (Kernel.features), and a program or bundle holding one
   *  is refused on a device without it. Empty (CPU_TARGET, GPU_TARGET): kernels run on any
   *  device. The device's target lists every one its adapter offers, and runtime/device.ts
   *  requests them; `withFeatures` adds or removes them by hand. */
  readonly features: readonly KernelFeature[];
  /** With "subgroups" among the features, whether the GEMM writers use their subgroup variant
   *  (./wgsl/kernels/gemm-subgroup.ts). Reductions always do where they run as workgroup trees
   *  (one subgroup operation and one barrier instead of the tree's eight halving rounds).
   *  On lavapipe the register-blocked variant won in paired bench runs against main (kiln ÷
   *  kiln-base, --steps 10, two runs at load ≈ 10): W5 1024³ 1.42× and 1.42×, W2 1.24×, W1 1.04×
   *  and 2.55×; its kernel is about twice the default's, so a cold (uncached) compile of one GEMM
   *  pipeline took ≈1.4–2× as long (4.5 → 6.4 s and 3.9 → 8.2 s at that load). The tiled
   *  variant is untimed: there is no GPU here. */
  readonly subgroupGemm: boolean;
  /** GEMMs of static sizes with fewer multiply-adds than this take the register-blocked
   *  writer's plain loop (./wgsl/kernels/gemm-register.ts), not its grouped or subgroup forms.
   *  Those hold two k loops, or a group body four times the size, so llvmpipe's JIT takes 2–3.5×
   *  as long on their first dispatch (LeNet's dense layers, 64×120×84 and the like: 0.8–1.4 s
   *  against 0.4 s each, test/bench/profile.ts --cold), while a GEMM this small runs in well
   *  under a millisecond either way: a cold start is what it costs. 0: always the fast forms
   *  (the tests that exercise them on small sizes). */
  readonly variantMinMacs: number;
}

/** The optional WebGPU features some kernel variant can use, sorted:
 *    shader-f16  f16 storage of intermediate values in mixed precision (./precision.ts; chosen by
 *                the compile option `precision`, not by the target)
 *    subgroups   subgroup reductions (./wgsl/kernels/reduce.ts) and GEMMs that share operands
 *                between the invocations of a subgroup (./wgsl/kernels/gemm-subgroup.ts) */
export type KernelFeature = "shader-f16" | "subgroups";
export const KERNEL_FEATURES: readonly KernelFeature[] = ["shader-f16", "subgroups"];

/** `target` using exactly the kernel features among `features` (unknown names are ignored):
 *      compile(graph, { target: withFeatures(GPU_TARGET, ["subgroups"]) })   force subgroups on
 *      compile(graph, { target: withFeatures(gpu.target, []) })              portable kernels */
export function withFeatures(target: Target, features: Iterable<string>): Target {
  const have = new Set(features);
  const chosen = KERNEL_FEATURES.filter((f) => have.has(f));
  return chosen.join() === target.features.join() ? target : { ...target, features: chosen };
}

/** Whether `target` may use `feature`. */
export const uses = (target: Target, feature: KernelFeature): boolean => target.features.includes(feature);

/** A hardware GPU: the default when nothing is known. */
export const GPU_TARGET: Target = {
  name: "gpu",
  gemm: "workgroup-tiled",
  elementsPerThread: 1,
  reductionTree: true,
  features: [],
  subgroupGemm: true,
  variantMinMacs: 0,
};

/** A software rasterizer running compute shaders on the CPU. */
export const CPU_TARGET: Target = {
  name: "cpu",
  gemm: "register-blocked",
  elementsPerThread: 8,
  reductionTree: false,
  features: [],
  subgroupGemm: true,
  // 2²² ≈ 4.2M: LeNet's dense GEMMs (≤ 3.1M) take the plain loop, an MLP's 128×784×500 (50M) not.
  variantMinMacs: 2 ** 22,
};

/** Mesa's llvmpipe/lavapipe, Google's SwiftShader, Microsoft's WARP ("Basic Render Driver"),
 *  and Vulkan's CPU device type as adapters describe it. */
const SOFTWARE = /llvmpipe|lavapipe|softpipe|swiftshader|\bwarp\b|basic render|software|\bcpu\b/i;

/** The target for an adapter, from its description (Dawn's `adapter.info` description, device,
 *  vendor and architecture, in any order), `isFallbackAdapter` where the platform has it, and
 *  the features its device has (the kernel features among them are used). */
export function targetForAdapter(description: string, isFallback = false, features: Iterable<string> = []): Target {
  return withFeatures(isFallback || SOFTWARE.test(description) ? CPU_TARGET : GPU_TARGET, features);
}
