/** kiln explain: what the compiler made of a model — per pass the node count and time, the
 *  kernels in schedule order with their bindings, FLOPs and bytes moved (compiler/cost.ts), the
 *  forward values saved for the backward pass (compiler/saved-values.ts) and the memory figures
 *  (compiler/plan-memory.ts); optionally each kernel's WGSL and the graph as DOT or SVG. */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { writeFileAtomic } from "../formats/safetensors.ts";
import { didYouMean } from "../src/api/options.ts";
import { bytesOf, kernelCost, kernelGroups } from "../compiler/cost.ts";
import { compile } from "../compiler/pipeline.ts";
import { memoryReport } from "../compiler/plan-memory.ts";
import { forwardNodes, lossOutput, savedForBackward } from "../compiler/saved-values.ts";
import { GPU_TARGET, type Target } from "../compiler/target.ts";
import { formatConfig, type KernelGemm } from "../compiler/tuning.ts";
import type { Program } from "../compiler/program.ts";
import { toDot } from "../src/ir/dot.ts";
import { KilnError } from "../src/ir/errors.ts";
import { formatType, type DimEnv } from "../src/ir/shape.ts";
import type { Graph, ValueId } from "../src/ir/types.ts";
import { acquireGpu, releaseGpu } from "../runtime/device.ts";
import { tuningMode, tuningPath } from "../runtime/tuning-cache.ts";
import { loadModel } from "./model-file.ts";
import { toSvg } from "./render.ts";

export interface ExplainOptions {
  readonly dim: readonly string[];
  readonly wgsl?: boolean;
  readonly dot?: string;
  readonly svg?: string;
  /** false with --no-fuse. */
  readonly fuse: boolean;
}

/** NAME=SIZE pairs from the command line; with `graph`, each NAME must be one of its symbolic dims. */
export function parseDims(dims: readonly string[], graph?: Graph): Record<string, number> {
  const known = graph
    ? [...new Set(graph.nodes.flatMap((n) => n.type.shape.filter((d): d is string => typeof d === "string")))]
    : undefined;
  return Object.fromEntries(
    dims.map((d) => {
      const [k, v] = d.split("=");
      if (!k || !/^\d+$/.test(v ?? "")) throw new KilnError(`--dim wants NAME=SIZE, got "${d}"`);
      if (known && !known.includes(k))
        throw new KilnError(
          `--dim ${d}: the graph has no symbolic dim "${k}"${didYouMean(k, known)} (${known.length ? `its dims: ${known.join(", ")}` : "all its dims are static"})`,
        );
      return [k, Number(v)];
    }),
  );
}

const UNITS = ["", "k", "M", "G", "T"];
export function formatFlops(n: number): string {
  let u = 0;
  while (n >= 1000 && u < UNITS.length - 1) [n, u] = [n / 1000, u + 1];
  return `${u ? n.toFixed(2) : n} ${UNITS[u]}FLOP`;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const u = n < 2 ** 20 ? (["KiB", 2 ** 10] as const) : (["MiB", 2 ** 20] as const);
  return `${(n / u[1]).toFixed(2)} ${u[0]}`;
}

/** The device's target (with its tuned GEMM configurations, runtime/tuning-cache.ts) and binding
 *  limit, or the defaults (with why) when there is no adapter. */
async function deviceTarget(): Promise<{ target: Target; maxStorageBuffers: number; note: string; tuning: string }> {
  try {
    const gpu = await acquireGpu();
    const n = Object.keys(gpu.target.tuning?.configs ?? {}).length;
    const tuning =
      tuningMode() === "off"
        ? "off (KILN_TUNING=off): portable defaults"
        : n
          ? `${n} GEMM class${n === 1 ? "" : "es"} tuned for this adapter in ${tuningPath(gpu.adapterId)}`
          : `no tuning cache for this adapter (kiln tune <model> makes one): portable defaults`;
    return { target: gpu.target, maxStorageBuffers: gpu.limits.maxStorageBuffersPerShaderStage, note: gpu.adapter, tuning };
  } catch (e) {
    const why = (e instanceof Error ? e.message : String(e)).split(/\n|\. /)[0];
    return {
      target: GPU_TARGET,
      maxStorageBuffers: 8,
      note: `no GPU adapter (${why}); compiled for the default target`,
      tuning: "portable defaults (no adapter)",
    };
  } finally {
    await releaseGpu();
  }
}

