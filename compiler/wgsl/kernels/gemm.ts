/** What a GEMM writer is given, shared by both writers: the workgroup-tiled one (./matmul.ts,
 *  for GPUs) and the register-blocked one (./gemm-register.ts, for CPU rasterizers). matmul,
 *  conv2d and conv2d's gradients describe their GEMM once and `gemm` in ./matmul.ts picks the
 *  writer for `kb.target`. */
import type { Size } from "../../../src/ir/shape.ts";

/** One matrix of a (batched) GEMM: WGSL for A(m, k) and B(k, n), and the store of C(m, n)
 *  (through `kb.result`, which applies a fused epilogue: ../kernel-builder.ts).
 *  They may write `let`s into `kb.w`: the loads are called inside a bounds check (tiled) or with
 *  in-bounds coordinates inside the k loop (register-blocked), the store inside its bounds check. */
export interface GemmMatrix {
  loadA(m: string, k: string): string;
  loadB(k: string, n: string): string;
  store(m: string, n: string, value: string): void;
}

export interface Gemm {
  /** Rows, columns and matrices, for the dispatch. */
  readonly rows: Size;
  readonly cols: Size;
  readonly batch: Size;
  /** The same sizes and the reduction length as u32 expressions (from `kb.dim`/`kb.size`). */
  readonly M: string;
  readonly N: string;
  readonly K: string;
  /** Called once at the top of `main` with the batch index; may write `let`s. */
  matrix(batch: string): GemmMatrix;
}

/** WebGPU's default maxComputeWorkgroupsPerDimension, which Kiln's device keeps. */
const MAX_GROUPS = 65535;
/** F for a symbolic row count, fixed at compile time since the rows are not known: up to
 *  16·65,535 row groups (with 64 rows a group, ≈67M rows; a conv over 10,000 MNIST images has
 *  7.8M); the dispatch then has 16× the batch in z, and with few rows at most 15 of each 16
 *  z-groups are surplus and return at once (an empty workgroup costs next to nothing). */
const SYM_FOLD = 16;

/** Row groups past 65,535 (the per-dimension limit) are folded onto z by a factor F:
 *  group = (z % F)·nwg.y + y, batch = z / F; surplus groups return before touching memory.
 *      rows 5,000,000, 64 a group → 78,125 row groups → F = 2: y ≤ 39,063, z = 2·batch
 *  F for `perGroup` rows a group (static rows: the fewest that fit, ceil(groups / 65,535));
 *  1 when the batch leaves no room (batch·F must fit in z too, and a symbolic batch might not). */
export function foldFactor(rows: Size, batch: Size, perGroup: number): number {
  const f = rows.syms.length ? SYM_FOLD : Math.ceil(rows.k / perGroup / MAX_GROUPS);
  return f > 1 && batch.syms.length === 0 && batch.k * f <= MAX_GROUPS ? f : 1;
}
