/** `kiln explain --wgsl` prints the WGSL the device compiles: every module the runtime hands to
 *  createShaderModule for the model appears, byte for byte, in explain's output, and nothing is
 *  compiled that explain did not print (kernels rewritten at load would fail this). */
import { afterEach, describe, expect, test, vi } from "vitest";
import { explain } from "../../cli/explain.ts";
import { loadModel } from "../../cli/model-file.ts";
import { acquireGpu } from "../../runtime/device.ts";
import { Executable } from "../../runtime/execute.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();

afterEach(() => vi.restoreAllMocks());

describe("kiln explain --wgsl", () => {
  test.each(["examples/models/mlp-train.ts", "examples/ir/affine-tanh.kir"])(
    "prints exactly what the device compiles: %s",
    async (file) => {
      const printed: string[] = [];
      vi.spyOn(console, "log").mockImplementation((s: unknown) => void printed.push(String(s)));
      await explain(file, { dim: file.endsWith(".kir") ? ["B=3"] : [], wgsl: true, fuse: true });
      vi.restoreAllMocks();
      const out = printed.join("\n");

      // The runtime loads the same model (explain releases its device: this is a fresh one, with
      // an empty pipeline cache) and every module it compiles is recorded.
      const gpu = await acquireGpu();
      const compiled: string[] = [];
      const create = gpu.device.createShaderModule.bind(gpu.device);
      gpu.device.createShaderModule = (d: GPUShaderModuleDescriptor) => (compiled.push(d.code), create(d));
      const model = await loadModel(file);
      const dims = file.endsWith(".kir") ? { B: 3 } : model.dims;
      const exe = await Executable.fromGraph(model.graph, { state: model.state, ...(dims ? { dims } : {}) });
      try {
        const keys = new Set(exe.program.kernels.map((k) => k.key));
        expect(compiled.length).toBe(keys.size);
        for (const code of compiled) {
          expect(code.startsWith("// k")).toBe(true);
          expect(out).toContain(code);
        }
        // And the other way round: each printed kernel is one the device compiled (or shares a
        // pipeline with one: the same key).
        const first = new Map<string, string>();
        for (const k of exe.program.kernels) if (!first.has(k.key)) first.set(k.key, k.wgsl);
        for (const k of exe.program.kernels) expect(compiled).toContain(first.get(k.key));
        expect(out.split("\n").filter((l) => /^\/\/ k\d+ = /.test(l))).toHaveLength(exe.program.kernels.length);
      } finally {
        exe.dispose();
      }
    },
  );
});
