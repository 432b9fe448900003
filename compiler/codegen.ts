/** codegen: graph → kernels and buffers (a Program).
 *
 *  Which values live in memory: graph inputs and constant data, graph outputs, and the result
 *  of every elementwise op and every op with a kernel of its own. Index ops (movement, iota,
 *  random, gather, scalar constants) never get a buffer or a copy kernel: they are inlined into
 *  each consumer's loads as index arithmetic.
 *      %3 = permute %1 {perm=[1,0]};  %4 = add %3, %2
 *        → k0 = fused[permute, add]: v4[i] = v1[c1 * R + c0] + v2[i]
 *  Fusion (./fuse.ts) decides which nodes are inlined, the storage-binding limit included (it
 *  stores values, chosen by cost, until every kernel fits); codegen writes that plan as it is:
 *      plan → k0 … kn, each binding ≤ maxStorageBuffers, else an internal error naming the kernel
 *  A kernel whose root is elementwise and which inlines a GEMM (an epilogue) is written by the
 *  GEMM's generator, storing the root:
 *      %7 = matmul %0, %1;  %8 = add %7, %2;  %9 = relu %8   →  k0 = fused[matmul, add, relu]
 *
 *  In-place updates (`inPlace`: update output → resident input): once the schedule is fixed, an
 *  update's kernel is written again storing into the input's buffer when that is safe — no
 *  kernel after it binds the input, no other kernel binds the output, the input is not read back
 *  as an output, and the kernel builder saw every load of the input at the element the store
 *  writes (never broadcast, permuted or in a GEMM/reduction loop). Otherwise the kernel stays as
 *  it was and the runtime copies the output into the input after the run.
 *      k7 = fused[permute, matmul, mul, sub]: v3[sm * 16u + sn] = v3[(sm * 16u + sn)] - 0.1 * acc */
import { describeNode, KilnError } from "../src/ir/errors.ts";
import { numel, sizeEq } from "../src/ir/shape.ts";
import type { Graph, Node, ValueId } from "../src/ir/types.ts";
import { lowering } from "../src/ops/table.ts";
import { inlined, planBuffers } from "./fuse.ts";
import type { BufferSpec, Kernel, Program } from "./program.ts";
import { GPU_TARGET, type Target } from "./target.ts";
import { KernelBuilder, storageType } from "./wgsl/kernel-builder.ts";
import { elementwiseKernel, KERNELS } from "./wgsl/kernels/index.ts";

export interface CodegenOptions {
  /** Storage buffers a kernel may bind (WebGPU's default and lavapipe's device limit: 8). */
  readonly maxStorageBuffers: number;
  /** Which kernel variants to write (./target.ts). */
  readonly target: Target;
  /** Fuse elementwise chains into their consumers (./fuse.ts); default true. */
  readonly fuse?: boolean;
  /** The fusion plan (./fuse.ts planBuffers), when the caller made it already. */
  readonly buffers?: ReadonlySet<ValueId>;
  /** Resident-state updates to write in place where safe: update output → resident input. */
  readonly inPlace?: ReadonlyMap<ValueId, ValueId>;
  /** Write a kernel's output over an input that dies there, where safe (`reuseInPlace`);
   *  default false (compile turns it on with CompileOptions.inPlace). */
  readonly reuse?: boolean;
  /** The kernels' order, as roots (./schedule.ts); default: graph order. */
  readonly order?: readonly ValueId[];
  /** The resident inputs, which reuse must never overwrite. Without it reuse takes temporaries
   *  only, never a graph input. */
  readonly resident?: ReadonlySet<ValueId>;
}

export const DEFAULT_CODEGEN: CodegenOptions = { maxStorageBuffers: 8, target: GPU_TARGET };

export function codegen(graph: Graph, opts: CodegenOptions = DEFAULT_CODEGEN): Program {
  const materialized = new Set(
    opts.buffers ?? planBuffers(graph, { fuse: opts.fuse ?? true, maxStorageBuffers: opts.maxStorageBuffers, target: opts.target }),
  );
  const kernels: Kernel[] = [];
  for (const n of opts.order?.map((id) => graph.nodes[id]) ?? graph.nodes) {
    if (!materialized.has(n.id) || lowering(n).kind === "buffer") continue;
    const k = generate(graph, n, inlined(graph, n, materialized), `k${kernels.length}`, opts.target);
    if (k.bindings.length > opts.maxStorageBuffers) {
      // ./fuse.ts fits every kernel to the limit: reaching here is a compiler bug, or a plan
      // (opts.buffers) made for a larger limit than this one.
      throw new KilnError(
        `internal: ${k.name} for ${describeNode(n.op, n.id, n.site)} binds ${k.bindings.length} storage buffers, past the limit of ${opts.maxStorageBuffers} that the fusion plan was made to fit`,
      );
    }
    kernels.push(k);
  }
  for (const [o, w] of opts.inPlace ?? []) updateInPlace(graph, kernels, materialized, o, w, opts.target);
  if (opts.reuse) reuseInPlace(graph, kernels, materialized, opts.target, opts.resident);
  return { graph, kernels, buffers: buffers(graph, materialized), state: [], stats: [] };
}

