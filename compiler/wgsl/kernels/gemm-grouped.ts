/** The register-blocked GEMM for operands read four elements at a time (CPU rasterizers: the
 *  CPU target's writer, ./gemm-register.ts, takes this form when both operands allow it). Same
 *  layout, block and configuration as ./gemm-register.ts — RM×RN outputs an invocation, `lanes`
 *  invocations a workgroup — with the k loop walked four k at a time:
 *
 *        for k += 4:  A's RM×4 values and B's 4×RN, as vec4 loads (Gemm.vec4)
 *                     acc[i][j] += a(i,k)·b(k,j) + a(i,k+1)·b(k+1,j) + a(i,k+2)·b(k+2,j) + a(i,k+3)·b(k+3,j)
 *
 *  Why it is faster on lavapipe (Mesa 25.0, LLVM 15; see ./gemm-register.ts's header for what
 *  bounds the plain writer): a storage load costs a loop over the SIMD lanes whether it reads
 *  one f32 or a vec4, so a vec4 load brings four values for the price of one; and every write
 *  to a variable the loop carries (`acc`) is a load, a blend with the loop's lane mask and a
 *  store, where the four products' sum is a `let` inside one iteration, kept in registers. One
 *  write per four multiply-adds instead of one each. Measured on 1024³ (the same kernel,
 *  standalone, quiet machine, medians of 7): 23–26 GFLOP/s before, 37–40 after; a vec4 B alone
 *  1.10×, the sums alone 1.15×. The k loop's first dispatch (llvmpipe's JIT) costs what the plain
 *  writer's does (746 against 761 ms). Where an operand must be read one element at a time (an
 *  implicit im2col over 1 or 6 channels, a broadcast, a column count not a multiple of 4) the
 *  group of four would be four times the loads' index arithmetic in one loop body: LeNet's conv
 *  kernels compiled 5× slower and ran slower, so those keep ./gemm-register.ts's loop. A conv
 *  whose input channels and output channels are multiples of 4 reads its window four channels
 *  at a time (./conv2d.ts): 3×3, 64 → 64 channels over 8×32×32, 18–20 → 25–28 GFLOP/s.
 *
 *  Each operand is read along its contiguous axis (`Gemm.vec4`):
 *    A along k  (A row-major):        vec4 = A(m, k…k+3): one load a row per group
 *    A along m  (Aᵀ in the buffer):   vec4 = A(m…m+3, k): RM/4 loads per k
 *    B along n  (B row-major):        vec4 = B(k, n…n+3): RN/4 loads per k
 *    B along k  (Bᵀ in the buffer):   vec4 = B(k…k+3, n): one load a column per group
 *  With the `subgroups` feature (Target.subgroupGemm), invocations whose blocks share rows (all
 *  of a subgroup, checked once as ./gemm-subgroup.ts does) split A's loads: along k, lane l < S
 *  loads rows l, l + S, … (S = 8 where the subgroup has 8 lanes and RM is a multiple of 8, else
 *  4: WebGPU's smallest subgroup), and along m lane l loads k + l mod 4 for RM / S of the row
 *  quads (with S = 8, lanes 4…7 the second half); subgroupShuffle from a
 *  constant lane hands every lane its values. A subgroup that cannot share walks K one k at a
 *  time with its own loads (edge subgroups; a second copy of the group body would double the
 *  compile time), so its sums round in another order than its neighbours': both are exact
 *  products summed in f32, within the same bounds of the float64 reference.
 *  K past the last multiple of 4 is walked one k at a time. */
import type { Kernel } from "../../program.ts";
import type { KernelBuilder } from "../kernel-builder.ts";
import type { Gemm } from "./gemm.ts";
import {
  block,
  columnLanes,
  DEFAULT_REGISTER_GEMM,
  last,
  range,
  type RegisterGemmConfig,
  registerBlock,
  storeBlock,
  vector,
} from "./gemm-register.ts";
import { SHARE, SUBGROUP_UNIFORM, shareCheck } from "./gemm-subgroup.ts";

/** k steps summed before an accumulator is written. */
const GROUP = 4;

/** Whether `g` can be written by `groupedGemm` at `cfg`: both operands have vec4 readers, and a
 *  side read four rows or columns at a time has blocks of a multiple of 4. */
export function groupable(g: Gemm, cfg: RegisterGemmConfig = DEFAULT_REGISTER_GEMM): boolean {
  if (!g.vec4) return false;
  const rm = block(g.rows, cfg.rm);
  const rn = block(g.cols, cfg.rn);
  return (g.vec4.a === "k" || rm % 4 === 0) && (g.vec4.b === "k" || rn % 4 === 0);
}

