/** The `kiln` command line (`npx kiln …`, via bin/kiln.js). One function per command;
 *  `cli()` only wires them to commander, so a new command is a function and three lines. */
import { Command } from "commander";
import { existsSync, readFileSync, statSync } from "node:fs";
import { extname } from "node:path";
import { VERSION } from "../src/version.ts";
import { limitsOf } from "../compiler/limits.ts";
import { compile } from "../compiler/pipeline.ts";
import { interpret } from "../src/interpret.ts";
import type { HostTensor } from "../src/ir/host.ts";
import { inputNodes } from "../src/ir/bind.ts";
import { KilnError } from "../src/ir/errors.ts";
import { parseGraph } from "../src/ir/parse.ts";
import { bindShape, formatType } from "../src/ir/shape.ts";
import { readSafetensors } from "../formats/safetensors.ts";
import { loadModel } from "./model-file.ts";
import type { DType } from "../src/ir/types.ts";
import { build } from "./build.ts";
import { exportCommand } from "./export.ts";
import { importCommand, importOnnxFile } from "./import.ts";
import { acquireGpu, releaseGpu, SETUP_HINT } from "../runtime/device.ts";
import { Executable } from "../runtime/execute.ts";
import { explain, parseDims } from "./explain.ts";
import { tuneCommand } from "./tune.ts";

/** The limits that decide how Kiln binds, sizes and dispatches kernels. */
const LIMITS = [
  "maxStorageBuffersPerShaderStage",
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeWorkgroupsPerDimension",
  "minStorageBufferOffsetAlignment",
] as const satisfies readonly (keyof GPUSupportedLimits)[];

/** kiln info: the adapter Dawn found and what it allows. */
async function info(): Promise<void> {
  try {
    const gpu = await acquireGpu();
    const width = 4 + Math.max(...LIMITS.map((k) => k.length));
    const row = (label: string, value: unknown) => console.log(`${label.padEnd(width)}${value}`);
    row("adapter", gpu.adapter);
    for (const k of LIMITS) row(`  ${k}`, gpu.limits[k]);
    row("features", [...gpu.adapterFeatures].sort().join(" ") || "(none)");
    row("  enabled", [...gpu.features].sort().join(" ") || "(none)");
    row("MESA_SHADER_CACHE_DIR", process.env.MESA_SHADER_CACHE_DIR ?? "(unset: Mesa's default)");
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    throw new Error(message.includes(SETUP_HINT) ? message : `${message}\n${SETUP_HINT}`);
  } finally {
    await releaseGpu();
  }
}

/** Seeded values for an input: f32 in [-1, 1), integers in [0, 10), bools 0/1. */
function sample(dtype: DType, n: number, seed: number): number[] {
  let s = seed >>> 0;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  return Array.from({ length: n }, () =>
    dtype === "f32" ? Math.fround(next() * 2 - 1) : dtype === "bool" ? Number(next() < 0.5) : Math.floor(next() * 10),
  );
}

/** kiln run: a model on the GPU, checked against the reference: its weights from a saved
 *  model's folder, an .onnx file's initializers or --weights, every other input seeded values. */
