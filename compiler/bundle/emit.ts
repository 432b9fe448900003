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
import { inputNodes } from "../../src/ir/bind.ts";
import { KilnError } from "../../src/ir/errors.ts";
import { bindShape, formatType } from "../../src/ir/shape.ts";
import type { Node, ValueId } from "../../src/ir/types.ts";
import { DEFAULT_PLAN, planFor } from "../plan-memory.ts";
import { inPlaceOutputs, type Kernel, type Program } from "../program.ts";
import { generateLoader } from "./loader.ts";
import {
  FORMAT,
  validateManifest,
  type BufferData,
  type KernelData,
  type Manifest,
  type ValueData,
} from "../../formats/bundle-manifest.ts";

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

/** A file-name-safe word for what a kernel computes (Kernel.what, as its header says:
 *  "fused[matmul, add, relu]" → "matmul-add-relu"); long chains keep their first four ops. */
function kernelWord(program: Program, k: Kernel): string {
  const ops = k.what
    ? k.what
        .replace(/^fused\[|\]$/g, "")
        .split(/[^A-Za-z0-9_]+/)
        .filter(Boolean)
    : [program.graph.nodes[k.output].op];
  return [...ops.slice(0, 4), ...(ops.length > 4 ? ["etc"] : [])].join("-").replace(/_/g, "-");
}

export function emitBundle(program: Program, opts: EmitOptions): BundleFiles {
  const { graph } = program;
  const dims = program.dims ?? {};
  const symbols = new Set(program.buffers.flatMap((b) => b.shape.filter((d): d is string => typeof d === "string")));
  for (const s of symbols)
    if (dims[s] === undefined) throw new KilnError(`build: symbolic dim ${s} needs a declared bound (--batch, or dims: { ${s}: n })`);
  if (!program.arena) throw new KilnError("build: bundles need the planned arena (compile with plan: true)");
  // The pipeline's plan (made at the declared dims), as the runtime uses it.
  const plan = planFor(program, dims, DEFAULT_PLAN);
  const state = new Map(program.state.map((s) => [s.input, s]));
  const inPlace = inPlaceOutputs(program);

  const buffers: BufferData[] = plan.arenas.map((bytes, i) => ({ label: `arena ${i}`, bytes, kind: "arena" as const }));
  const stateBuffer = new Map<string, number>();
  for (const n of inputNodes(graph)) {
    if (!state.has(n.attrs.name)) continue;
    stateBuffer.set(n.attrs.name, buffers.length);
    buffers.push({
      label: `state ${n.attrs.name}`,
      bytes: bindShape(n.type.shape, {}).reduce((a, d) => a * d, 4),
      kind: "state",
      state: n.attrs.name,
    });
  }
  // Where each value lives: as runtime/execute.ts allocates (arena placements, in-place outputs
  // in their input's memory, resident and constant buffers of their own).
  const at = new Map<ValueId, { buffer: number; offset: number }>();
  for (const p of plan.placements) at.set(p.value, { buffer: p.arena, offset: p.offset });
  for (const b of program.buffers) {
    if (at.has(b.value)) continue;
    const n = graph.nodes[b.value];
    const into = inPlace.get(b.value);
    const of = into === undefined ? n : graph.nodes[into];
    const resident = of.op === "input" ? stateBuffer.get((of as Node<"input">).attrs.name) : undefined;
    if (resident !== undefined) at.set(b.value, { buffer: resident, offset: 0 });
    else if (into !== undefined) at.set(b.value, at.get(into)!);
    else {
      const bytes = bindShape(b.shape, dims).reduce((a, d) => a * d, 4);
      const data = b.role === "const" ? ((n as Node<"const">).attrs.value as readonly number[]) : undefined;
      at.set(b.value, { buffer: buffers.length, offset: 0 });
      buffers.push({
        label: `v${b.value}`,
        bytes,
        kind: data ? "const" : "own",
        ...(data ? { data: [...data], dtype: n.type.dtype } : {}),
      });
    }
  }
  const values: ValueData[] = program.buffers.map((b) => ({ id: b.value, ...at.get(b.value)!, dtype: b.dtype, shape: [...b.shape] }));

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
  const kernels: KernelData[] = program.kernels.map((k, i) => {
    const file = `kernels/${k.name}-${kernelWord(program, k)}.wgsl`;
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
    ];
    files.set(file, `${head.join("\n")}\n${k.wgsl.endsWith("\n") ? k.wgsl : `${k.wgsl}\n`}`);
    return {
      name: k.name,
      file,
      bindings: k.bindings.map((b) => ({ value: b.value, access: b.access })),
      uniforms: [...k.uniforms],
      dispatch:
        d.kind === "linear"
          ? { kind: "linear", total: sizeData(d.total), perGroup: d.perGroup }
          : { kind: "grid", x: count(d.x), y: count(d.y), z: count(d.z) },
    };
  });

  const valueIds = new Set(values.map((v) => v.id));
  const updates = new Set(program.state.flatMap((s) => s.output ?? []));
  const manifest: Manifest = {
    format: FORMAT,
    name: opts.name,
    mode: opts.mode,
    dims: Object.fromEntries([...symbols].sort().map((s) => [s, dims[s]])),
    inputs: inputNodes(graph)
      .filter((n) => !state.has(n.attrs.name))
      .map((n) => ({ name: n.attrs.name, dtype: n.type.dtype, shape: [...n.type.shape], value: valueIds.has(n.id) ? n.id : null })),
    outputs: graph.outputs
      .filter((o) => !updates.has(o.name))
      .map((o) => {
        if (!valueIds.has(o.id)) throw new KilnError(`build: output "${o.name}" has no buffer`);
        return { name: o.name, dtype: graph.nodes[o.id].type.dtype, shape: [...graph.nodes[o.id].type.shape], value: o.id };
      }),
    state: inputNodes(graph)
      .filter((n) => state.has(n.attrs.name))
      .map((n) => {
        const out = state.get(n.attrs.name)!.output;
        return {
          name: n.attrs.name,
          dtype: n.type.dtype,
          shape: [...n.type.shape],
          buffer: stateBuffer.get(n.attrs.name)!,
          update: out === undefined ? null : graph.outputs.find((o) => o.name === out)!.id,
        };
      }),
    buffers,
    values,
    kernels,
    weights: { file: "weights.safetensors", bytes: opts.weights.length, sha256: createHash("sha256").update(opts.weights).digest("hex") },
    compiler: { target: opts.target, fuse: opts.fuse, passes: program.stats.map((s) => s.pass) },
  };
  validateManifest(JSON.parse(JSON.stringify(manifest)));
  const loader = generateLoader(manifest);
  files.set("manifest.json", `${readableJson(manifest)}\n`);
  files.set("weights.safetensors", opts.weights);
  files.set("loader.ts", loader.ts);
  files.set("loader.js", loader.js);
  return files;
}

const sizeData = (s: { k: number; syms: readonly string[] }) => ({ k: s.k, syms: [...s.syms] });
const count = (c: { size: { k: number; syms: readonly string[] }; per: number }) => ({ size: sizeData(c.size), per: c.per });
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
