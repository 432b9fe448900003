/** matmul as a GEMM, and the workgroup-tiled GEMM writer (for GPUs) that conv2d shares (it is an
 *  implicit GEMM); `gemm` picks it or ./gemm-register.ts by target.
 *
 *  Each workgroup of 16×16 threads computes a 64×64 tile of C = A·B; thread (tx, ty) keeps a
 *  4×4 block of it in registers: rows ty + 16i, columns tx + 16j (strided, so the stores of
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
import type { Kernel } from "../../program.ts";
import { broadcastCoords, type KernelBuilder } from "../kernel-builder.ts";
import { type Gemm, gemmGroups } from "./gemm.ts";
import { registerGemm } from "./gemm-register.ts";
import { subgroupRegisterGemm, subgroupTiledGemm } from "./gemm-subgroup.ts";
import { uses } from "../../target.ts";

/** Rows and columns of C a workgroup computes: each element loaded into workgroup memory is then
 *  used TILE = 64 times, and two 64×16 f32 tiles take 8 KiB, well inside WebGPU's guaranteed
 *  16 KiB of workgroup storage. */
const TILE = 64;
/** K a step: the depth of both tiles. 16 keeps a step's loads at 4 elements a thread per tile
 *  (64·16 / 256 threads) and one barrier pair per 16 rank-1 updates. */
const TK = 16;
/** Threads along each side of the workgroup: 16×16 = 256, WebGPU's guaranteed
 *  maxComputeInvocationsPerWorkgroup. */
const THREADS = 16;
/** Outputs a thread keeps along each side (64 / 16 = 4): a 4×4 block, one vec4 accumulator per
 *  row, so each thread does 16 multiply-adds per pair of values it reads from the tiles. */
const BLOCK = TILE / THREADS;

/** The GEMM writer for `kb.target` (../../target.ts): workgroup tiles on a GPU, register blocks
 *  on a CPU rasterizer; each in its subgroup variant (./gemm-subgroup.ts) when the target has
 *  the feature and chooses it (Target.subgroupGemm). */
export function gemm(kb: KernelBuilder, what: string, g: Gemm): Kernel {
  const sub = uses(kb.target, "subgroups") && kb.target.subgroupGemm;
  if (kb.target.gemm === "register-blocked") return sub ? subgroupRegisterGemm(kb, what, g) : registerGemm(kb, what, g);
  return sub ? subgroupTiledGemm(kb, what, g) : tiledGemm(kb, what, g);
}

export function tiledGemm(kb: KernelBuilder, what: string, g: Gemm): Kernel {
  const { w } = kb;
  const { M, N, K } = g;
  const { batch, group, col, surplus, x, y, z } = gemmGroups(kb, g, TILE, TILE);
  w.line(`let m0 = ${group === "0u" ? "0u" : `${group} * ${TILE}u`};`);
  if (surplus) w.line(`if (m0 >= ${M}) { return; }`);
  w.line(`let n0 = ${col} * ${TILE}u;`);
  const mat = g.matrix(batch);
  w.line(`var acc: array<vec4<f32>, ${BLOCK}>;`);
  w.block(`for (var k0 = 0u; k0 < ${K}; k0 += ${TK}u)`, () => {
    w.block(`for (var r = 0u; r < ${(TILE * TK) / (THREADS * THREADS)}u; r++)`, () => {
      w.line(`let ld = lid + r * ${THREADS * THREADS}u;`);
      // A: consecutive threads take consecutive k (row-major A reads contiguously); the tile
      // is stored k-major so the update loop reads a column of A as a row.
      w.line(`let am = m0 + ld / ${TK}u;`, `let ak = k0 + ld % ${TK}u;`, "var a = 0.0f;");
      w.block(`if (am < ${M} && ak < ${K})`, () => w.line(`a = ${mat.loadA("am", "ak")};`));
      w.line(`tileA[ld % ${TK}u * ${TILE}u + ld / ${TK}u] = a;`);
      w.line(`let bk = k0 + ld / ${TILE}u;`, `let bn = n0 + ld % ${TILE}u;`, "var b = 0.0f;");
      w.block(`if (bk < ${K} && bn < ${N})`, () => w.line(`b = ${mat.loadB("bk", "bn")};`));
      w.line("tileB[ld] = b;");
    });
    w.line("workgroupBarrier();");
    w.block(`for (var kk = 0u; kk < ${TK}u; kk++)`, () => {
      const cols = range(BLOCK).map((j) => `tileB[kk * ${TILE}u + lid3.x${off(j)}]`);
      w.line(`let bv = vec4(${cols.join(", ")});`);
      for (const i of range(BLOCK)) w.line(`acc[${i}] += tileA[kk * ${TILE}u + lid3.y${off(i)}] * bv;`);
    });
    w.line("workgroupBarrier();");
  });
  w.block(`for (var i = 0u; i < ${BLOCK}u; i++)`, () => {
    w.line(`let sm = m0 + lid3.y + i * ${THREADS}u;`);
    w.block(`for (var j = 0u; j < ${BLOCK}u; j++)`, () => {
      w.line(`let sn = n0 + lid3.x + j * ${THREADS}u;`);
      w.block(`if (sm < ${M} && sn < ${N})`, () => mat.store("sm", "sn", "acc[i][j]"));
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

const range = (n: number): number[] => [...Array(n).keys()];
const off = (i: number): string => (i ? ` + ${i * THREADS}u` : "");

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
  return gemm(kb, what, {
    rows: sizeOf([m]),
    cols: sizeOf([n]),
    batch: sizeOf(batch),
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
        store: (r, c, v) => kb.result(() => [...bc, r, c], `${row(r)} * ${N} + ${c}`, v),
      };
    },
  });
}
