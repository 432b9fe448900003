/** The device limits that static shapes can exceed, checked where the shapes are known: at
 *  compile time for static shapes and declared dims (the pipeline's "check-limits" stage), and
 *  by the runtime with the same function for the dims it meets (open symbolic dims). Each
 *  message names the op, its shape and the user's line:
 *      relu %13 @ model.ts:8: output f32[64,224,224,64] of k4 = conv2d[add, relu] is 784 MiB, over the device's 128 MiB storage binding limit
 *      matmul %2 @ attn.ts:5: kernel k0 needs 1×1×70000 workgroups, over the device's 65535 per dimension */
import { describeNode, KilnError } from "../src/ir/errors.ts";
import { bindShape, formatType, type DimEnv } from "../src/ir/shape.ts";
import type { Graph, ValueId } from "../src/ir/types.ts";
import { dispatchCounts } from "../formats/bundle-manifest.ts";
import type { Program } from "./program.ts";

export interface DeviceLimits {
  /** The most bytes one storage binding may cover: a value larger than this cannot be bound. */
  readonly maxStorageBufferBindingSize: number;
  /** The most bytes one buffer may hold: an arena is at most this (../plan-memory.ts). */
  readonly maxBufferSize: number;
  readonly maxComputeWorkgroupsPerDimension: number;
}

/** WebGPU's defaults, which every device meets (lavapipe allows 4 GiB buffers, 128 MiB bindings). */
export const DEFAULT_LIMITS: DeviceLimits = {
  maxStorageBufferBindingSize: 128 * 2 ** 20,
  maxBufferSize: 256 * 2 ** 20,
  maxComputeWorkgroupsPerDimension: 65535,
};

/** The limits a device reports, as the compiler uses them. */
export const limitsOf = (l: DeviceLimits): DeviceLimits => ({
  maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
  maxBufferSize: l.maxBufferSize,
  maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
});

/** The dispatch rule, shared with the executor (formats/bundle-manifest.ts). */
export { dispatchCounts };

/** Throw a KilnError naming the first value or kernel of `program` that passes `limits` at `env`
 *  (every symbolic dim of the program bound). */
export function checkLimits(program: Program, env: DimEnv, limits: DeviceLimits): void {
  const { graph } = program;
  const at = Object.keys(env).length ? ` with ${JSON.stringify(env)}` : "";
  for (const b of program.buffers) {
    const n = graph.nodes[b.value];
    const bytes = bindShape(b.shape, env).reduce((a, d) => a * d, 4);
    const limit = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
    if (bytes > limit) {
      const which = limit === limits.maxBufferSize ? "buffer size" : "storage binding";
      // A fused kernel's value is named by its root, and the kernel says what computes it.
      const k = program.kernels.find((k) => k.output === b.value && k.what !== n.op);
      const by = k ? ` of ${k.name} = ${k.what}` : "";
      throw new KilnError(
        `${value(graph, b.value)} ${formatType(n.type)}${at}${by} is ${mib(bytes)}, over the device's ${mib(limit)} ${which} limit`,
      );
    }
  }
  for (const k of program.kernels) {
    const c = dispatchCounts(k.dispatch, env, limits.maxComputeWorkgroupsPerDimension);
    if (c.some((x) => x > limits.maxComputeWorkgroupsPerDimension)) {
      const n = graph.nodes[k.output];
      throw new KilnError(
        `${site(graph, k.output)}: kernel ${k.name} (${k.what}) for ${formatType(n.type)}${at} needs ${c.join("×")} workgroups, over the device's ${limits.maxComputeWorkgroupsPerDimension} per dimension`,
      );
    }
  }
}

const site = (g: Graph, v: ValueId): string => {
  const n = g.nodes[v];
  return describeNode(n.op, n.id, n.site);
};

/** The value's head: `input "x" %0 @ site:`, `const %3 @ site:`, or an op's `conv2d %2 @ site: output`. */
function value(g: Graph, v: ValueId): string {
  const n = g.nodes[v];
  if (n.op === "input") return `input "${(n.attrs as { name: string }).name}" %${n.id}${n.site ? ` @ ${n.site}` : ""}:`;
  return n.op === "const" ? `${site(g, v)}:` : `${site(g, v)}: output`;
}

/** Bytes as MiB, to one decimal below 100 ("784 MiB", "24.5 MiB"). */
export function mib(bytes: number): string {
  const m = bytes / 2 ** 20;
  return `${m >= 100 ? Math.round(m) : Number(m.toFixed(1))} MiB`;
}
