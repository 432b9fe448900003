/** Ahead-of-time bundles: a compiled Program and its weights as a folder that runs wherever
 *  WebGPU exists (Node with the `webgpu` package, or a browser), with no part of Kiln inside.
 *
 *  `kiln build <model> --out <dir>` writes:
 *      <dir>/manifest.json        format "kiln-bundle/1": the symbolic dims and their bounds;
 *                                 inputs, outputs and resident state (names, dtypes, shapes);
 *                                 the GPU buffers (arenas planned at the bounds, state, constants)
 *                                 and where each value lives in them (buffer, offset); per kernel
 *                                 its WGSL file, bindings, dims uniform and workgroup counts as
 *                                 data over the symbolic dims; the weights file's size and SHA-256
 *      <dir>/kernels/k<i>-<ops>.wgsl  one kernel each, in dispatch order (k2-matmul-add-relu.wgsl),
 *                                 opening with a comment naming what each binding holds and
 *                                 how it is dispatched
 *      <dir>/weights.safetensors  the resident inputs (parameters; a training step's optimizer
 *                                 state too)
 *      <dir>/loader.ts, loader.js the generated loader (compiler/bundle/loader.ts): typed Inputs /
 *                                 Outputs, load(device, files) → run(inputs) (or step(batch) for
 *                                 a training bundle), weights(), dispose()
 *  The memory plan is made once, at the declared bounds (--batch), as the runtime does for a
 *  Program with declared dims: every offset is fixed and every bind group is built at load; a
 *  call writes only its inputs and, when the batch changes, the dims uniforms, then runs one
 *  compute pass. Nothing here touches the GPU or the file system: emitBundle returns the files
 *  and the caller (cli/build.ts) writes them atomically. */
import { createHash } from "node:crypto";
import { KilnError } from "../../src/ir/errors.ts";
import { formatType } from "../../src/ir/shape.ts";
import type { Node, ValueId } from "../../src/ir/types.ts";
import { DEFAULT_PLAN, planFor } from "../plan-memory.ts";
import { requiredFeatures, type Program } from "../program.ts";
import { formatConfig } from "../tuning.ts";
import { generateLoader } from "./loader.ts";
import { programPlan } from "./plan.ts";
import { FORMAT, integrityFiles, integrityInput, validateManifest, type Manifest } from "../../formats/bundle-manifest.ts";

export interface EmitOptions {
  readonly name: string;
  readonly mode: "inference" | "train";
  /** The weights file's bytes (safetensors holding every resident input). */
  readonly weights: Uint8Array;
  readonly target: string;
  readonly fuse: boolean;
}

/** Bundle files by relative path. */
export type BundleFiles = Map<string, string | Uint8Array>;

