/** Subgroup variants of both GEMM writers (`subgroups` feature, Target.subgroupGemm): the
 *  invocations of a subgroup that need the same A values split their loads and pass the values
 *  around with subgroup operations instead of each loading all of them. Same `Gemm` as
 *  ./matmul.ts and ./gemm-register.ts, so matmul and the conv kernels get them too.
 *
 *  Nothing here assumes a subgroup size (WebGPU allows 4–128) or which invocations form a
 *  subgroup: each variant checks, once, with subgroup operations, that its subgroup has the
 *  shape it relies on, and a subgroup that does not takes the plain inner loop.
 *
 *  register-blocked (CPU rasterizers): invocations whose blocks share rows (all of a subgroup,
 *  checked: subgroupAll(m0 == subgroupBroadcastFirst(m0)) and the subgroup full) need the same
 *  RM values of A at each k. Four k at a time, lane c < 4 loads A(m_i, k + c) and
 *  subgroupShuffle(·, c) hands it to every lane: RM loads per four k instead of per k.
 *      let sa0 = A(m0, k + sid % 4u);  …
 *      for (c < 4) { let a0_s = subgroupShuffle(sa0, c);  b… = B(k + c, n…);  acc… += a0_s * b…; }
 *  On lavapipe a load whose address differs between lanes is a loop over the lanes, a broadcast
 *  one vector shuffle; when the rows depend on the workgroup alone (one row of blocks a
 *  workgroup, the default for wide N) the default's A loads are already uniform, one scalar load
 *  each, and this variant's are not (measured: ./gemm-subgroup.ts's test and the bench note in
 *  ../../target.ts).
 *
 *  workgroup-tiled (GPUs): the 16 threads of a tile row read the same four A values from
 *  workgroup memory at each of the tile's 16 k. With the row's threads in one subgroup as
 *  consecutive lanes (checked; the usual layout), thread tx reads them for k = tx mod C only,
 *  C = min(subgroup size, 16), and the row takes them from lane (row start + c) with
 *  subgroupShuffle: 4 workgroup-memory reads per C k instead of per k. */
import type { Kernel } from "../../program.ts";
import type { KernelBuilder } from "../kernel-builder.ts";
import { type Gemm, gemmGroups, loadTiles } from "./gemm.ts";
import {
  columnLanes,
  DEFAULT_REGISTER_GEMM,
  last,
  range,
  registerBlock,
  registerGemm,
  type RegisterGemmConfig,
  storeBlock,
  vector,
} from "./gemm-register.ts";

/** WGSL's uniformity analysis takes a subgroup operation's result (`share`, `rows`) and a return
 *  that depends on the invocation as non-uniform, so it would refuse the broadcasts under them;
 *  each is uniform across its subgroup by construction (all lanes of the subgroup take the same
 *  branch, and the checks count the active lanes), which is what subgroup operations need. */
export const SUBGROUP_UNIFORM = "off, subgroup_uniformity";

/** k steps whose A values one load of four lanes covers: WebGPU's smallest subgroup is 4. */
export const SHARE = 4;

/** `let share`: whether this invocation's subgroup may share A (the register-blocked variants
 *  here and in ./gemm-grouped.ts) — every lane active (an edge subgroup whose lanes returned is
 *  not), all with the block's rows (m0), and at least `lanes` of them (WebGPU guarantees 4). */
export function shareCheck(lanes = SHARE): string {
  return `let share = subgroupAll(m0 == subgroupBroadcastFirst(m0)) && subgroupAdd(1u) == ssize${lanes > SHARE ? ` && ssize >= ${lanes}u` : ""};`;
}

/** The register-blocked GEMM (./gemm-register.ts's layout: RM×RN outputs an invocation, 64
 *  invocations a workgroup) with A shared over the subgroup as the header shows. */
