/** Per-adapter tuning of the GEMM writers' tile parameters: shape classes, the candidates a
 *  search may try for one, and the lookup the writers make (./wgsl/kernels/matmul.ts `gemm`).
 *
 *  Every GEMM (matmul, conv2d and its gradients) is written by one of two writers, each with a
 *  configuration object: register-blocked (rm × rn outputs an invocation, `lanes` invocations a
 *  workgroup) and workgroup-tiled (tile × tile a workgroup, tk deep, threads × threads). Any valid
 *  configuration computes the same GEMM — the same products per output, summed in the writer's
 *  order (k by k; in groups of four k for ./wgsl/kernels/gemm-grouped.ts, whose edge subgroups
 *  go k by k, so the last bits of an output may differ between two configurations, within the
 *  same bound of the float64 reference) — so tuning changes speed, not accuracy. A Target may
 *  carry a `Tuning`: configurations by shape class, found by a timed search on one adapter
 *  (runtime/autotune.ts) and cached on disk per adapter (runtime/tuning-cache.ts). Without one,
 *  or for a class it lacks, each writer uses its portable default (today's constants), and the
 *  kernel records which it got:
 *      k3 = matmul -> %4 …    gemm matmul/register-blocked/M128xN512xK1024: rm16 rn8 lanes64 (default)
 *  Nothing here touches the device or the file system: the browser entry reaches it. */
import type { Size } from "../src/ir/shape.ts";
import type { OpKind } from "../src/ir/types.ts";
import type { Target } from "./target.ts";
import type { Gemm } from "./wgsl/kernels/gemm.ts";
import { DEFAULT_REGISTER_GEMM, type RegisterGemmConfig } from "./wgsl/kernels/gemm-register.ts";
import type { TiledGemmConfig } from "./wgsl/kernels/matmul.ts";

/** The writers' version: a tuned configuration was timed against the writers' code as it was, so
 *  a change to a writer's body (not just its defaults) bumps this and old cache entries are no
 *  longer read (it is part of the cache file's key, runtime/tuning-cache.ts). */
export const GEMM_WRITERS_VERSION = "gemm-writers/3";

export type GemmConfig =
  | ({ readonly writer: "register-blocked" } & RegisterGemmConfig)
  | ({ readonly writer: "workgroup-tiled" } & TiledGemmConfig);

/** Configurations by shape class (`gemmClass`), tuned on one adapter. */
export interface Tuning {
  /** The adapter they were timed on, as runtime/device.ts describes it. */
  readonly tunedFor: string;
  readonly configs: Readonly<Record<string, GemmConfig>>;
}

/** What a GEMM kernel was written with (Kernel.gemm): shown by `kiln explain`, kept in bundles. */
export interface KernelGemm {
  /** The shape class, e.g. "matmul/register-blocked/M128xN512xK1024". */
  readonly class: string;
  readonly config: GemmConfig;
  /** "tuned": from the target's Tuning (for the adapter `tunedFor`); "default": the writer's own. */
  readonly source: "tuned" | "default";
  readonly tunedFor?: string;
  /** Which form of the writer wrote it: "tiles" (workgroup-tiled), "loop" (register-blocked, one
   *  k at a time), "grouped" (register-blocked, vec4 operands and four k a write:
   *  ./wgsl/kernels/gemm-grouped.ts), each "+ subgroups" where it shares operands by subgroup
   *  operations (./wgsl/kernels/gemm-subgroup.ts). */
  readonly form?: string;
}

/** The shape class of a GEMM: the op, the writer, M, N and K each rounded up to a power of two,
 *  whether it is batched, and which operands a matmul reads transposed.
 *
 *  Why buckets: what makes one tile shape beat another is the sizes' magnitude — how many
 *  blocks there are to keep every thread busy, what fraction of a block falls past the edge,
 *  how much of A and B a k step touches — not their exact values; and the writers shrink a block
 *  to the power of two covering a small static side, so sizes within one power of two get the
 *  same candidates. Buckets keep the cache to a few entries a model, let one search cover the
 *  nearby batch sizes, and bound the tuning time. A symbolic side keeps its symbols: "M64B" is
 *  64·B rows, B bound per run. */
export function gemmClass(target: Target, op: OpKind, g: Gemm): string {
  const batched = g.batch.syms.length > 0 || g.batch.k > 1;
  const t = g.transposed ? `/${g.transposed.map((x) => (x ? "t" : "n")).join("")}` : "";
  return `${op}/${target.gemm}/M${bucket(g.rows)}xN${bucket(g.cols)}xK${bucket(g.depth)}${batched ? "/batched" : ""}${t}`;
}

const bucket = (s: Size): string => `${s.k === 1 && s.syms.length ? "" : pow2(s.k)}${s.syms.join("")}`;
const pow2 = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(n, 1)));

