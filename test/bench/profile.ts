/** `npx tsx test/bench/profile.ts`: where a bench workload's time goes in Kiln, kernel by kernel.
 *    npx tsx test/bench/profile.ts --workloads W1,W2 --rounds 5
 *    npx tsx test/bench/profile.ts --workloads W3 --cold      a fresh, empty Mesa shader cache (W4)
 *  For each workload (built as runners/kiln.ts builds it, weights and batch resident):
 *    compile  Kiln's passes, then loading (createShaderModule and pipelines, Tint and the
 *             driver's front end), then each kernel's first dispatch alone: on lavapipe that is
 *             where llvmpipe JIT-compiles it (a kernel sharing another's pipeline costs nothing);
 *    kernels  each kernel alone, one submission each, waited for, and all of them in one pass,
 *             as a step dispatches them (medians of the rounds after the first);
 *    step     Executable.run as the bench times it (the loss read back), and the cores the
 *             process kept busy meanwhile (the GPU's threads are this process's on lavapipe).
 *  Step − pass is what a step spends outside its kernels: uploads, encoding, submission, the
 *  readback's copy and map. Times are wall clock on a shared machine: compare within one run. */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { GraphBuilder } from "../../src/api/builder.ts";
import type { Graph } from "../../src/ir/types.ts";
import { compile } from "../../compiler/pipeline.ts";
import { limitsOf } from "../../compiler/limits.ts";
import { acquireGpu, releaseGpu } from "../../runtime/device.ts";
import { Executable } from "../../runtime/execute.ts";
import { buildStep, lenet, mlp } from "./kiln-graphs.ts";
import { batchFor, matmulOperands, paramsFor, WORKLOADS, type HostArray, type WorkloadId } from "./workloads.ts";

const opts = new Command("profile")
  .option("--workloads <list>", "comma-separated: W1, W2, W3, W5", "W1,W2")
  .option("--rounds <n>", "timed rounds, each of every kernel alone, the whole pass and a step", "5")
  .option("--cold", "a fresh, empty MESA_SHADER_CACHE_DIR (the JIT of every kernel shows)")
  .parse()
  .opts<{ workloads: string; rounds: string; cold?: boolean }>();
if (opts.cold) process.env.MESA_SHADER_CACHE_DIR = mkdtempSync(join(tmpdir(), "kiln-profile-mesa-"));
const rounds = Math.max(1, Number(opts.rounds));

const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const ms = (x: number) => (x < 10 ? x.toFixed(2) : x.toFixed(1));
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** The workload's graph, which inputs are resident, and their values. */
function workload(id: WorkloadId): { graph: Graph; state: Record<string, string | null>; values: Record<string, HostArray> } {
  const spec = WORKLOADS[id];
  const values: Record<string, HostArray> = {};
  if (id === "W5") {
    const { a, b } = matmulOperands(spec);
    const g = new GraphBuilder();
    const graph = g.build({ out: g.input("x", "f32", a.shape).matmul(g.input("b", "f32", b.shape)) });
    return { graph, state: { x: null, b: null }, values: { x: a, b } };
  }
  if (spec.kind !== "train" && spec.kind !== "forward") throw new Error(`profile: ${id} is not a train or forward step`);
  const data = batchFor(spec);
  values.x = data.x;
  if (spec.kind === "train") values.y = data.onehot;
  for (const { name, value } of paramsFor(spec)) values[name] = value;
  return { ...buildStep(spec, id === "W3" ? lenet : mlp, values), values };
}

async function profile(id: WorkloadId): Promise<string[]> {
  const gpu = await acquireGpu();
  const { graph, state, values } = workload(id);
  let [t, c] = [performance.now(), cpu()];
  const lap = () => {
    const r = { wall: performance.now() - t, cpu: cpu() - c };
    [t, c] = [performance.now(), cpu()];
    return r;
  };
  const program = compile(graph, {
    state,
    target: gpu.target,
    maxStorageBuffers: gpu.limits.maxStorageBuffersPerShaderStage,
    limits: limitsOf(gpu.limits),
  });
  const passes = lap();
  const exe = await Executable.load(program, gpu);
  const load = lap();
  for (const name of Object.keys(state)) await exe.write(name, values[name]);
  lap();
  // The first round alone: each kernel's first dispatch (the JIT). Then rounds of every kernel
  // alone, the whole pass and a step, interleaved, so that a change in the machine's load
  // shifts all three alike.
  const firsts = await exe.timeKernels({}, 1, cpu);
  const timed = lap();
  const first = firsts.kernels.reduce((s, k) => s + k[0], 0);
  const kernels = firsts.kernels.map((): number[] => []);
  const [all, steps, busy]: number[][] = [[], [], []];
  for (let r = 0; r < rounds; r++) {
    const round = await exe.timeKernels({}, 1);
    round.kernels.forEach((k, i) => kernels[i].push(k[0]));
    all.push(round.all[0]);
    // timeKernels changed the resident state: each step starts from the workload's values.
    for (const name of Object.keys(state)) await exe.write(name, values[name]);
    lap();
    await exe.run({}, ["out"]);
    const l = lap();
    steps.push(l.wall);
    busy.push(l.cpu / l.wall);
  }
  exe.dispose();
  await releaseGpu();

  const steady = kernels.map(median);
  const sum = steady.reduce((a, b) => a + b, 0);
  const pass = median(all);
  const step = median(steps);
  const order = steady.map((_, i) => i).sort((a, b) => steady[b] - steady[a]);
  const distinct = new Set(program.kernels.map((k) => k.key)).size;
  const spec = WORKLOADS[id];
  return [
    `## ${id}: ${spec.title}`,
    "",
    `${program.kernels.length} kernels (${distinct} distinct pipelines), 1 submission and 1 readback per step; shader cache ${opts.cold ? "cold" : "as found"}`,
    "",
    "| phase | wall ms | CPU ms |",
    "|---|---:|---:|",
    `| Kiln's passes (compile) | ${ms(passes.wall)} | ${ms(passes.cpu)} |`,
    `| load: shader modules and pipelines | ${ms(load.wall)} | ${ms(load.cpu)} |`,
    `| first dispatch of each kernel, alone (driver JIT), summed | — | ${ms(first)} |`,
    `| the first round (first dispatches and a whole pass) | ${ms(timed.wall)} | ${ms(timed.cpu)} |`,
    "",
    "| kernel | first: CPU ms | alone ms | % of kernels | |",
    "|---|---:|---:|---:|---|",
    ...order.map((i) => {
      const k = program.kernels[i];
      return `| ${k.name} | ${ms(firsts.kernels[i][0])} | ${ms(steady[i])} | ${((100 * steady[i]) / sum).toFixed(1)} | ${k.wgsl.slice(3, k.wgsl.indexOf("\n")).replace(/\|/g, "\\|")} |`;
    }),
    "",
    `kernels alone, summed: ${ms(sum)} ms; all in one pass: ${ms(pass)} ms; a step (Executable.run, loss read back): ${ms(step)} ms, ${median(busy).toFixed(2)} cores busy`,
    `outside the kernels (step − pass): ${ms(step - pass)} ms`,
    "",
  ];
}

const ids = opts.workloads.split(",").map((w) => w.trim()) as WorkloadId[];
for (const id of ids) {
  if (!(id in WORKLOADS)) throw new Error(`profile: unknown workload ${id}`);
  console.log((await profile(id)).join("\n"));
}