export function subgroupRegisterGemm(kb: KernelBuilder, what: string, g: Gemm, cfg: RegisterGemmConfig = DEFAULT_REGISTER_GEMM): Kernel {
  const { w } = kb;
  const { M, N, K } = g;
  // Fewer column blocks than four lanes: no subgroup's lanes could share rows.
  if (columnLanes(g, cfg) < SHARE) return registerGemm(kb, what, g, cfg);
  const { rm, rn, wx, wy, vw, P, vec, x, y, z, mat } = registerBlock(kb, g, cfg);
  const [lastM, lastN] = [last(g.rows, M), last(g.cols, N)];
  for (const i of range(rm).slice(1)) w.line(`let m${i} = min(m0 + ${i}u, ${lastM});`);
  for (const j of range(rn).slice(1)) w.line(`let n${j} = min(n0 + ${j}u, ${lastN});`);
  w.line(`var acc: array<${vec}, ${rm * P}>;`);
  // One k step, with A's values already in a<i>.
  const step = (k: string, suffix: string) => {
    for (const p of range(P)) w.line(`let b${p}${suffix} = ${vector(range(vw).map((q) => mat.loadB(k, `n${p * vw + q}`)))};`);
    for (const i of range(rm)) for (const p of range(P)) w.line(`acc[${i * P + p}] += a${i}${suffix} * b${p}${suffix};`);
  };
  // A subgroup whose lanes all have these rows, every lane active (an edge subgroup whose lanes
  // returned above is not): lanes 0…3 exist and need the same A.
  w.line(shareCheck());
  w.line("var k = 0u;");
  w.block("if (share)", () =>
    w.block(`for (; k + ${SHARE}u <= ${K}; k += ${SHARE}u)`, () => {
      w.line(`let kl = k + sid % ${SHARE}u;`);
      for (const i of range(rm)) w.line(`let sa${i} = ${mat.loadA(`m${i}`, "kl")};`);
      // c is the same in every lane, so each shuffle reads one lane: a broadcast whose lane the
      // loop counts (subgroupBroadcast needs a constant, which would unroll the loop four times;
      // measured slower and 4× the compile time on lavapipe).
      w.block(`for (var c = 0u; c < ${SHARE}u; c++)`, () => {
        for (const i of range(rm)) w.line(`let a${i}_s = subgroupShuffle(sa${i}, c);`);
        step("(k + c)", "_s");
      });
    }),
  );
  // The rest of K, or all of it.
  w.block(`for (; k < ${K}; k++)`, () => {
    for (const i of range(rm)) w.line(`let a${i} = ${mat.loadA(`m${i}`, "k")};`);
    step("k", "");
  });
  storeBlock(kb, g, mat, rm, rn);
  return kb.finish({
    what,
    workgroupSize: [wx, wy],
    dispatch: { kind: "grid", x, y, z },
    features: ["subgroups"],
    diagnostics: [SUBGROUP_UNIFORM],
  });
}

const TILE = 64;
const TK = 16;
const THREADS = 16;
const BLOCK = TILE / THREADS;

/** The workgroup-tiled GEMM (./matmul.ts's tiles: 64×64 a workgroup of 16×16, K 16 a step)
 *  with the tile row's A values passed by subgroupShuffle as the header shows. */
export function subgroupTiledGemm(kb: KernelBuilder, what: string, g: Gemm): Kernel {
  const { w } = kb;
  const { M, N, K } = g;
  const { batch, group, col, surplus, x, y, z } = gemmGroups(kb, g, TILE, TILE);
  // Decided before any return, with every lane active: consecutive lanes in lid order, full,
  // and starting at a multiple of C, so a row's C-aligned run of threads is C consecutive lanes.
  w.line(`let span = min(ssize, ${THREADS}u);`);
  w.line("let first = lid - sid;");
  w.line("let rows = subgroupAll(first == subgroupBroadcastFirst(first) && first % span == 0u) && subgroupAdd(1u) == ssize;");
  w.line(`let m0 = ${group === "0u" ? "0u" : `${group} * ${TILE}u`};`);
  if (surplus) w.line(`if (m0 >= ${M}) { return; }`);
  w.line(`let n0 = ${col} * ${TILE}u;`);
  const mat = g.matrix(batch);
  w.line(`var acc: array<vec4<f32>, ${BLOCK}>;`);
  w.line("let own = lid3.x % span;");
  w.block(`for (var k0 = 0u; k0 < ${K}; k0 += ${TK}u)`, () => {
    loadTiles(kb, mat, g, TILE, TK, THREADS);
    w.line("workgroupBarrier();");
    const bv = (kk: string) =>
      `vec4(${range(BLOCK)
        .map((j) => `tileB[${kk} * ${TILE}u + lid3.x${off(j)}]`)
        .join(", ")})`;
    const av = (kk: string) =>
      `vec4(${range(BLOCK)
        .map((i) => `tileA[${kk} * ${TILE}u + lid3.y${off(i)}]`)
        .join(", ")})`;
    w.block("if (rows)", () =>
      w.block(`for (var kc = 0u; kc < ${TK}u; kc += span)`, () => {
        w.line(`let mine = ${av("(kc + own)")};`);
        w.block("for (var c = 0u; c < span; c++)", () => {
          w.line("let a = subgroupShuffle(mine, sid - own + c);");
          w.line(`let bv = ${bv("(kc + c)")};`);
          for (const i of range(BLOCK)) w.line(`acc[${i}] += a[${i}] * bv;`);
        });
      }),
    );
    w.block("else", () =>
      w.block(`for (var kk = 0u; kk < ${TK}u; kk++)`, () => {
        w.line(`let a = ${av("kk")};`, `let bv = ${bv("kk")};`);
        for (const i of range(BLOCK)) w.line(`acc[${i}] += a[${i}] * bv;`);
      }),
    );
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
    dispatch: { kind: "grid", x, y, z },
    features: ["subgroups"],
    diagnostics: [SUBGROUP_UNIFORM],
  });
}

const off = (i: number): string => (i ? ` + ${i * THREADS}u` : "");
