/** Keeps `npm run bench` working: the orchestrator against runners that misbehave on purpose,
 *  the real smoke run (W1, the smoke runners of registry.ts, 1 warm-up + 3 steps), Kiln's
 *  W6 fit path at one batch per epoch, and the ONNX workloads at batch 2: ONNX Runtime on W2
 *  (Kiln's export) and W7, and Kiln's W7 ("not built" until the importer is in the checkout). */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, test } from "vitest";
import { ROOT, runBench, type BenchOptions } from "./orchestrate.ts";
import { RUNNERS, type RunnerEntry } from "./registry.ts";
import { REFERENCE_TOLERANCE, RUNNERS_TOLERANCE, buildReport, toMarkdown, type BenchReport } from "./report.ts";
import { loadImporter } from "../helpers/onnx-importer.ts";

const FIXTURES = fileURLToPath(new URL("./fixtures/", import.meta.url));

describe("bench orchestrator", () => {
  test("records errors, crashes, hangs and missing runners, and times the rest", async () => {
    const fixture = (id: string, mode: string, extra: Partial<RunnerEntry> = {}): RunnerEntry => ({
      id,
      module: "faulty-runner.ts",
      args: [mode],
      workloads: ["W1"],
      ...extra,
    });
    const registry: RunnerEntry[] = [
      fixture("good", "reference"),
      fixture("noisy", "noisy"),
      fixture("no-kernel", "error-setup"),
      fixture("crashes", "crash-setup"),
      fixture("hangs", "hang-steps"),
      fixture("slow-opt-in", "reference", { optIn: "too slow for a default run" }),
      { id: "unwritten", module: "does-not-exist.ts", args: [], workloads: ["W1"] },
    ];
    const opts: BenchOptions = {
      workloads: ["W1"],
      warmup: 1,
      steps: 4,
      chunk: 2,
      budgetS: 60,
      minSteps: 3,
      timeoutS: 60,
      stepsTimeoutS: 2,
      batch: 4,
      shaderCache: "cold",
      registry,
      runnersDir: FIXTURES,
    };
    const run = await runBench(opts);
    const by = Object.fromEntries(run.results.map((r) => [r.runner, r]));
    expect(Object.keys(by).sort()).toEqual(registry.map((e) => e.id).sort());
    for (const id of ["good", "noisy"]) {
      expect(by[id].status, `${id}: ${by[id].error}`).toBe("ok");
      expect(by[id].ms).toHaveLength(4);
      expect(by[id].firstLoss).toBe(by[id].reference);
    }
    expect(by["no-kernel"]).toMatchObject({ status: "failed", error: expect.stringContaining("Conv2DBackpropFilter") });
    expect(by.crashes).toMatchObject({ status: "crashed", error: expect.stringMatching(/code 3.*boom/s) });
    expect(by.hangs).toMatchObject({ status: "timeout", error: expect.stringContaining("no reply to steps") });
    expect(by["slow-opt-in"]).toMatchObject({ status: "skipped", error: expect.stringContaining("too slow") });
    expect(by.unwritten.status).toBe("not built");

    const md = toMarkdown(buildReport(run, opts, "good"));
    expect(md).toMatch(/\| good \| [\d.]+ \([\d.]+–[\d.]+\) \| 4 \|.*\| 1\.00× \|/);
    expect(md).toMatch(/\| hangs \| timeout: no reply to steps/);
    expect(md).toMatch(/\| unwritten \| not built/);
  });
});