/** Rewrite the kernel computing `o` to store into `w`'s buffer, if that is safe (see the header). */
function updateInPlace(graph: Graph, kernels: Kernel[], materialized: ReadonlySet<ValueId>, o: ValueId, w: ValueId, target: Target): void {
  const i = kernels.findIndex((k) => k.output === o);
  if (i < 0 || o === w || kernels[i].inPlace !== undefined) return;
  const binds = (k: Kernel, v: ValueId) => k.bindings.some((b) => b.value === v);
  if (kernels.some((k, j) => j > i && binds(k, w))) return; // a later kernel reads the old value
  if (kernels.some((k, j) => j !== i && binds(k, o))) return; // the update is read as a value
  if (graph.outputs.some((x) => x.id === w)) return; // read back as this run's input value
  const n = graph.nodes[o];
  const k = generate(graph, n, inlined(graph, n, materialized), kernels[i].name, target, w);
  if (k) kernels[i] = k;
}

/** In-place reuse, after the resident updates: each kernel in turn whose output is a temporary
 *  is written storing into an input that dies there — its last reader, not a graph output, a
 *  temporary or (given `resident`) a non-resident input, the same storage type and element count
 *  — when the kernel builder saw every load of it at the element the store writes. The output
 *  then lives in that input's memory (compiler/plan-memory.ts places the two as one value);
 *  chains follow, each step over the last:  k0: v1 = exp(v0) → v0;  k1: v2 = neg(v1) → v0. */
function reuseInPlace(
  graph: Graph,
  kernels: Kernel[],
  materialized: ReadonlySet<ValueId>,
  target: Target,
  resident?: ReadonlySet<ValueId>,
): void {
  const last = new Map<ValueId, number>();
  kernels.forEach((k, i) => k.bindings.forEach((b) => last.set(b.value, i)));
  const outputs = new Set(graph.outputs.map((o) => o.id));
  const dying = (w: ValueId, i: number): boolean => {
    const n = graph.nodes[w];
    const temp = n.op !== "input" && lowering(n).kind !== "buffer";
    return last.get(w) === i && !outputs.has(w) && (temp || (n.op === "input" && resident !== undefined && !resident.has(w)));
  };
  kernels.forEach((k, i) => {
    const n = graph.nodes[k.output];
    if (k.inPlace !== undefined || n.op === "input" || lowering(n).kind === "buffer") return;
    for (const b of k.bindings) {
      const w = graph.nodes[b.value];
      if (
        w.id === n.id ||
        !dying(w.id, i) ||
        storageType(w.type.dtype) !== storageType(n.type.dtype) ||
        !sizeEq(numel(w.type.shape), numel(n.type.shape))
      )
        continue;
      const alias = generate(graph, n, inlined(graph, n, materialized), k.name, target, w.id);
      if (alias) return void (kernels[i] = alias);
    }
  });
}

/** The kernel writing `n`; with `alias`, storing into that input instead, or undefined where
 *  the kernel reads it at an element other than the one it writes. */
function generate(graph: Graph, n: Node, inline: Set<ValueId>, name: string, target: Target): Kernel;
function generate(graph: Graph, n: Node, inline: Set<ValueId>, name: string, target: Target, alias: ValueId): Kernel | undefined;
function generate(graph: Graph, n: Node, inline: Set<ValueId>, name: string, target: Target, alias?: ValueId): Kernel | undefined {
  const gemm = gemmOf(graph, n, inline);
  const kb = new KernelBuilder(graph, name, n.id, inline, target, gemm, alias);
  const k = write(kb, graph, n, inline, gemm);
  return alias === undefined || kb.aliasSafe ? k : undefined;
}

function write(kb: KernelBuilder, graph: Graph, n: Node, inline: Set<ValueId>, gemm: ValueId | undefined): Kernel {
  const ops = [...inline]
    .sort((a, b) => a - b)
    .map((i) => graph.nodes[i].op)
    .filter((op) => op !== "const");
  const low = lowering(n);
  if (low.kind === "kernel") {
    const what = ops.length ? `${n.op}[${ops.join(", ")}]` : n.op;
    return KERNELS[low.kernel](kb, what);
  }
  const what = ops.length > 1 ? `fused[${ops.join(", ")}]` : (ops[0] ?? n.op);
  const epi = gemm === undefined ? undefined : lowering(graph.nodes[gemm]);
  return epi?.kind === "kernel" ? KERNELS[epi.kernel](kb, what) : elementwiseKernel(kb, what);
}

/** The GEMM whose epilogue an elementwise root is (./fuse.ts), if any: an inlined kernel op. */
function gemmOf(graph: Graph, root: Node, inline: ReadonlySet<ValueId>): ValueId | undefined {
  if (lowering(root).kind === "kernel") return undefined;
  const ks = [...inline].filter((id) => lowering(graph.nodes[id]).kind === "kernel");
  if (ks.length > 1) throw new Error(`${describeNode(root.op, root.id, root.site)}: inlines ${ks.length} kernel ops`);
  return ks[0];
}

function buffers(graph: Graph, materialized: ReadonlySet<ValueId>): BufferSpec[] {
  return [...materialized]
    .sort((a, b) => a - b)
    .map((id) => {
      const n = graph.nodes[id];
      const role = n.op === "input" ? "input" : lowering(n).kind === "buffer" ? "const" : "temp";
      return { value: id, dtype: n.type.dtype, shape: n.type.shape, role };
    });
}
