/** matmul as a GEMM, and the workgroup-tiled GEMM writer (for GPUs) that conv2d shares (it is an
 *  implicit GEMM); `gemm` picks it or ./gemm-register.ts by target.
 *
 *  With the default configuration (DEFAULT_TILED_GEMM; a tuned one changes the numbers, not
 *  the scheme) each workgroup of 16×16 threads computes a 64×64 tile of C = A·B; thread (tx, ty)
 *  keeps a 4×4 block of it in registers: rows ty + 16i, columns tx + 16j (strided, so the stores of
 *  neighbouring threads are neighbours). K is walked 16 at a time:
 *
 *        k0 →                      n0 → (64 columns)
 *       ┌──────┐                   ┌─────────────┐
 *    m0 │ A    │ 64×16 → tileA  k0 │ B  16×64    │ → tileB       256 threads load 4 elements
 *       │      │                   └─────────────┘               of each (0 past the edges),
 *       └──────┘                                                  barrier, then 16 rank-1
 *                                                                 updates of the 4×4 block.
 *  So every element loaded from storage is used 64 times from workgroup memory (8 KiB of it):
 *  64× fewer storage loads than a thread per output. Real GPUs want exactly this; a CPU
 *  rasterizer pays for the barriers instead (../../target.ts). Operands are read through
 *  `kb.value`, so a transposed or broadcast operand is a strided load inside the tile loader,
 *  never a copy.
 *  Sizes come from `kb.dim`: with M = B symbolic, one pipeline serves every batch size.
 *
 *  Grid: x = column tiles, y = row tiles, z = batch; row tiles past 65,535 fold onto z, and a
 *  static batch or column count past it folds with the row tiles over y and z (`gemmGroups` in
 *  ./gemm.ts). */
import { sizeOf } from "../../../src/ir/shape.ts";
import type { Node, OpAttrs } from "../../../src/ir/types.ts";
import type { Kernel } from "../../program.ts";
import { broadcastCoords, type KernelBuilder } from "../kernel-builder.ts";
import { type Gemm, gemmGroups, loadTiles } from "./gemm.ts";
import { DEFAULT_REGISTER_GEMM, registerGemm } from "./gemm-register.ts";
import { subgroupRegisterGemm, subgroupTiledGemm } from "./gemm-subgroup.ts";
import { groupable, groupedGemm } from "./gemm-grouped.ts";
import { type Target, uses } from "../../target.ts";
import { type GemmConfig, gemmClass, tunedConfig } from "../../tuning.ts";

/** The writer's tile parameters (compiler/tuning.ts searches over them per adapter and shape
 *  class): a workgroup of threads×threads computes a tile×tile block of C, walking K tk at a
 *  time; each thread keeps block = tile / threads rows × as many columns (1, 2 or 4: one vector
 *  accumulator per row). Valid when tile·tk is a multiple of threads² (each thread loads the same
 *  number of elements of each tile a step) and the two tile×tk f32 tiles fit workgroup memory. */
export interface TiledGemmConfig {
  readonly tile: number;
  readonly tk: number;
  readonly threads: number;
}

/** The portable default: tile 64, so each element loaded into workgroup memory is used 64 times,
 *  and two 64×16 f32 tiles take 8 KiB, well inside WebGPU's guaranteed 16 KiB; tk 16 keeps a
 *  step's loads at 4 elements a thread per tile and one barrier pair per 16 rank-1 updates;
 *  16×16 = 256 threads, WebGPU's guaranteed maxComputeInvocationsPerWorkgroup, so a 4×4 block a
 *  thread: 16 multiply-adds per pair of values read from the tiles. */
export const DEFAULT_TILED_GEMM: TiledGemmConfig = { tile: 64, tk: 16, threads: 16 };

/** The GEMM writer for `kb.target` (../../target.ts): workgroup tiles on a GPU, register blocks
 *  on a CPU rasterizer (K in groups of four, ./gemm-grouped.ts, where both operands have vec4
 *  readers); each with the configuration tuned for the GEMM's shape class when the target
 *  carries one (../../tuning.ts), else its default. The kernel records which. With the
 *  `subgroups` feature and Target.subgroupGemm, the subgroup variant (./gemm-subgroup.ts): the
 *  register-blocked one at any configuration, the tiled one at the default's (its shuffles are
 *  laid out for 16-thread tile rows; another configuration takes the plain writer). */
