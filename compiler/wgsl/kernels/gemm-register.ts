/** The register-blocked GEMM writer, for CPU rasterizers (lavapipe, SwiftShader: CPU_TARGET in
 *  ../../target.ts). Same `Gemm` as the tiled writer, so matmul and the conv kernels use either.
 *
 *  Each invocation computes a block of RM×RN outputs (16×8 at most) straight from storage, with
 *  no workgroup memory and no barrier:
 *
 *        for k < K:   a_i = A(m_i, k)   i < RM        RM + RN loads,
 *                     b_j = B(k, n_j)   j < RN        RM·RN multiply-adds
 *                     acc[i][j] += a_i · b_j
 *
 *  What bounds it on lavapipe (Mesa 25.0, LLVM 15, 8-wide AVX2; read in GALLIVM_DEBUG=asm dumps
 *  and counted with valgrind's cachegrind, whose executed-instruction counts do not depend on the
 *  load of a shared machine, where wall clocks varied 1.8× between identical runs):
 *    - every storage load inside the k loop is a loop over the 8 lanes (test the lane's mask
 *      bit, reload the binding's pointer and size, bounds check, load, insert): ≈ 10
 *      instructions a lane, even when the address is uniform. This Mesa loads once for all
 *      lanes only where no control flow is open, and a loop is control flow: A(m_i, k) with
 *      rows from workgroup_id alone (what the mapping below gives whenever the columns fill
 *      the lanes) is still eight loads.
 *    - a multiply-add is vmulps + vaddps + a blend with the loop's execution mask, plus the
 *      spilled accumulator's load and store; fma() compiles to the same code (NIR splits it).
 *  So a k step costs ≈ 80·(RM + RN) + 5·RM·RN instructions per 8 lanes, and larger blocks run
 *  fewer: per lane multiply-add, 16×8 3.2 (a 128×784×500 matmul: 164M instructions), 16×16 2.5
 *  (1.3× fewer), 32×16 1.7 (2× fewer). But compiling grows faster: 3.6G instructions for the
 *  16×8 kernel, 9.4G for 16×16, ≈ 24G for 32×16 (≈ 1, 3 and 7 s of one core, paid per GEMM
 *  kernel on a cold start). So 16×8 stays the default and the tuner (compiler/tuning.ts) may
 *  pick another block per shape class. Earlier, on a quiet machine (GFLOP/s per both cores' CPU
 *  time, 1024³): 4×4 ≈ 10, 8×8 ≈ 17, 16×8 ≈ 20; the tiled writer ≈ 3.4. Unrolling k by 2 and an
 *  accumulator `var` each instead of one array (each ≈ 7% more instructions a multiply-add in
 *  the loop body) and clamping edge invocations instead of returning (1% more) did not help; a
 *  vec4 load is still a lane loop. The subgroup variant (./gemm-subgroup.ts) passes A values
 *  between lanes instead. Rows and columns past the edges are clamped, not branched on: the k
 *  loop has no test but its own, and the clamped duplicates are dropped at the store. A block
 *  shrinks to a small static M or N (M = 1 computes one row, not 16 copies).
 *
 *  Where both operands can be read four elements at a time (a dense matmul's, in either
 *  orientation; a conv's over channels that are multiples of 4), ./gemm-grouped.ts writes this
 *  layout with K in groups of four and vec4 loads instead (1.5× on 1024³); the loop here serves
 *  the rest (im2col over other channel counts, broadcasts, other sizes) and small GEMMs
 *  (Target.variantMinMacs).
 *
 *  Workgroups are `lanes` invocations (64 by default), WX×WY over (column, row) blocks, WX fitted
 *  to the column blocks so the SIMD lanes (x fastest) are not spent past N when N is small.
 *  Grid: x = column groups, y = row groups, z = batch (folded past 65,535: `gemmGroups` in ./gemm.ts). */