export function emitBundle(program: Program, opts: EmitOptions): BundleFiles {
  const { graph } = program;
  const dims = program.dims ?? {};
  const symbols = new Set(program.buffers.flatMap((b) => b.shape.filter((d): d is string => typeof d === "string")));
  for (const s of symbols)
    if (dims[s] === undefined) throw new KilnError(`build: symbolic dim ${s} needs a declared bound (--batch, or dims: { ${s}: n })`);
  if (!program.arena) throw new KilnError("build: bundles need the planned arena (compile with plan: true)");
  const { kernels } = program;
  // The pipeline's plan (made at the declared dims), as the runtime uses it.
  const plan = programPlan(program, {
    kernels,
    memory: planFor(program, dims, DEFAULT_PLAN),
    dims,
    outputs: "results",
    constData: true,
  });
  const state = new Set(program.state.map((s) => s.input));
  const files: BundleFiles = new Map();
  const describe = (v: ValueId) => {
    const n = graph.nodes[v];
    const name =
      n.op === "input" ? ` "${(n as Node<"input">).attrs.name}"${state.has((n as Node<"input">).attrs.name) ? " (resident)" : ""}` : "";
    const out = graph.outputs
      .filter((o) => o.id === v)
      .map((o) => ` → output "${o.name}"`)
      .join("");
    return `%${v} ${n.op}${name}${out} ${formatType(n.type)}`;
  };
  kernels.forEach((k, i) => {
    const d = k.dispatch;
    const dispatch =
      d.kind === "linear"
        ? `linear, ceil(${fmtSize(d.total)} / ${d.perGroup}) workgroups`
        : `grid ${[d.x, d.y, d.z].map((c) => `ceil(${fmtSize(c.size)} / ${c.per})`).join(" × ")}`;
    const head = [
      `// ${opts.name}: kernel ${i + 1} of ${program.kernels.length} (${k.name}), dispatched ${dispatch}`,
      ...k.bindings.map((b, j) => `//   binding ${j} (${b.access}): ${describe(b.value)}`),
      ...(k.uniforms.length ? [`//   binding ${k.bindings.length} (uniform): dims ${k.uniforms.join(", ")}`] : []),
      ...(k.inPlace !== undefined ? [`//   writes %${k.output} in place over %${k.inPlace}`] : []),
      ...(k.gemm
        ? [
            `//   gemm ${k.gemm.class}: ${formatConfig(k.gemm.config)} (${k.gemm.source === "tuned" ? `tuned for ${k.gemm.tunedFor}` : "portable default"})`,
          ]
        : []),
    ];
    files.set(plan.kernels[i].file, `${head.join("\n")}\n${k.wgsl.endsWith("\n") ? k.wgsl : `${k.wgsl}\n`}`);
  });

  const features = requiredFeatures(program);
  const manifest: Manifest = {
    format: FORMAT,
    name: opts.name,
    mode: opts.mode,
    ...plan,
    dims: Object.fromEntries([...symbols].sort().map((s) => [s, dims[s]])),
    ...(features.length ? { features } : {}),
    weights: { file: "weights.safetensors", bytes: opts.weights.length, sha256: createHash("sha256").update(opts.weights).digest("hex") },
    compiler: { target: opts.target, fuse: opts.fuse, passes: program.stats.map((s) => s.pass), tuning: tuningRecord(kernels) },
  };
  validateManifest(JSON.parse(JSON.stringify(manifest)));
  const json = `${readableJson(manifest)}\n`;
  const bytes = (f: string) =>
    f === "manifest.json"
      ? new TextEncoder().encode(json)
      : f === "weights.safetensors"
        ? opts.weights
        : new TextEncoder().encode(files.get(f) as string);
  const integrity = createHash("sha256")
    .update(integrityInput(integrityFiles(manifest).map((f) => [f, bytes(f)] as const)))
    .digest("hex");
  const loader = generateLoader(manifest, integrity);
  files.set("manifest.json", json);
  files.set("weights.safetensors", opts.weights);
  files.set("loader.ts", loader.ts);
  files.set("loader.js", loader.js);
  return files;
}

/** Which adapter the GEMM kernels were tuned for, and each one's class and configuration. */
function tuningRecord(kernels: Program["kernels"]): NonNullable<Manifest["compiler"]["tuning"]> {
  const gemms = kernels.filter((k) => k.gemm);
  const tuned = [...new Set(gemms.flatMap((k) => (k.gemm!.source === "tuned" ? [k.gemm!.tunedFor ?? "unknown adapter"] : [])))];
  const kernelsOut = Object.fromEntries(
    gemms.map((k) => [k.name, `${k.gemm!.class}: ${formatConfig(k.gemm!.config)} (${k.gemm!.source === "tuned" ? "tuned" : "default"})`]),
  );
  return { tunedFor: tuned.length ? tuned.join("; ") : "portable default", kernels: kernelsOut };
}

const fmtSize = (s: { k: number; syms: readonly string[] }) => [...(s.k !== 1 || !s.syms.length ? [String(s.k)] : []), ...s.syms].join("·");

/** Indented JSON with arrays of numbers and strings (shapes, constant data) on one line. */
function readableJson(v: unknown, indent = ""): string {
  const inner = `${indent}  `;
  if (Array.isArray(v)) {
    if (v.every((x) => typeof x !== "object" || x === null)) return `[${v.map((x) => JSON.stringify(x)).join(", ")}]`;
    return `[\n${v.map((x) => inner + readableJson(x, inner)).join(",\n")}\n${indent}]`;
  }
  if (typeof v === "object" && v !== null) {
    const entries = Object.entries(v).filter(([, x]) => x !== undefined);
    if (!entries.length) return "{}";
    return `{\n${entries.map(([k, x]) => `${inner}${JSON.stringify(k)}: ${readableJson(x, inner)}`).join(",\n")}\n${indent}}`;
  }
  return JSON.stringify(v);
}