export function gemm(kb: KernelBuilder, what: string, g: Gemm): Kernel {
  const cls = gemmClass(kb.target, kb.node(kb.op).op, g);
  const tuned = tunedConfig(kb.target, cls);
  const config: GemmConfig =
    tuned ??
    (kb.target.gemm === "register-blocked"
      ? { writer: "register-blocked", ...DEFAULT_REGISTER_GEMM }
      : { writer: "workgroup-tiled", ...DEFAULT_TILED_GEMM });
  const big = config.writer === "workgroup-tiled" || large(kb.target, g);
  const sub = uses(kb.target, "subgroups") && kb.target.subgroupGemm && big;
  const grouped = config.writer === "register-blocked" && big && groupable(g, config);
  const k =
    config.writer === "register-blocked"
      ? grouped
        ? groupedGemm(kb, what, g, config, sub)
        : sub
          ? subgroupRegisterGemm(kb, what, g, config)
          : registerGemm(kb, what, g, config)
      : sub &&
          config.tile === DEFAULT_TILED_GEMM.tile &&
          config.tk === DEFAULT_TILED_GEMM.tk &&
          config.threads === DEFAULT_TILED_GEMM.threads
        ? subgroupTiledGemm(kb, what, g)
        : tiledGemm(kb, what, g, config);
  const source = tuned ? { source: "tuned" as const, tunedFor: kb.target.tuning!.tunedFor } : { source: "default" as const };
  const form = `${config.writer === "workgroup-tiled" ? "tiles" : grouped ? "grouped" : "loop"}${k.features?.includes("subgroups") ? " + subgroups" : ""}`;
  return { ...k, gemm: { class: cls, config, ...source, form } };
}

/** Whether a register-blocked GEMM may take its grouped or subgroup form (Target.variantMinMacs):
 *  a symbolic size may be large, so it may. */
function large(target: Target, g: Gemm): boolean {
  const sizes = [g.rows, g.cols, g.depth, g.batch];
  return sizes.some((s) => s.syms.length > 0) || sizes.reduce((a, s) => a * s.k, 1) >= target.variantMinMacs;
}

export function tiledGemm(kb: KernelBuilder, what: string, g: Gemm, cfg: TiledGemmConfig = DEFAULT_TILED_GEMM): Kernel {
  const { w } = kb;
  const { M, N, K } = g;
  const { tile: TILE, tk: TK, threads: THREADS } = cfg;
  const BLOCK = TILE / THREADS;
  const vec = BLOCK === 1 ? "f32" : `vec${BLOCK}<f32>`;
  const { batch, group, col, surplus, x, y, z } = gemmGroups(kb, g, TILE, TILE);
  w.line(`let m0 = ${group === "0u" ? "0u" : `${group} * ${TILE}u`};`);
  if (surplus) w.line(`if (m0 >= ${M}) { return; }`);
  w.line(`let n0 = ${col} * ${TILE}u;`);
  const mat = g.matrix(batch);
  w.line(`var acc: array<${vec}, ${BLOCK}>;`);
  w.block(`for (var k0 = 0u; k0 < ${K}; k0 += ${TK}u)`, () => {
    loadTiles(kb, mat, g, TILE, TK, THREADS);
    w.line("workgroupBarrier();");
    w.block(`for (var kk = 0u; kk < ${TK}u; kk++)`, () => {
      const cols = range(BLOCK).map((j) => `tileB[kk * ${TILE}u + lid3.x${off(j, THREADS)}]`);
      w.line(`let bv = ${BLOCK === 1 ? cols[0] : `vec${BLOCK}(${cols.join(", ")})`};`);
      for (const i of range(BLOCK)) w.line(`acc[${i}] += tileA[kk * ${TILE}u + lid3.y${off(i, THREADS)}] * bv;`);
    });
    w.line("workgroupBarrier();");
  });
  w.block(`for (var i = 0u; i < ${BLOCK}u; i++)`, () => {
    w.line(`let sm = m0 + lid3.y + i * ${THREADS}u;`);
    w.block(`for (var j = 0u; j < ${BLOCK}u; j++)`, () => {
      w.line(`let sn = n0 + lid3.x + j * ${THREADS}u;`);
      w.block(`if (sm < ${M} && sn < ${N})`, () => mat.store("sm", "sn", BLOCK === 1 ? "acc[i]" : "acc[i][j]"));
    });
  });
  const tile = `array<f32, ${TILE * TK}>`;
  return kb.finish({
    what,
    workgroupSize: [THREADS, THREADS],
    shared: [`var<workgroup> tileA: ${tile};`, `var<workgroup> tileB: ${tile};`],
    dispatch: {
      kind: "grid",
      x,
      y,
      z,
    },
  });
}