import type { Size } from "../../../src/ir/shape.ts";
import type { Count, Kernel } from "../../program.ts";
import type { KernelBuilder } from "../kernel-builder.ts";
import { type Gemm, type GemmMatrix, gemmGroups } from "./gemm.ts";

/** The writer's tile parameters (compiler/tuning.ts searches over them per adapter and shape class). */
export interface RegisterGemmConfig {
  /** The largest block, rm rows × rn columns of outputs an invocation keeps (shrunk to a small
   *  static M or N). rm·rn accumulators must fit a CPU's vector registers and what spills bear. */
  readonly rm: number;
  readonly rn: number;
  /** Invocations a workgroup (a power of two, spread WX×WY over column and row blocks). */
  readonly lanes: number;
}

/** The portable default. lanes 64: lavapipe runs a workgroup as SIMD loops over its lanes, and
 *  64 fills its 8-wide vectors 8 times over. 16×8 outputs are 128 accumulators (32 vec4s, what a
 *  CPU's vector registers and spills bear) for 16 + 8 loads per k — 5.3 multiply-adds a load,
 *  the best measured (header: 4×4 ≈ 10, 8×8 ≈ 17, 16×8 ≈ 20 GFLOP/s). */
export const DEFAULT_REGISTER_GEMM: RegisterGemmConfig = { rm: 16, rn: 8, lanes: 64 };

export function registerGemm(kb: KernelBuilder, what: string, g: Gemm, cfg: RegisterGemmConfig = DEFAULT_REGISTER_GEMM): Kernel {
  const { w } = kb;
  const { M, N, K } = g;
  const { rm, rn, wx, wy, vw, P, vec, x, y, z, mat } = registerBlock(kb, g, cfg);
  const [lastM, lastN] = [last(g.rows, M), last(g.cols, N)];
  // m_i, n_j: row and column i, j of the block (m0, n0 are in bounds after the return above).
  for (const i of range(rm).slice(1)) w.line(`let m${i} = min(m0 + ${i}u, ${lastM});`);
  for (const j of range(rn).slice(1)) w.line(`let n${j} = min(n0 + ${j}u, ${lastN});`);
  w.line(`var acc: array<${vec}, ${rm * P}>;`);
  w.block(`for (var k = 0u; k < ${K}; k++)`, () => {
    for (const i of range(rm)) w.line(`let a${i} = ${mat.loadA(`m${i}`, "k")};`);
    for (const p of range(P)) w.line(`let b${p} = ${vector(range(vw).map((q) => mat.loadB("k", `n${p * vw + q}`)))};`);
    for (const i of range(rm)) for (const p of range(P)) w.line(`acc[${i * P + p}] += a${i} * b${p};`);
  });
  storeBlock(kb, g, mat, rm, rn);
  return kb.finish({
    what,
    workgroupSize: [wx, wy],
    dispatch: {
      kind: "grid",
      x,
      y,
      z,
    },
  });
}

/** The register-blocked layout (the header's) for `cfg`: the block (rm × rn, shrunk to a small
 *  static side), the workgroup (wx × wy invocations over column and row blocks), the
 *  accumulators (P vectors of vw columns a row, `vec`), the grid, and the matrix accessors; it
 *  writes m0 and n0, the block's first row and column, and returns an invocation past the edge. */
