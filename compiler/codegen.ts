/** codegen: graph → kernels and buffers (a Program).
 *
 *  Which values live in memory: graph inputs and constant data, graph outputs, and the result
 *  of every elementwise op and every op with a kernel of its own. Index ops (movement, iota,
 *  random, gather, scalar constants) never get a buffer or a copy kernel: they are inlined into
 *  each consumer's loads as index arithmetic.
 *      %3 = permute %1 {perm=[1,0]};  %4 = add %3, %2
 *        → k0 = fused[permute, add]: v4[i] = v1[c1 * R + c0] + v2[i]
 *  A kernel whose storage bindings would pass the device limit materializes the inlined node
 *  reading the most buffers and tries again, so the limit shapes the plan instead of failing.
 *  Fusion (./fuse.ts) only changes which nodes are inlined. A kernel whose root is elementwise
 *  and which inlines a GEMM (an epilogue) is written by the GEMM's generator, storing the root:
 *      %7 = matmul %0, %1;  %8 = add %7, %2;  %9 = relu %8   →  k0 = fused[matmul, add, relu]
 *  Past the binding limit the GEMM is materialized first, which gives back the plain GEMM.
 *
 *  In-place updates (`inPlace`: update output → resident input): once the schedule is fixed, an
 *  update's kernel is written again storing into the input's buffer when that is safe — no
 *  kernel after it binds the input, no other kernel binds the output, the input is not read back
 *  as an output, and the kernel builder saw every load of the input at the element the store
 *  writes (never broadcast, permuted or in a GEMM/reduction loop). Otherwise the kernel stays as
 *  it was and the runtime copies the output into the input after the run.
 *      k7 = fused[permute, matmul, mul, sub]: v3[sm * 16u + sn] = v3[(sm * 16u + sn)] - 0.1 * acc */
import { describeNode, KilnError } from "../src/ir/errors.ts";
import type { Graph, Node, OpKind, ValueId } from "../src/ir/types.ts";
import { loweringOf, type Lowering } from "../src/ops/def.ts";
import { OPS } from "../src/ops/table.ts";
import { planBuffers } from "./fuse.ts";
import type { BufferSpec, Kernel, Program } from "./program.ts";
import { GPU_TARGET, type Target } from "./target.ts";
import { KernelBuilder } from "./wgsl/kernel-builder.ts";
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
}

export const DEFAULT_CODEGEN: CodegenOptions = { maxStorageBuffers: 8, target: GPU_TARGET };

export const lowering = (n: Node): Lowering<OpKind> => loweringOf(OPS[n.op] as never, n.attrs as never);

export function codegen(graph: Graph, opts: CodegenOptions = DEFAULT_CODEGEN): Program {
  const materialized = new Set(opts.buffers ?? planBuffers(graph, { fuse: opts.fuse ?? true }));

  for (;;) {
    const kernels: Kernel[] = [];
    let overflow: ValueId | undefined;
    for (const n of graph.nodes) {
      if (!materialized.has(n.id) || lowering(n).kind === "buffer") continue;
      const inline = inlined(graph, n, materialized);
      const k = generate(graph, n, inline, `k${kernels.length}`, opts.target);
      if (k.bindings.length > opts.maxStorageBuffers) {
        overflow = gemmOf(graph, n, inline) ?? widest(graph, n, inline, materialized);
        if (overflow === undefined) {
          throw new KilnError(`${describeNode(n.op, n.id, n.site)}: needs ${k.bindings.length} storage buffers, the device allows ${opts.maxStorageBuffers}`);
        }
        break;
      }
      kernels.push(k);
    }
    if (overflow === undefined) {
      for (const [o, w] of opts.inPlace ?? []) updateInPlace(graph, kernels, materialized, o, w, opts.target);
      return { graph, kernels, buffers: buffers(graph, materialized), state: [], stats: [] };
    }
    materialized.add(overflow);
  }
}

/** The node itself when it is an expression, plus the non-materialized nodes it reads (index
 *  maps, fused values, a GEMM or reduction whose epilogue it is). Also ./cost.ts's membership. */
export function inlined(graph: Graph, root: Node, materialized: ReadonlySet<ValueId>): Set<ValueId> {
  const set = new Set<ValueId>();
  const visit = (id: ValueId) => {
    if (set.has(id)) return;
    set.add(id);
    for (const i of graph.nodes[id].inputs) if (!materialized.has(i)) visit(i);
  };
  if (lowering(root).kind === "kernel") {
    for (const i of root.inputs) if (!materialized.has(i)) visit(i);
  } else visit(root.id);
  return set;
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
  const ops = [...inline].sort((a, b) => a - b).map((i) => graph.nodes[i].op).filter((op) => op !== "const");
  const low = lowering(n);
  if (low.kind === "kernel") {
    const what = ops.length ? `${n.op}[${ops.join(", ")}]` : n.op;
    return KERNELS[low.kernel](kb, what);
  }
  const what = ops.length > 1 ? `fused[${ops.join(", ")}]` : ops[0] ?? n.op;
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

/** The inlined node (other than the root) whose own inputs span the most buffers. */
function widest(graph: Graph, root: Node, inline: Set<ValueId>, materialized: ReadonlySet<ValueId>): ValueId | undefined {
  let best: ValueId | undefined;
  let most = 1;
  for (const id of inline) {
    if (id === root.id) continue;
    const reads = new Set<ValueId>();
    const visit = (v: ValueId) => {
      for (const i of graph.nodes[v].inputs) materialized.has(i) ? reads.add(i) : visit(i);
    };
    visit(id);
    if (reads.size > most) [best, most] = [id, reads.size];
  }
  return best;
}

function buffers(graph: Graph, materialized: ReadonlySet<ValueId>): BufferSpec[] {
  return [...materialized].sort((a, b) => a - b).map((id) => {
    const n = graph.nodes[id];
    const role = n.op === "input" ? "input" : lowering(n).kind === "buffer" ? "const" : "temp";
    return { value: id, dtype: n.type.dtype, shape: n.type.shape, role };
  });
}