/** A permute whose last two axes trade places (`x.T`), read by the matmul through its index map. */
function swapsLastTwo(n: Node): boolean {
  if (n.op !== "permute") return false;
  const p = (n.attrs as OpAttrs["permute"]).perm;
  return p.length >= 2 && p[p.length - 1] === p.length - 2 && p[p.length - 2] === p.length - 1;
}

/** How operand `id` of a matmul (its last two axes the matrix, read at (row, col)) can be read
 *  four elements at a time: along its last axis when it is a buffer of its own (KernelBuilder
 *  canValue4), or along its second-to-last when it is a permute that swaps only its last two
 *  axes of such a buffer (`x.T`: four consecutive rows of the operand are four consecutive
 *  elements of x); else undefined. `load(batch, r, c)` takes a multiple of 4 on that axis. */
function vec4Reader(
  kb: KernelBuilder,
  id: number,
): { along: "last" | "first"; load: (batch: readonly string[], r: string, c: string) => string } | undefined {
  if (kb.canValue4(id)) return { along: "last", load: (b, r, c) => kb.value4(id, [...b, r, c]) };
  const n = kb.node(id);
  if (!swapsLastTwo(n) || !kb.inlined(id)) return undefined;
  const perm = (n.attrs as OpAttrs["permute"]).perm;
  const x = n.inputs[0];
  if (!perm.slice(0, -2).every((p, i) => p === i) || !kb.canValue4(x)) return undefined;
  return { along: "first", load: (b, r, c) => kb.value4(x, [...b, c, r]) };
}

const range = (n: number): number[] => [...Array(n).keys()];
const off = (i: number, threads: number): string => (i ? ` + ${i * threads}u` : "");

/** [..., M, K] × [..., K, N]: the batch index unravels over the output's batch dims and each
 *  operand reads its broadcast coordinates (size-1 batch dims stay 0). */
export function matmulKernel(kb: KernelBuilder, what: string): Kernel {
  const out = kb.node(kb.op);
  const [ia, ib] = out.inputs;
  const sa = kb.node(ia).type.shape;
  const sb = kb.node(ib).type.shape;
  const batch = out.type.shape.slice(0, -2);
  const [m, n] = out.type.shape.slice(-2);
  const [M, N, K] = [kb.dim(m), kb.dim(n), kb.dim(sa[sa.length - 1])];
  const va = vec4Reader(kb, ia);
  const vb = vec4Reader(kb, ib);
  return gemm(kb, what, {
    ...(va && vb ? { vec4: { a: va.along === "last" ? "k" : "m", b: vb.along === "last" ? "n" : "k" } } : {}),
    rows: sizeOf([m]),
    cols: sizeOf([n]),
    batch: sizeOf(batch),
    depth: sizeOf([sa[sa.length - 1]]),
    transposed: [ia, ib].map((i) => swapsLastTwo(kb.node(i))) as [boolean, boolean],
    M,
    N,
    K,
    matrix: (b) => {
      const bc = kb.unravel(b, batch, "z");
      const ca = broadcastCoords(bc, batch, sa.slice(0, -2));
      const cb = broadcastCoords(bc, batch, sb.slice(0, -2));
      const row = (r: string) => (b === "0u" ? r : `(${b} * ${M} + ${r})`);
      return {
        loadA: (r, k) => kb.value(ia, [...ca, r, k]),
        loadB: (k, c) => kb.value(ib, [...cb, k, c]),
        ...(va && vb ? { loadA4: (r: string, k: string) => va.load(ca, r, k), loadB4: (k: string, c: string) => vb.load(cb, k, c) } : {}),
        store: (r, c, v) => kb.result(() => [...bc, r, c], `${row(r)} * ${N} + ${c}`, v),
      };
    },
  });
}
