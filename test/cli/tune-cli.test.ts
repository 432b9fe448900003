/** Tuning from the command line: `kiln tune` fills the cache, `kiln explain` shows each GEMM
 *  kernel's configuration and whether it came from the cache, and a bundle built with tuned
 *  configurations records the adapter they were tuned for — and still computes the same. */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, test, vi } from "vitest";
import { buildBundle } from "../../cli/build.ts";
import { explain } from "../../cli/explain.ts";
import { tuneCommand } from "../../cli/tune.ts";
import { compile } from "../../compiler/pipeline.ts";
import { CPU_TARGET } from "../../compiler/target.ts";
import { formatConfig, gemmCandidates, type GemmConfig } from "../../compiler/tuning.ts";
import type { Manifest } from "../../formats/bundle-manifest.ts";
import { interpret } from "../../src/interpret.ts";
import { acquireGpu, releaseGpu } from "../../runtime/device.ts";
import { readTuning, writeTuning } from "../../runtime/tuning-cache.ts";
import { batchOf, mlpInput, removeStandalone, runStandalone, standalone, worst } from "../helpers/bundle.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();
afterAll(removeStandalone);
afterEach(() => vi.restoreAllMocks());

const KIR = `%0:f32[B,12] = input name="x"
%1:f32[12,5] = input name="w"
%2:f32[B,5] = matmul %0, %1
%3:f32[B,5] = relu %2
return y=%3
`;
const CLASS = "matmul/register-blocked/MBxN8xK16/nn";

/** Runs `fn` with the tuning cache read from a fresh folder (the suite runs with KILN_TUNING=off),
 *  printing into the returned lines. */
async function withCache(fn: (dir: string) => Promise<void>): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), "kiln-tune-cli-"));
  const saved = { KILN_TUNING: process.env.KILN_TUNING, KILN_CACHE_DIR: process.env.KILN_CACHE_DIR };
  Object.assign(process.env, { KILN_TUNING: "cache", KILN_CACHE_DIR: dir });
  const printed: string[] = [];
  vi.spyOn(console, "log").mockImplementation((s: unknown) => void printed.push(String(s)));
  try {
    await releaseGpu(); // the next acquireGpu reads this folder's cache
    await fn(dir);
  } finally {
    vi.restoreAllMocks();
    for (const [k, v] of Object.entries(saved)) v === undefined ? delete process.env[k] : (process.env[k] = v);
    await releaseGpu();
  }
  return printed.join("\n").split("\n");
}

describe("kiln explain and kiln tune", () => {
  test("explain shows the default, and after tuning the cache's configuration", async () => {
    const model = join(mkdtempSync(join(tmpdir(), "kiln-kir-")), "mm.kir");
    writeFileSync(model, KIR);
    const gpu = await acquireGpu();
    if (gpu.target.gemm !== "register-blocked")
      return void console.warn("tune-cli: not a CPU rasterizer; the class names below assume one");
    let adapterId = "";
    let config: GemmConfig | undefined;
    const lines = await withCache(async (dir) => {
      await explain(model, { dim: ["B=9"], fuse: true });
      await tuneCommand(model, { dim: ["B=9"], budget: "0", repeats: "1" });
      adapterId = (await acquireGpu()).adapterId;
      config = readTuning(adapterId, dir)[CLASS]?.config;
      // Pin a configuration other than the default, so the line below cannot be the default's.
      writeTuning(
        adapterId,
        { [CLASS]: { config: { writer: "register-blocked", rm: 8, rn: 4, lanes: 32 }, ms: 1, defaultMs: 1, candidates: 1, at: "" } },
        dir,
      );
      await releaseGpu();
      await explain(model, { dim: ["B=9"], fuse: true });
    });
    expect(config).toBeDefined();
    const gemm = lines.filter((l) => l.trim().startsWith("gemm "));
    // N = 5: one or two column blocks, too few lanes to share and not whole vec4s: the plain loop.
    expect(gemm).toEqual([
      `      gemm ${CLASS}: rm16 rn8 lanes64 (default), loop`,
      `      gemm ${CLASS}: rm8 rn4 lanes32 (tuning cache), loop`,
    ]);
    expect(lines.filter((l) => l.startsWith("tuning: "))).toEqual([
      "tuning: no tuning cache for this adapter (kiln tune <model> makes one): portable defaults",
      expect.stringMatching(/^tuning: 1 GEMM class tuned for this adapter in .*\/tuning\/.*\.json$/),
    ]);
    // The tune log: each candidate's median, the one chosen, and the summary.
    expect(lines).toContain(`${CLASS} (k0, ${gemmCandidates(CPU_TARGET, CLASS).length} candidates)`);
    expect(lines.filter((l) => l.endsWith("← chosen"))).toEqual([expect.stringContaining(formatConfig(config!))]);
    expect(lines.some((l) => l.startsWith(`${CLASS}: ${formatConfig(config!)}, `))).toBe(true);
  });
});

describe("bundles", () => {
  const input = mlpInput("forward", 16);
  const classes = compile(input.graph, { target: CPU_TARGET, dims: input.dims, state: input.state }).kernels.flatMap((k) =>
    k.gemm ? [k.gemm.class] : [],
  );
  const tuned: GemmConfig = { writer: "register-blocked", rm: 8, rn: 16, lanes: 32 };
  const tuning = { tunedFor: "test adapter [fake]", configs: Object.fromEntries(classes.map((c) => [c, tuned])) };
  const manifestOf = (files: Map<string, string | Uint8Array>): Manifest => JSON.parse(files.get("manifest.json") as string);

  test("the manifest records the adapter the kernels were tuned for, or the portable default", () => {
    const plain = manifestOf(buildBundle(input, { name: "m", target: "cpu" }));
    expect(plain.compiler.tuning?.tunedFor).toBe("portable default");
    expect(Object.values(plain.compiler.tuning!.kernels).every((s) => s.endsWith("rm16 rn8 lanes64 (default)"))).toBe(true);
    const files = buildBundle(input, { name: "m", target: "cpu", tuning });
    const m = manifestOf(files);
    expect(m.compiler.tuning?.tunedFor).toBe("test adapter [fake]");
    expect(Object.keys(m.compiler.tuning!.kernels)).toHaveLength(classes.length);
    expect(Object.values(m.compiler.tuning!.kernels).every((s) => s.endsWith("rm8 rn16 lanes32 (tuned)"))).toBe(true);
    const gemmFile = m.kernels.find((k) => k.name in m.compiler.tuning!.kernels)!.file;
    expect(files.get(gemmFile)).toContain("//   gemm matmul/register-blocked/");
    // A tuning for the other writer applies to nothing: a gpu bundle stays portable.
    expect(manifestOf(buildBundle(input, { name: "m", target: "gpu", tuning })).compiler.tuning?.tunedFor).toBe("portable default");
  });

  test("a tuned bundle runs standalone and matches the float64 reference", async () => {
    const n = 5;
    const { x } = batchOf(n, 784, 3);
    const got = (await runStandalone(standalone(buildBundle(input, { name: "m", target: "cpu", tuning })), { x })).results[0].out;
    const all = Object.fromEntries([
      ["x", { shape: [n, 784], data: x }],
      ...Object.entries(input.weights).map(([k, v]) => {
        const node = input.graph.nodes.find((d) => d.op === "input" && (d.attrs as { name: string }).name === k)!;
        return [k, { shape: node.type.shape as number[], data: v }];
      }),
    ]);
    expect(worst(got, interpret(input.graph, all).out.data, 1e-5, 1e-4)).toBeLessThanOrEqual(1);
  });
});