function unboundDims(graph: Graph, env: DimEnv): string[] {
  const syms = new Set<string>();
  for (const n of graph.nodes) for (const d of n.type.shape) if (typeof d === "string" && env[d] === undefined) syms.add(d);
  return [...syms].sort();
}

/** `%3 x`: an input's name, or the outputs a value is. */
function valueName(graph: Graph, id: ValueId): string {
  const n = graph.nodes[id];
  const outs = graph.outputs.filter((o) => o.id === id).map((o) => o.name);
  return n.op === "input" ? `%${id} ${(n.attrs as { name: string }).name}` : outs.length ? `%${id} ${outs.join(",")}` : `%${id}`;
}

const row = (cells: readonly (string | number)[], widths: readonly number[]) =>
  cells
    .map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i])))
    .join("")
    .trimEnd();

function kernelsSection(program: Program, env: DimEnv, wgsl: boolean): string[] {
  const { graph } = program;
  const out = [`kernels: ${program.kernels.length}`];
  let [flops, read, written] = [0, 0, 0];
  for (const k of program.kernels) {
    const c = kernelCost(program, k, env);
    [flops, read, written] = [flops + c.flops, read + c.bytesRead, written + c.bytesWritten];
    if (wgsl) out.push(k.wgsl.trimEnd());
    else out.push(`  ${k.wgsl.slice(3, k.wgsl.indexOf("\n"))}`);
    const binds = k.bindings
      .map((b) =>
        b.value === k.inPlace
          ? `rw ${valueName(graph, b.value)} → ${valueName(graph, k.output)}`
          : `${b.value === (k.inPlace ?? k.output) ? "w" : "r"} ${valueName(graph, b.value)}`,
      )
      .join(" | ");
    out.push(
      `      ${formatFlops(c.flops)}, read ${formatBytes(c.bytesRead)}, write ${formatBytes(c.bytesWritten)}; binds ${binds}${k.uniforms.length ? `; uniforms ${k.uniforms.join(",")}` : ""}`,
    );
    if (k.gemm) out.push(`      gemm ${gemmLine(k.gemm)}`);
  }
  out.push(
    `  total: ${formatFlops(flops)}, read ${formatBytes(read)}, write ${formatBytes(written)} (${formatBytes(read + written)} moved)`,
  );
  return out;
}

/** "matmul/register-blocked/M128xN512xK1024/nn: rm16 rn8 lanes64 (tuning cache), grouped + subgroups". */
export const gemmLine = (g: KernelGemm): string =>
  `${g.class}: ${formatConfig(g.config)} (${g.source === "tuned" ? "tuning cache" : "default"})${g.form ? `, ${g.form}` : ""}`;

function savedSection(program: Program, env: DimEnv): string[] {
  const { graph } = program;
  const loss = lossOutput(graph);
  if (!loss) return [];
  const fwd = forwardNodes(graph);
  const backward = graph.nodes.filter((n) => !fwd[n.id]).length;
  const head = `saved for the backward pass (forward: the ${fwd.filter(Boolean).length} nodes output "${loss.name}" depends on; backward: the other ${backward})`;
  if (!backward) return [head, "  none: the graph has no backward part"];
  const saved = savedForBackward(program, env);
  const total = saved.reduce((s, v) => s + v.bytes, 0);
  return [
    head,
    ...saved.map(
      (v) =>
        `  ${valueName(graph, v.value).padEnd(12)}${formatType(graph.nodes[v.value].type).padEnd(20)}${formatBytes(v.bytes).padStart(12)}   read by ${v.readers.join(", ")}`,
    ),
    `  total: ${saved.length} value${saved.length === 1 ? "" : "s"}, ${formatBytes(total)}`,
  ];
}