export function groupedGemm(
  kb: KernelBuilder,
  what: string,
  g: Gemm,
  cfg: RegisterGemmConfig = DEFAULT_REGISTER_GEMM,
  subgroups = false,
): Kernel {
  if (!g.vec4 || !groupable(g, cfg)) throw new Error(`${what}: groupedGemm needs vec4 readers of both operands (groupable)`);
  const along = g.vec4;
  const { w } = kb;
  const { M, N, K } = g;
  // Fewer column blocks than four lanes: no subgroup's lanes could share rows.
  const share = subgroups && columnLanes(g, cfg) >= SHARE;
  // A sharing kernel keeps the spare lanes of the last column group (registerBlock): a subgroup
  // that lost one to an early return could not share (500 columns in blocks of 8 leave one
  // lane of 64 spare, and its subgroup of 8 took the one-k loop).
  const { rm, rn, wx, wy, vw, P, vec, x, y, z, mat } = registerBlock(kb, g, cfg, share);
  const loadA4 = mat.loadA4!;
  const loadB4 = mat.loadB4!;
  const [lastM, lastN] = [last(g.rows, M), last(g.cols, N)];
  // Rows and columns of the block, clamped to the edge (the clamped duplicates' sums are dropped
  // at the store). Read four at a time, a side needs only every 4th, clamped to the last whole
  // vec4 (that side is a multiple of 4, and so is its block start).
  if (along.a === "m") for (const q of range(rm / 4).slice(1)) w.line(`let m${4 * q} = min(m0 + ${4 * q}u, ${M} - 4u);`);
  else for (const i of range(rm).slice(1)) w.line(`let m${i} = min(m0 + ${i}u, ${lastM});`);
  if (along.b === "n") for (const p of range(rn / 4).slice(1)) w.line(`let n${4 * p} = min(n0 + ${4 * p}u, ${N} - 4u);`);
  else for (const j of range(rn).slice(1)) w.line(`let n${j} = min(n0 + ${j}u, ${lastN});`);
  w.line(`var acc: array<${vec}, ${rm * P}>;`);
  const at = (c: number) => (c ? `(k + ${c}u)` : "k");

  // B's values for the group: b<p>_<c>, the vector of columns 4p… at k + c.
  const loadB = () => {
    if (along.b === "n") {
      for (const c of range(GROUP)) for (const p of range(P)) w.line(`let b${p}_${c} = ${loadB4(at(c), `n${4 * p}`)};`);
      return;
    }
    for (const j of range(rn)) w.line(`let bt${j} = ${loadB4("k", `n${j}`)};`);
    for (const c of range(GROUP))
      for (const p of range(P)) w.line(`let b${p}_${c} = ${vector(range(vw).map((q) => `bt${p * vw + q}[${c}]`))};`);
  };
  // A's values: a<i>_<c> = A(m_i, k + c), each invocation loading for itself.
  const ownA = () => {
    if (along.a === "k") for (const i of range(rm)) w.line(`let va${i} = ${loadA4(`m${i}`, "k")};`);
    else for (const c of range(GROUP)) for (const q of range(rm / 4)) w.line(`let va${q}_${c} = ${loadA4(`m${4 * q}`, at(c))};`);
    for (const c of range(GROUP))
      for (const i of range(rm)) w.line(`let a${i}_${c} = ${along.a === "k" ? `va${i}[${c}]` : `va${i >> 2}_${c}[${i % 4}]`};`);
  };
  // Shared over the subgroup (the header): loads split between lanes, shuffled from a constant lane.
  const span = rm % 8 === 0 ? 8 : SHARE;
  const sharedA = () => {
    if (along.a === "k") {
      for (const q of range(Math.ceil(rm / span)))
        w.line(`let va${q} = ${loadA4(`min(m0 + ${q * span}u + sid % ${span}u, ${lastM})`, "k")};`);
      for (const c of range(GROUP))
        for (const i of range(rm)) w.line(`let a${i}_${c} = subgroupShuffle(va${Math.floor(i / span)}[${c}], ${i % span}u);`);
      return;
    }
    // Along m: lane l loads k + l % 4, and with 8 lanes, lanes 4… the second half of the row
    // quads: Q quads a lane, row quad q from lane c + 4·⌊q / Q⌋.
    const Q = rm / span;
    const half = span > SHARE ? ` + (sid / 4u) % 2u * ${4 * Q}u` : "";
    w.line(`let kl = k + sid % ${SHARE}u;`);
    for (const t of range(Q)) w.line(`let va${t} = ${loadA4(`min(m0 + ${4 * t}u${half}, ${M} - 4u)`, "kl")};`);
    for (const c of range(GROUP))
      for (const i of range(rm))
        w.line(`let a${i}_${c} = subgroupShuffle(va${(i >> 2) % Q}[${i % 4}], ${c + 4 * Math.floor((i >> 2) / Q)}u);`);
  };
  const sums = (a: () => void) => () => {
    a();
    loadB();
    for (const i of range(rm))
      for (const p of range(P))
        w.line(
          `acc[${i * P + p}] += ${range(GROUP)
            .map((c) => `a${i}_${c} * b${p}_${c}`)
            .join(" + ")};`,
        );
  };

  w.line("var k = 0u;");
  const groups = `for (; k + ${GROUP}u <= ${K}; k += ${GROUP}u)`;
  if (share) {
    w.line(shareCheck(span));
    w.block("if (share)", () => w.block(groups, sums(sharedA)));
  } else w.block(groups, sums(ownA));
  // The rest of K (all of it in a subgroup that could not share), one k at a time; scalar
  // loads of a vec4-declared binding pick a component (KernelBuilder.value4).
  w.block(`for (; k < ${K}; k++)`, () => {
    for (const i of range(rm)) w.line(`let a${i} = ${mat.loadA(along.a === "m" ? `min(m0 + ${i}u, ${lastM})` : `m${i}`, "k")};`);
    for (const p of range(P))
      w.line(
        `let b${p} = ${vector(range(vw).map((q) => mat.loadB("k", along.b === "n" ? `min(n0 + ${p * vw + q}u, ${lastN})` : `n${p * vw + q}`)))};`,
      );
    for (const i of range(rm)) for (const p of range(P)) w.line(`acc[${i * P + p}] += a${i} * b${p};`);
  });
  storeBlock(kb, g, mat, rm, rn, share);
  return kb.finish({
    what,
    workgroupSize: [wx, wy],
    dispatch: { kind: "grid", x, y, z },
    ...(share ? { features: ["subgroups"], diagnostics: [SUBGROUP_UNIFORM] } : {}),
  });
}
