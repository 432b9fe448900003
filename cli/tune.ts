/** kiln tune <model>: time each GEMM shape class of a model on this adapter and keep the fastest
 *  configuration in the tuning cache (runtime/autotune.ts, runtime/tuning-cache.ts); every later
 *  compile for this adapter — run, explain, the runtime's own, `kiln build --tuned` — uses it. */
import { limitsOf } from "../compiler/limits.ts";
import { compile } from "../compiler/pipeline.ts";
import { formatConfig } from "../compiler/tuning.ts";
import { KilnError } from "../src/ir/errors.ts";
import { tuneProgram } from "../runtime/autotune.ts";
import { acquireGpu, releaseGpu } from "../runtime/device.ts";
import { cacheDir, tuningPath } from "../runtime/tuning-cache.ts";
import { parseDims } from "./explain.ts";
import { loadModel } from "./model-file.ts";

export interface TuneCliOptions {
  readonly dim: readonly string[];
  /** Tune classes the cache already has too. */
  readonly retune?: boolean;
  /** Seconds a class may take (string from the command line). */
  readonly budget: string;
  readonly repeats: string;
}

export async function tuneCommand(file: string, opts: TuneCliOptions): Promise<void> {
  const [budget, repeats] = [Number(opts.budget), Number(opts.repeats)];
  if (!(budget >= 0)) throw new KilnError(`tune: --budget must be a number of seconds, got "${opts.budget}"`);
  if (!(Number.isSafeInteger(repeats) && repeats >= 1))
    throw new KilnError(`tune: --repeats must be a positive integer, got "${opts.repeats}"`);
  const model = await loadModel(file);
  const env = { ...model.dims, ...parseDims(opts.dim, model.graph) };
  const gpu = await acquireGpu();
  try {
    const program = compile(model.graph, {
      target: gpu.target,
      maxStorageBuffers: gpu.limits.maxStorageBuffersPerShaderStage,
      limits: limitsOf(gpu.limits),
      state: model.state,
      dims: env,
    });
    console.log(`adapter: ${gpu.adapter}, target ${gpu.target.name}; cache ${tuningPath(gpu.adapterId, cacheDir())}`);
    const results = await tuneProgram(gpu, program, {
      env,
      retune: opts.retune,
      budgetMs: budget * 1000,
      repeats,
      log: (l) => console.log(l),
    });
    if (!results.length)
      console.log(
        program.kernels.some((k) => k.gemm) ? "nothing to tune: every class is cached (--retune tunes again)" : "no GEMM kernels",
      );
    for (const r of results)
      console.log(
        `${r.class}: ${formatConfig(r.entry.config)}, ${r.entry.ms.toFixed(3)} ms vs ${r.entry.defaultMs.toFixed(3)} ms default (${(r.entry.defaultMs / r.entry.ms).toFixed(2)}×)`,
      );
  } finally {
    await releaseGpu();
  }
}