export function registerBlock(
  kb: KernelBuilder,
  g: Gemm,
  cfg: RegisterGemmConfig,
  /** Keep the invocations whose columns start past N (the last column group's spare lanes):
   *  they compute columns 0… and store nothing (`live`), so that every subgroup stays whole. */
  spareLanes = false,
): { rm: number; rn: number; wx: number; wy: number; vw: number; P: number; vec: string; x: Count; y: Count; z: Count; mat: GemmMatrix } {
  const rm = block(g.rows, cfg.rm);
  const rn = block(g.cols, cfg.rn);
  const wx = columnLanes(g, cfg);
  const wy = cfg.lanes / wx;
  // Accumulators as vectors of up to 4 columns: P of them per row.
  const vw = Math.min(rn, 4);
  const P = rn / vw;
  const vec = vw === 1 ? "f32" : `vec${vw}<f32>`;
  const { batch, group, col, x, y, z } = gemmGroups(kb, g, rm * wy, rn * wx);
  kb.w.line(`let m0 = ${lane(group, wy, "lid3.y")} * ${rm}u;`);
  if (spareLanes) {
    kb.w.line(`if (m0 >= ${g.M}) { return; }`);
    kb.w.line(`let live = ${lane(col, wx, "lid3.x")} * ${rn}u < ${g.N};`);
    kb.w.line(`let n0 = select(0u, ${lane(col, wx, "lid3.x")} * ${rn}u, live);`);
  } else {
    kb.w.line(`let n0 = ${lane(col, wx, "lid3.x")} * ${rn}u;`);
    kb.w.line(`if (m0 >= ${g.M} || n0 >= ${g.N}) { return; }`);
  }
  return { rm, rn, wx, wy, vw, P, vec, x, y, z, mat: g.matrix(batch) };
}

/** WX, a workgroup's invocations along the columns: fitted to the column blocks so the SIMD
 *  lanes (x fastest) are not spent past N when N is small (8 for a symbolic N). */
export function columnLanes(g: Gemm, cfg: RegisterGemmConfig): number {
  return g.cols.syms.length ? Math.min(8, cfg.lanes) : Math.min(cfg.lanes, pow2(Math.ceil(g.cols.k / block(g.cols, cfg.rn))));
}

/** The store of an rm × rn block from `acc` (registerBlock's accumulators), each output inside
 *  the matrix through `mat.store` (the fused epilogue); the clamped duplicates past the edges
 *  are dropped here. */
export function storeBlock(kb: KernelBuilder, g: Gemm, mat: GemmMatrix, rm: number, rn: number, spareLanes = false): void {
  const { w } = kb;
  const vw = Math.min(rn, 4);
  const P = rn / vw;
  w.block(`for (var i = 0u; i < ${rm}u; i++)`, () => {
    w.line("let sm = m0 + i;");
    w.block(`for (var j = 0u; j < ${rn}u; j++)`, () => {
      w.line("let sn = n0 + j;");
      const acc = vw === 1 ? `acc[i * ${P}u + j]` : P === 1 ? `acc[i][j]` : `acc[i * ${P}u + j / ${vw}u][j % ${vw}u]`;
      w.block(`if (${spareLanes ? "live && " : ""}sm < ${g.M} && sn < ${g.N})`, () => mat.store("sm", "sn", acc));
    });
  });
}

/** Outputs per invocation along one side: `max`, or the power of two covering a smaller static
 *  size (a symbolic one may be anything, so it gets `max`). */
export function block(size: Size, max: number): number {
  return size.syms.length ? max : Math.min(max, pow2(size.k));
}

/** size − 1 as u32 WGSL; folded when static, since `0u - 1u` would not compile (an empty side
 *  dispatches nothing, but its shader must still compile). */
export const last = (size: Size, expr: string): string => (size.syms.length ? `${expr} - 1u` : `${Math.max(size.k - 1, 0)}u`);
/** The invocation's block index along one axis: group·lanes + its lane (just the group with one lane). */
export const lane = (group: string, lanes: number, id: string): string =>
  group === "0u" ? (lanes === 1 ? "0u" : id) : lanes === 1 ? group : `(${group} * ${lanes}u + ${id})`;
export const pow2 = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(n, 1)));
export const range = (n: number): number[] => [...Array(n).keys()];
/** A vecN<f32> of N scalar expressions (the expression itself for one). */
export const vector = (xs: readonly string[]): string => (xs.length === 1 ? xs[0] : `vec${xs.length}<f32>(${xs.join(", ")})`);