async function run(file: string, opts: { dim: string[]; seed: string; wgsl?: boolean; weights?: string }): Promise<void> {
  const onnx = extname(file) === ".onnx" && existsSync(file) ? importOnnxFile(file) : undefined;
  // Any other file that is not a module is read as text IR (the parser names the line of a bad one).
  const asText = existsSync(file) && !statSync(file).isDirectory() && ![".ts", ".mts", ".js", ".mjs"].includes(extname(file));
  const model = onnx ? { graph: onnx.graph } : asText ? { graph: parseGraph(readFileSync(file, "utf8")) } : await loadModel(file);
  const { graph } = model;
  const env = { ...("dims" in model ? model.dims : {}), ...parseDims(opts.dim, graph) };
  const weightsFile = opts.weights ?? ("weights" in model ? model.weights : undefined);
  if (weightsFile && !existsSync(weightsFile)) throw new KilnError(`--weights: no such file ${weightsFile}`);
  const weights: Record<string, HostTensor> = weightsFile ? readSafetensors(weightsFile).tensors : {};
  // An ONNX file's initializers are static inputs of the imported graph.
  for (const n of onnx ? inputNodes(graph) : [])
    if (n.attrs.name in onnx!.weights && !(n.attrs.name in weights))
      weights[n.attrs.name] = { shape: bindShape(n.type.shape, {}), data: onnx!.weights[n.attrs.name] };
  const inputs: Record<string, HostTensor> = {};
  const loaded: string[] = [];
  for (const [i, n] of inputNodes(graph).entries()) {
    const w = weights[n.attrs.name];
    if (w) {
      const want = n.type.shape;
      if (w.shape.length !== want.length || w.shape.some((d, a) => d !== want[a]))
        throw new KilnError(`${weightsFile ?? file}: ${n.attrs.name} is [${w.shape}], but the graph reads ${formatType(n.type)}`);
      inputs[n.attrs.name] = { shape: w.shape, data: w.data };
      loaded.push(n.attrs.name);
      continue;
    }
    const missing = n.type.shape.find((d) => typeof d === "string" && !(d in env));
    if (missing !== undefined) throw new KilnError(`input ${n.attrs.name} has the symbolic dim ${missing}: bind it, e.g. -d ${missing}=8`);
    const shape = bindShape(n.type.shape, env);
    inputs[n.attrs.name] = {
      shape,
      data: sample(
        n.type.dtype,
        shape.reduce((a, b) => a * b, 1),
        Number(opts.seed) + i,
      ),
    };
  }
  const gpu = await acquireGpu();
  try {
    const program = compile(graph, {
      target: gpu.target,
      maxStorageBuffers: gpu.limits.maxStorageBuffersPerShaderStage,
      limits: limitsOf(gpu.limits),
    });
    for (const k of program.kernels) console.log(opts.wgsl ? k.wgsl : k.wgsl.slice(0, k.wgsl.indexOf("\n")));
    const exe = await Executable.load(program, gpu);
    const out = await exe.run(inputs);
    const ref = interpret(graph, inputs);
    console.log(`adapter: ${exe.gpu.adapter}`);
    if (weightsFile)
      console.log(
        `weights from ${weightsFile}: ${loaded.length ? loaded.join(", ") : "none of the graph's inputs"}; seeded: ${
          Object.keys(inputs)
            .filter((k) => !loaded.includes(k))
            .join(", ") || "none"
        }`,
      );
    for (const [name, t] of Object.entries(out)) {
      let err = 0;
      t.data.forEach((v, i) => (err = Math.max(err, Math.abs(v - ref[name].data[i]))));
      console.log(
        `${name}: ${t.dtype}[${t.shape}] max |gpu − reference| = ${err.toExponential(2)}  first: ${Array.from(t.data.slice(0, 6)).join(", ")}`,
      );
    }
    exe.dispose();
  } finally {
    await releaseGpu();
  }
}