describe("npm run bench -- --smoke", () => {
  test("every built smoke runner trains W1 from the reference loss, downhill", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-bench-smoke-"));
    try {
      const json = join(dir, "smoke.json");
      const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", "test/bench/run.ts", "--smoke", "--json", json], {
        cwd: ROOT,
        maxBuffer: 1 << 24,
      });
      const report = JSON.parse(readFileSync(json, "utf8")) as BenchReport;
      const built = RUNNERS.filter((r) => r.smoke && existsSync(fileURLToPath(new URL(`./runners/${r.module}`, import.meta.url))));
      expect(built.map((r) => r.id)).toContain("kiln");
      expect(built.length).toBeGreaterThanOrEqual(3);
      for (const entry of built) {
        const r = report.results.find((x) => x.runner === entry.id && x.workload === "W1");
        expect(r?.status, `${entry.id}: ${r?.error}\n${r?.stderr ?? ""}`).toBe("ok");
        expect(r!.ms).toHaveLength(3);
        expect(r!.firstLossRelError!).toBeLessThanOrEqual(REFERENCE_TOLERANCE);
        // Plain SGD on one fixed batch: five steps must lower the loss.
        expect(r!.lastLoss!).toBeLessThan(r!.firstLoss!);
        expect(stdout).toContain(`| ${entry.id} | `);
      }
      expect(report.versions["@tensorflow/tfjs"]).toBe("4.22.0");
      expect(report.adapter).toBeTruthy();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("W6: one epoch of fit per step", () => {
  test("Kiln's fit: a one-batch epoch lands on the float64 loss, and the next epoch is lower", async () => {
    // 128 examples = one batch, so the first epoch's mean loss is the loss at the initial
    // weights, which reference.ts computes in float64.
    const opts: BenchOptions = {
      workloads: ["W6"],
      runners: ["kiln"],
      warmup: 0,
      steps: 1,
      chunk: 1,
      budgetS: 60,
      minSteps: 1,
      timeoutS: 120,
      stepsTimeoutS: 60,
      examples: 128,
      fixed: ["warmup", "steps", "chunk"],
      shaderCache: "cold",
    };
    const run = await runBench(opts);
    const [r] = run.results;
    expect(r?.status, `${r?.error}\n${r?.stderr ?? ""}`).toBe("ok");
    expect(r.reference).toBeDefined();
    expect(r.ms).toHaveLength(1);
    const report = buildReport(run, opts);
    expect(report.results[0].firstLossRelError!).toBeLessThanOrEqual(REFERENCE_TOLERANCE);
    expect(r.lastLoss!).toBeLessThan(r.firstLoss!);
    expect(toMarkdown(report)).toMatch(/### W6 .* examples overridden to 128[^]*\| ms\/epoch, median[^]*\| kiln \| [\d.]+ \(/);
  });
});

describe("W2 and W7: ONNX files", () => {
  const onnx = (workloads: BenchOptions["workloads"], runners: string[]): BenchOptions => ({
    workloads,
    runners,
    warmup: 0,
    steps: 1,
    chunk: 1,
    budgetS: 60,
    minSteps: 1,
    timeoutS: 300,
    stepsTimeoutS: 60,
    batch: 2,
    fixed: ["warmup", "steps", "chunk"],
    shaderCache: "cold",
  });

  test("ONNX Runtime runs Kiln's exported MLP to the float64 checksum", async () => {
    const opts = onnx(["W2"], ["onnxruntime"]);
    const report = buildReport(await runBench(opts), opts);
    const [r] = report.results;
    expect(r.status, `${r.error}\n${r.stderr ?? ""}`).toBe("ok");
    expect(r.firstLossRelError!).toBeLessThanOrEqual(REFERENCE_TOLERANCE);
    expect(toMarkdown(report)).toMatch(/\| onnxruntime \| [\d.]+ \(/);
  });

  test("W7: ONNX Runtime runs the CNN file; Kiln imports it where the importer is built, else says not built", async () => {
    const opts = onnx(["W7"], ["kiln", "onnxruntime"]);
    const report = buildReport(await runBench(opts), opts);
    const by = Object.fromEntries(report.results.map((r) => [r.runner, r]));
    expect(by.onnxruntime.status, `${by.onnxruntime.error}\n${by.onnxruntime.stderr ?? ""}`).toBe("ok");
    expect(by.onnxruntime.firstLoss).toBeGreaterThan(0);
    if (await loadImporter()) {
      expect(by.kiln.status, `${by.kiln.error}\n${by.kiln.stderr ?? ""}`).toBe("ok");
      expect(by.kiln.firstLossRelError!).toBeLessThanOrEqual(RUNNERS_TOLERANCE);
    } else {
      expect(by.kiln).toMatchObject({ status: "not built", error: expect.stringContaining("importer") });
      expect(toMarkdown(report)).toMatch(/\| kiln \| not built: Kiln's side of W7 needs the ONNX importer/);
    }
  });
});