function memorySection(program: Program, env: DimEnv): string[] {
  const all = program.buffers.reduce((s, b) => s + bytesOf(b.shape, env), 0);
  const roles = ["input", "const", "temp"].map((r) => `${program.buffers.filter((b) => b.role === r).length} ${r}`).join(", ");
  const plan = memoryReport(program, env);
  return [
    "memory",
    `  every buffer its own:   ${formatBytes(all)} (${program.buffers.length} buffers: ${roles})`,
    `  arena (temporaries and non-resident inputs; state and constants keep their own buffers):`,
    `    planned ${formatBytes(plan.arenaBytes)} in ${plan.arenas.length} arena(s), naive ${formatBytes(plan.naiveBytes)}, lower bound ${formatBytes(plan.lowerBound)}`,
  ];
}

export async function explain(file: string, opts: ExplainOptions): Promise<void> {
  const model = await loadModel(file);
  const env: DimEnv = { ...model.dims, ...parseDims(opts.dim, model.graph) };
  const dev = await deviceTarget();
  const program = compile(model.graph, {
    target: dev.target,
    maxStorageBuffers: dev.maxStorageBuffers,
    state: model.state,
    fuse: opts.fuse,
    dims: env,
  });
  const unbound = unboundDims(program.graph, env);
  if (unbound.length)
    throw new KilnError(
      `explain: bind the symbolic dim${unbound.length > 1 ? "s" : ""} ${unbound.join(", ")} for the figures, e.g. --dim ${unbound[0]}=8`,
    );

  const nameWidth = Math.max(40, ...program.stats.map((st) => st.pass.length + 4));
  const lines = [
    `model:  ${file} (${model.graph.nodes.length} nodes; outputs ${model.graph.outputs.map((o) => o.name).join(", ")})`,
    `target: ${dev.target.name}${dev.target.features.length ? ` with ${dev.target.features.join(", ")}` : ""}, ${dev.maxStorageBuffers} storage buffers per kernel, fusion ${opts.fuse ? "on" : "off"} (${dev.note})`,
    `tuning: ${dev.tuning}`,
    ...(Object.keys(env).length
      ? [
          `dims:   ${Object.entries(env)
            .map(([k, v]) => `${k}=${v}`)
            .join(" ")}`,
        ]
      : []),
    "",
    row(["passes", "nodes", "ms"], [nameWidth, 8, 10]),
    ...program.stats.map((s) => row([`  ${s.pass}`, s.nodes, s.ms.toFixed(2)], [nameWidth, 8, 10])),
    "",
    ...kernelsSection(program, env, opts.wgsl ?? false),
    "",
    ...savedSection(program, env),
    "",
    ...memorySection(program, env),
  ];
  console.log(lines.join("\n"));

  if (opts.dot || opts.svg) {
    const dot = toDot(program.graph, { groups: kernelGroups(program), title: `${file}: ${program.kernels.length} kernels` });
    // The explanation is printed already: a file that cannot be written says so and loses nothing else.
    const write = (flag: string, path: string, text: string) => {
      try {
        mkdirSync(dirname(path), { recursive: true });
        writeFileAtomic(path, text);
      } catch (e) {
        throw new KilnError(`could not write ${flag} ${path}: ${(e as Error).message} (the explanation above is complete)`);
      }
    };
    if (opts.dot) write("--dot", opts.dot, dot);
    if (opts.svg) write("--svg", opts.svg, await toSvg(dot));
    console.log(`\nwrote ${[opts.dot, opts.svg].filter(Boolean).join(", ")} (the compiled graph, clustered by kernel)`);
  }
}