function cli(): Command {
  const program = new Command("kiln").description("Kiln: a compute-graph compiler for neural nets, WGSL on WebGPU").version(VERSION);
  program.command("info").description("show the WebGPU adapter, its limits and features").action(info);
  program
    .command("run <model>")
    .description(
      "run a model on the GPU and compare with the float64 reference: a saved-model folder (its weights are used), a .kir graph, an .onnx model (with its weights) or a module exporting a graph; inputs without weights get seeded values",
    )
    .option("-d, --dim <NAME=SIZE...>", "bind a symbolic dim (e.g. -d B=8)", [])
    .option("-w, --weights <file>", "a .safetensors file whose tensors feed the inputs of the same names (a saved folder's own by default)")
    .option("--seed <n>", "seed of the input values", "1")
    .option("--wgsl", "print each kernel's WGSL, not just its header")
    .action(run);
  program
    .command("explain <model>")
    .description(
      "show what the compiler made of a model (a saved-model folder, a .kir, or a module exporting a graph): passes, kernels with FLOPs and bytes, values saved for the backward pass, memory",
    )
    .option("-d, --dim <NAME=SIZE...>", "bind a symbolic dim (e.g. -d B=128)", [])
    .option("--wgsl", "print each kernel's WGSL, not just its header")
    .option("--dot <file>", "write the compiled graph as Graphviz DOT, clustered by kernel")
    .option("--svg <file>", "write the compiled graph as SVG (Graphviz in WebAssembly: no system install)")
    .option("--no-fuse", "compile without fusion, for comparison")
    .action(explain);
  program
    .command("tune <model>")
    .description(
      "time each GEMM shape class of a model (matmul, conv2d and its gradients) on this adapter over a few tile configurations and keep the fastest in the tuning cache ($KILN_CACHE_DIR, else ~/.cache/kiln), which later compiles for this adapter use",
    )
    .option("-d, --dim <NAME=SIZE...>", "bind a symbolic dim to time at (e.g. -d B=128)", [])
    .option("--retune", "tune classes the cache already has too")
    .option("--budget <seconds>", "time a class may take, shader compiles included; at least one round runs", "30")
    .option("--repeats <n>", "timed rounds a class (each candidate once a round, the median kept)", "5")
    .action(tuneCommand);
  program
    .command("build <model>")
    .description(
      "compile a model ahead of time into a standalone bundle (WGSL kernels, manifest, weights, typed loader) that runs wherever WebGPU exists: a saved-model folder, an .onnx file (--train with --loss and --optimizer fine-tunes it), or a module exporting { graph, state, dims?, weights }",
    )
    .requiredOption("-o, --out <dir>", "the bundle folder (replaced whole)")
    .option("-b, --batch <n>", "upper bound of the batch dim B: memory is planned for it, smaller batches run in it (default 32)")
    .option("--train", "bundle the training step (step(batch) updates the weights on the GPU) instead of inference")
    .option("--loss <name>", "an .onnx model's training loss (with --train), e.g. sparseCategoricalCrossEntropyFromLogits, mse")
    .option("--optimizer <name>", "an .onnx model's optimizer (with --train): sgd, momentum, nesterov, adagrad, adadelta, rmsprop, adam")
    .option("--lr <x>", "the optimizer's learning rate (default: Keras's for that optimizer)")
    .option("--trainable <names>", 'the .onnx weights to train, comma-separated; "fc/*" is a prefix (default: every f32 weight)')
    .option("--no-fuse", "compile without fusion")
    .option("--target <gpu|cpu>", "kernel variants: gpu (workgroup-tiled GEMM) or cpu (register-blocked, for software rasterizers)", "gpu")
    .option("--tuned", "use the GEMM configurations tuned for this machine's adapter (kiln tune); without it, the portable defaults")
    .option(
      "--precision <f32|mixed>",
      "mixed: activations stored as f16, f32 arithmetic and weights; the bundle then needs shader-f16",
      "f32",
    )
    .option(
      "--subgroups",
      "kernels may use WebGPU's subgroups feature (subgroup reductions and GEMMs); the bundle then needs a device with it",
    )
    .action(build);
  program
    .command("export <model>")
    .description(
      "write a model as ONNX (opset 17): a saved-model folder (weights as initializers), a module exporting { model, seed? } or { graph, weights? }, or a .kir graph",
    )
    .requiredOption("-o, --out <file>", "the .onnx file (written whole or not at all)")
    .action(exportCommand);
  program
    .command("import <model.onnx>")
    .description(
      "import an ONNX model as a saved-model folder (model.kir + weights.safetensors) for loadPredictor, explain, run and build; one input and one output are named x and y, a symbolic first dim of x B",
    )
    .requiredOption("-o, --out <dir>", "the saved-model folder")
    .action(importCommand);
  return program;
}

try {
  await cli().parseAsync();
} catch (e) {
  console.error(`kiln: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
}
