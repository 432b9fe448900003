/** GEMM shape classes, the candidates a search may try, and how a Target's tuning reaches the
 *  writers (compiler/tuning.ts); no device needed. */
import { describe, expect, test } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { CPU_TARGET, GPU_TARGET, type Target } from "../../compiler/target.ts";
import { formatConfig, gemmCandidates, validConfig, withTuning, type GemmConfig } from "../../compiler/tuning.ts";
import { DEFAULT_REGISTER_GEMM } from "../../compiler/wgsl/kernels/gemm-register.ts";
import { DEFAULT_TILED_GEMM } from "../../compiler/wgsl/kernels/matmul.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import type { Dim } from "../../src/ir/types.ts";

const matmul = (a: Dim[], b: Dim[], transposeB = false) => {
  const g = new GraphBuilder();
  const w = g.input("w", "f32", b);
  return g.build({ y: g.input("x", "f32", a).matmul(transposeB ? w.transpose() : w) });
};
const gemmOf = (graph: ReturnType<typeof matmul>, target: Target) => compile(graph, { target }).kernels.find((k) => k.gemm)!.gemm!;

describe("shape classes", () => {
  test("op, writer, M N K rounded up to powers of two, batch and transposed operands", () => {
    expect(gemmOf(matmul([100, 784], [784, 300]), CPU_TARGET).class).toBe("matmul/register-blocked/M128xN512xK1024/nn");
    expect(gemmOf(matmul([128, 784], [500, 784], true), GPU_TARGET).class).toBe("matmul/workgroup-tiled/M128xN512xK1024/nt");
    expect(gemmOf(matmul([3, 5, 7], [3, 7, 9]), CPU_TARGET).class).toBe("matmul/register-blocked/M8xN16xK8/batched/nn");
    // A symbolic side keeps its symbol: one class serves every batch size.
    expect(gemmOf(matmul(["B", 784], [784, 10]), CPU_TARGET).class).toBe("matmul/register-blocked/MBxN16xK1024/nn");
  });

  test("conv2d and its gradients are classes of their own", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "f32", [2, 9, 9, 3]);
    const f = g.input("f", "f32", [3, 3, 3, 6]);
    const p = compile(g.build({ y: x.conv2d(f) }), { target: CPU_TARGET });
    expect(p.kernels.map((k) => k.gemm?.class).filter(Boolean)).toEqual(["conv2d/register-blocked/M128xN8xK32"]);
  });
});

describe("candidates", () => {
  test.each([CPU_TARGET, GPU_TARGET])("$name: every candidate is valid, the writer's default first", (target) => {
    const cs = gemmCandidates(target, `matmul/${target.gemm}/M1024xN1024xK1024/nn`);
    expect(cs.length).toBeGreaterThan(4);
    expect(cs.every(validConfig)).toBe(true);
    expect(cs.every((c) => c.writer === target.gemm)).toBe(true);
    expect(cs[0]).toEqual({ writer: target.gemm, ...(target === CPU_TARGET ? DEFAULT_REGISTER_GEMM : DEFAULT_TILED_GEMM) });
    expect(new Set(cs.map(formatConfig)).size).toBe(cs.length);
  });

  test("candidates that would write the same kernel at a small side are one", () => {
    // At M ≤ 4 every rm of 4 or more shrinks to 4: those differing only in rm collapse.
    const small = gemmCandidates(CPU_TARGET, "matmul/register-blocked/M4xN1024xK1024/nn");
    const big = gemmCandidates(CPU_TARGET, "matmul/register-blocked/M1024xN1024xK1024/nn");
    expect(small.length).toBeLessThan(big.length);
    expect(gemmCandidates(CPU_TARGET, "matmul/register-blocked/M1xN1xK8/nn").length).toBe(3); // lanes 64, 32, 128
    expect(gemmCandidates(CPU_TARGET, "matmul/register-blocked/MBxN1024xK8/nn").length).toBe(big.length);
  });

  test("validConfig refuses what a writer cannot write within WebGPU's guaranteed limits", () => {
    const bad: GemmConfig[] = [
      { writer: "register-blocked", rm: 32, rn: 8, lanes: 64 }, // 256 accumulators
      { writer: "register-blocked", rm: 12, rn: 8, lanes: 64 }, // not a power of two
      { writer: "register-blocked", rm: 8, rn: 8, lanes: 512 }, // past 256 invocations
      { writer: "workgroup-tiled", tile: 128, tk: 16, threads: 16 }, // 8×8 a thread
      { writer: "workgroup-tiled", tile: 64, tk: 64, threads: 16 }, // 32 KiB of tiles
      { writer: "workgroup-tiled", tile: 16, tk: 4, threads: 16 }, // 64 elements for 256 threads to load
    ];
    expect(bad.filter(validConfig)).toEqual([]);
  });
});

describe("a target's tuning reaches the writer", () => {
  const graph = matmul([100, 784], [784, 300]);
  const cls = "matmul/register-blocked/M128xN512xK1024/nn";
  const tuned: GemmConfig = { writer: "register-blocked", rm: 8, rn: 16, lanes: 128 };

  test("without one each GEMM records the default; with one, the tuned config and where it came from", () => {
    const plain = compile(graph, { target: CPU_TARGET }).kernels[0];
    // 100·784·300 multiply-adds, both operands whole vec4s: the grouped form (gemm-grouped.ts).
    expect(plain.gemm).toEqual({
      class: cls,
      config: { writer: "register-blocked", ...DEFAULT_REGISTER_GEMM },
      source: "default",
      form: "grouped",
    });
    const target = withTuning(CPU_TARGET, { tunedFor: "some adapter", configs: { [cls]: tuned } });
    const k = compile(graph, { target }).kernels[0];
    expect(k.gemm).toEqual({ class: cls, config: tuned, source: "tuned", tunedFor: "some adapter", form: "grouped" });
    expect(k.wgsl).toContain("@workgroup_size(32, 4)");
    expect(k.wgsl).not.toBe(plain.wgsl);
  });

  test("a config for the other writer, an invalid one or another class leaves the default", () => {
    const configs: Record<string, GemmConfig> = {
      [cls]: { writer: "register-blocked", rm: 64, rn: 8, lanes: 64 },
      "matmul/register-blocked/M1xN1xK1/nn": tuned,
    };
    const target: Target = { ...CPU_TARGET, tuning: { tunedFor: "x", configs } };
    expect(compile(graph, { target }).kernels[0].gemm?.source).toBe("default");
    // withTuning keeps only the target's writer's configs: none here, so the target comes back as it was.
    expect(withTuning(GPU_TARGET, { tunedFor: "x", configs: { [cls]: tuned } })).toBe(GPU_TARGET);
  });

  test("tiled configs other than the default write other tiles: block, loads and workgroup memory follow", () => {
    const tcls = "matmul/workgroup-tiled/M128xN512xK1024/nn";
    const cfg: GemmConfig = { writer: "workgroup-tiled", tile: 32, tk: 16, threads: 16 };
    const k = compile(graph, { target: withTuning(GPU_TARGET, { tunedFor: "x", configs: { [tcls]: cfg } }) }).kernels[0];
    expect(k.gemm?.source).toBe("tuned");
    expect(k.wgsl).toContain("var<workgroup> tileA: array<f32, 512>;");
    expect(k.wgsl).toContain("var acc: array<vec2<f32>, 2>;");
    expect(k.dispatch).toMatchObject({ kind: "grid", x: { per: 32 }, y: { per: 32 } });
  });
});
