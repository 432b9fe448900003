/** What a GEMM writer is given, shared by both writers: the workgroup-tiled one (./matmul.ts,
 *  for GPUs) and the register-blocked one (./gemm-register.ts, for CPU rasterizers). matmul,
 *  conv2d and conv2d's gradients describe their GEMM once and `gemm` in ./matmul.ts picks the
 *  writer for `kb.target`. */
import type { Size } from "../../../src/ir/shape.ts";
import type { Count } from "../../program.ts";
import type { KernelBuilder } from "../kernel-builder.ts";

/** One matrix of a (batched) GEMM: WGSL for A(m, k) and B(k, n), and the store of C(m, n)
 *  (through `kb.result`, which applies a fused epilogue: ../kernel-builder.ts).
 *  They may write `let`s into `kb.w`: the loads are called inside a bounds check (tiled) or with
 *  in-bounds coordinates inside the k loop (register-blocked), the store inside its bounds check. */
export interface GemmMatrix {
  loadA(m: string, k: string): string;
  loadB(k: string, n: string): string;
  /** Four elements of A as one vec4<f32> load, along the axis `Gemm.vec4.a` names: A(m, k…k+3)
   *  or A(m…m+3, k), that coordinate a multiple of 4 (KernelBuilder.value4). Present with it. */
  readonly loadA4?: (m: string, k: string) => string;
  /** B(k, n…n+3) or B(k…k+3, n), as `Gemm.vec4.b` says. */
  readonly loadB4?: (k: string, n: string) => string;
  store(m: string, n: string, value: string): void;
}

export interface Gemm {
  /** Rows, columns and matrices, for the dispatch. */
  readonly rows: Size;
  readonly cols: Size;
  readonly batch: Size;
  /** The reduction length, for the shape class (../../tuning.ts). */
  readonly depth: Size;
  /** Whether a matmul reads A, B transposed (a permute of the last two axes inlined into the
   *  loads): part of the shape class, since it changes which loads are contiguous. */
  readonly transposed?: readonly [boolean, boolean];
  /** Where both operands can be read four elements at a time, along which axis of each: its
   *  contiguous one, a static multiple of 4 (A row-major: "k", A stored transposed: "m"; B
   *  row-major: "n", transposed: "k"); the matrix then has loadA4 and loadB4 (./gemm-grouped.ts). */
  readonly vec4?: { readonly a: "k" | "m"; readonly b: "n" | "k" };
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

/** Where a GEMM workgroup is: its matrix (`batch`, "0u" for one), its row group (`group`) and
 *  its column group (`col`), from workgroup_id, and the dispatch's counts. Three layouts:
 *    plain   x = column groups, y = row groups, z = batch    (each fits in 65,535)
 *    rows    y = row groups / F, z = batch·F (`foldFactor`): group = (z % F)·nwg.y + y, batch = z / F
 *    linear  static sizes past those: the R·batch (row group, matrix) pairs — with the C column
 *            groups too when they pass 65,535 (x = 1) — as one index folded over y and z,
 *            g = z·nwg.y + y, col = g % C, group = g / C % R, batch = g / C / R; surplus groups return
 *      batch 70,000 of 2×3 matrices, R = C = 1 → y = 65,535, z = 2: batch = z·65,535 + y
 *  The returns are workgroup-uniform (workgroup_id and num_workgroups), so barriers after them
 *  stay in uniform control flow. */
export function gemmGroups(
  kb: KernelBuilder,
  g: Gemm,
  perRow: number,
  perCol: number,
): {
  batch: string;
  group: string;
  col: string;
  /** Whether some row groups start past the rows (folded rows): the writer returns there. */
  surplus: boolean;
  x: Count;
  y: Count;
  z: Count;
} {
  const { w } = kb;
  const single = g.batch.k === 1 && g.batch.syms.length === 0;
  const fold = foldFactor(g.rows, g.batch, perRow);
  const R = Math.ceil(g.rows.k / perRow);
  const C = Math.ceil(g.cols.k / perCol);
  const foldCols = g.cols.syms.length === 0 && C > MAX_GROUPS;
  const x: Count = { size: g.cols, per: perCol };
  const isStatic = g.rows.syms.length === 0 && g.batch.syms.length === 0;
  if (isStatic && (foldCols || (fold === 1 && (R > MAX_GROUPS || g.batch.k > MAX_GROUPS)))) {
    const total = (foldCols ? C : 1) * R * g.batch.k;
    const y = Math.min(total, MAX_GROUPS);
    const at = kb.let("wid.z * nwg.y + wid.y", "g");
    w.line(`if (${at} >= ${total}u) { return; }`);
    const rest = foldCols ? kb.let(`${at} / ${C}u`, "g") : at;
    const one = (k: number): Count => ({ size: { k, syms: [] }, per: 1 });
    return {
      batch: single ? "0u" : R === 1 ? rest : kb.let(`${rest} / ${R}u`, "z"),
      group: R === 1 ? "0u" : `(${rest} % ${R}u)`,
      col: foldCols ? `(${at} % ${C}u)` : "wid.x",
      surplus: false,
      x: foldCols ? one(1) : x,
      y: one(y),
      z: one(Math.ceil(total / y)),
    };
  }
  const y: Count = { size: g.rows, per: perRow * fold };
  const z: Count = { size: { k: g.batch.k * fold, syms: g.batch.syms }, per: 1 };
  if (fold === 1) return { batch: single ? "0u" : "wid.z", group: "wid.y", col: "wid.x", surplus: false, x, y, z };
  const batch = single ? "0u" : kb.let(`wid.z / ${fold}u`, "z");
  return { batch, group: `(wid.z % ${fold}u * nwg.y + wid.y)`, col: "wid.x", surplus: true, x, y, z };
}

/** One K step's tiles of a workgroup-tiled GEMM (./matmul.ts and its subgroup variant): the
 *  threads² threads load tile×tk of A and tk×tile of B from k0, 0 past the edges. A: consecutive
 *  threads take consecutive k (row-major A reads contiguously); its tile is stored k-major so the
 *  update loop reads a column of A as a row. */
export function loadTiles(
  kb: KernelBuilder,
  mat: GemmMatrix,
  g: Pick<Gemm, "M" | "N" | "K">,
  tile: number,
  tk: number,
  threads: number,
): void {
  const { w } = kb;
  const { M, N, K } = g;
  w.block(`for (var r = 0u; r < ${(tile * tk) / (threads * threads)}u; r++)`, () => {
    w.line(`let ld = lid + r * ${threads * threads}u;`);
    w.line(`let am = m0 + ld / ${tk}u;`, `let ak = k0 + ld % ${tk}u;`, "var a = 0.0f;");
    w.block(`if (am < ${M} && ak < ${K})`, () => w.line(`a = ${mat.loadA("am", "ak")};`));
    w.line(`tileA[ld % ${tk}u * ${tile}u + ld / ${tk}u] = a;`);
    w.line(`let bk = k0 + ld / ${tile}u;`, `let bn = n0 + ld % ${tile}u;`, "var b = 0.0f;");
    w.block(`if (bk < ${K} && bn < ${N})`, () => w.line(`b = ${mat.loadB("bk", "bn")};`));
    w.line("tileB[ld] = b;");
  });
}