/** The tuned configuration for a GEMM of class `cls` on `target`: the target's Tuning's, when
 *  it has a valid one for the target's writer; else undefined (the writer's default). */
export function tunedConfig(target: Target, cls: string): GemmConfig | undefined {
  const c = target.tuning?.configs[cls];
  return c && c.writer === target.gemm && validConfig(c) ? c : undefined;
}

/** WebGPU's guaranteed limits, which every candidate keeps to so a tuned kernel (and a bundle
 *  carrying it) runs on any device. */
const MAX_INVOCATIONS = 256;
const MAX_WORKGROUP_BYTES = 16384;
/** Accumulators an invocation may keep: 128 f32 (32 vec4s) is what spills on a CPU still bear. */
const MAX_ACCUMULATORS = 128;

const isPow2 = (n: number): boolean => Number.isInteger(n) && n >= 1 && (n & (n - 1)) === 0;

/** Whether the writer can write `c` within WebGPU's guaranteed limits. */
export function validConfig(c: GemmConfig): boolean {
  if (c.writer === "register-blocked")
    return isPow2(c.rm) && isPow2(c.rn) && isPow2(c.lanes) && c.rm * c.rn <= MAX_ACCUMULATORS && c.lanes <= MAX_INVOCATIONS;
  const block = c.tile / c.threads;
  return (
    isPow2(c.tile) &&
    isPow2(c.tk) &&
    isPow2(c.threads) &&
    [1, 2, 4].includes(block) &&
    c.threads * c.threads <= MAX_INVOCATIONS &&
    (c.tile * c.tk) % (c.threads * c.threads) === 0 &&
    2 * c.tile * c.tk * 4 <= MAX_WORKGROUP_BYTES
  );
}

/** The register-blocked search space: block shapes around the measured best (16×8) and
 *  workgroup sizes around 64, the default first. Small on purpose: each candidate is a shader
 *  compile (slow on lavapipe) and a few timed runs. */
const REGISTER: readonly RegisterGemmConfig[] = [
  DEFAULT_REGISTER_GEMM,
  { rm: 8, rn: 8, lanes: 64 },
  { rm: 16, rn: 4, lanes: 64 },
  { rm: 8, rn: 16, lanes: 64 },
  { rm: 32, rn: 4, lanes: 64 },
  { rm: 16, rn: 8, lanes: 32 },
  { rm: 16, rn: 8, lanes: 128 },
  { rm: 8, rn: 8, lanes: 128 },
];

const TILED: readonly TiledGemmConfig[] = [
  // The writer's default, DEFAULT_TILED_GEMM (./wgsl/kernels/matmul.ts, which imports this file).
  { tile: 64, tk: 16, threads: 16 },
  { tile: 64, tk: 8, threads: 16 },
  { tile: 64, tk: 32, threads: 16 },
  { tile: 32, tk: 16, threads: 16 },
  { tile: 32, tk: 32, threads: 16 },
  { tile: 32, tk: 16, threads: 8 },
  { tile: 16, tk: 16, threads: 8 },
];

/** The candidates for a class on `target`'s writer, the default first: valid ones only, and one
 *  of each group that would write the same kernel (a block shrinks to a small static side, so at
 *  M ≤ 4 the rm 4…32 candidates are one). */
export function gemmCandidates(target: Target, cls: string): GemmConfig[] {
  // A static side's bucket is the power of two its block shrinks to; a symbolic one ("64B") any size.
  const sides = /\/M(\w+)xN(\w+)x/.exec(cls);
  const [m, n] = [1, 2].map((i) => (/^\d+$/.test(sides?.[i] ?? "") ? Number(sides![i]) : Infinity));
  const all: GemmConfig[] =
    target.gemm === "register-blocked"
      ? REGISTER.map((c) => ({ writer: "register-blocked", ...c }))
      : TILED.map((c) => ({ writer: "workgroup-tiled", ...c }));
  const seen = new Set<string>();
  return all.filter((c) => {
    if (!validConfig(c)) return false;
    const effective = c.writer === "register-blocked" ? { ...c, rm: Math.min(c.rm, m), rn: Math.min(c.rn, n) } : c;
    const key = formatConfig(effective);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** "rm16 rn8 lanes64", "tile64 tk16 threads16". */
export function formatConfig(c: GemmConfig): string {
  return c.writer === "register-blocked" ? `rm${c.rm} rn${c.rn} lanes${c.lanes}` : `tile${c.tile} tk${c.tk} threads${c.threads}`;
}

/** `target` with `tuning`'s configurations (those for its writer; none: the target as it was). */
export function withTuning(target: Target, tuning: Tuning | undefined): Target {
  if (!tuning) return target;
  const configs = Object.fromEntries(Object.entries(tuning.configs).filter(([, c]) => c.writer === target.gemm));
  return Object.keys(configs).length ? { ...target, tuning: { tunedFor: tuning.tunedFor, configs } } : target;
}
