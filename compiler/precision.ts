/** Mixed precision (CompileOptions.precision "mixed", behind WebGPU's `shader-f16` feature): f16
 *  storage for activations, f32 for everything else.
 *
 *  Which values are stored as f16: the f32 temporaries in the shared arena — a kernel's output
 *  that some later kernel loads — except the outputs of reductions. Graph inputs and outputs,
 *  constant data and resident state (weights, optimizer slots, the master copy of every
 *  parameter) stay f32, so the host, the runtime's copies and the state updates never see an f16.
 *  A kernel declares an f16 value `array<f16>`, widens every load to f32 and narrows its store,
 *  so all arithmetic and every accumulation (GEMM k-loops, reductions) runs in f32:
 *      k0 = fused[matmul, add, relu] -> %7:  v7[i] = f16(max(acc + f32(v2[n]), 0.0))
 *      k1 = matmul -> %9:                   acc += f32(v7[m * 64u + k]) * v3[k * 10u + n]
 *  Each f16 value costs one rounding (relative error ≤ 2⁻¹¹ ≈ 4.9e-4) where it is stored.
 *
 *  Range: f16's largest finite value is 65504; a larger activation is stored as ±inf (WGSL rounds
 *  to infinity from 2¹⁶ and may do so from 65520), which then propagates as inf or NaN — never
 *  a silently clamped value. fit's checks catch it and debugNans names the first node whose value
 *  passes the f16 range (training/debug-nans.ts). Reduction outputs stay f32: a sum over many
 *  elements passes 65504 when each element fits (a batch's loss sum, a softmax denominator
 *  of e^x over a row, a bias gradient summed over the batch), and they are small (one value per
 *  row), so f16 would save little. The values exp and log read are activations like any other
 *  (stored f16, as PyTorch's autocast stores a matmul's output); softmax subtracts the row's
 *  max before exp, so exp's argument is ≤ 0 there. Gradients are stored f16 too: training in
 *  mixed precision scales the loss so that small gradients do not flush to zero (src/api/model.ts
 *  lossScaling). */
import type { Graph, ValueId } from "../src/ir/types.ts";
import { pattern } from "../src/ops/table.ts";
import type { BufferSpec } from "./program.ts";
import type { KernelFeature, Target } from "./target.ts";

export type Precision = "f32" | "mixed";

/** The WebGPU feature a program in mixed precision needs. */
export const F16_FEATURE: KernelFeature = "shader-f16";

/** The values stored as f16 (see the header): f32 temporaries in `arena`, not graph outputs and
 *  not written by a reduction. Empty for "f32". */
export function halfValues(graph: Graph, specs: readonly BufferSpec[], arena: ReadonlySet<ValueId>, precision: Precision): Set<ValueId> {
  if (precision === "f32") return new Set();
  const outputs = new Set(graph.outputs.map((o) => o.id));
  return new Set(
    specs
      .filter((b) => b.role === "temp" && b.dtype === "f32" && arena.has(b.value) && !outputs.has(b.value))
      .filter((b) => pattern(graph.nodes[b.value]).kind !== "reduction")
      .map((b) => b.value),
  );
}

/** "auto": mixed precision where it pays — a GPU (not a CPU rasterizer, which has no f16
 *  arithmetic units and gains only memory) whose adapter offers `shader-f16` — else f32. */
export function resolvePrecision(
  p: Precision | "auto",
  device: { readonly target: Target; readonly features: ReadonlySet<string> },
): Precision {
  if (p !== "auto") return p;
  return device.target.name !== "cpu" && device.features.has(F16_FEATURE) ? "mixed" : "f32";
}

/** Bytes of one stored element: 2 for an f16 value, else 4 (every other dtype is stored in 32 bits). */
export const elementBytes = (half: ReadonlySet<ValueId> | undefined, v: ValueId): number => (half?.has(v) ? 2 : 4);
