/** codegen: graph → kernels and buffers (a Program).
 *
 *  Which values live in memory: graph inputs and constant data, graph outputs, and the result
 *  of every elementwise op and every op with a kernel of its own. Index ops (movement, iota,
 *  random, gather, scalar constants) never get a buffer or a copy kernel: they are inlined into
 *  each consumer's loads as index arithmetic.
 *      %3 = permute %1 {perm=[1,0]};  %4 = add %3, %2
 *        → k0 = fused[permute, add]: v4[i] = v1[c1 * R + c0] + v2[i]
 *  Fusion (./fuse.ts) decides which nodes are inlined, the storage-binding limit included (it
 *  stores values, chosen by cost, until every kernel fits), and hands over its kernel groups;
 *  codegen writes them as they are, in the schedule's order:
 *      groups, order → k0 … kn, each binding ≤ maxStorageBuffers, else an internal error
 *  Each kernel's bindings are decided before its WGSL is written (./wgsl/kernel-builder.ts):
 *  which values live in the shared arena is known here from the program's structure — the
 *  temporaries and the inputs that are not resident, when memory is planned (./plan-memory.ts)
 *  — so their bindings are declared read_write from the start, and the text is final.
 *  A kernel whose root is elementwise and which inlines a GEMM (an epilogue) is written by the
 *  GEMM's generator, storing the root:
 *      %7 = matmul %0, %1;  %8 = add %7, %2;  %9 = relu %8   →  k0 = fused[matmul, add, relu]
 *
 *  In-place updates (`inPlace`: update output → resident input): once the schedule is fixed, an
 *  update's kernel is written storing into the input's buffer instead when that is safe — no
 *  kernel after it binds the input, no other kernel binds the output, the input is not read back
 *  as an output, and the kernel builder saw every load of the input at the element the store
 *  writes (never broadcast, permuted or in a GEMM/reduction loop). Otherwise the kernel stays as
 *  it was and the runtime copies the output into the input after the run.
 *      k7 = fused[permute, matmul, mul, sub]: v3[sm * 16u + sn] = v3[(sm * 16u + sn)] - 0.1 * acc */
import { describeNode, KilnError } from "../src/ir/errors.ts";
import { numel, sizeEq } from "../src/ir/shape.ts";
import type { Graph, ValueId } from "../src/ir/types.ts";
import { lowering } from "../src/ops/table.ts";
import { type FusionPlan, type KernelGroup, planFusion } from "./fuse.ts";
import { inArena } from "./plan-memory.ts";
import { halfValues, type Precision } from "./precision.ts";
import type { BufferSpec, Kernel, Program } from "./program.ts";
import { GPU_TARGET, type Target } from "./target.ts";
import { KernelBuilder, storageType } from "./wgsl/kernel-builder.ts";
import { elementwiseKernel, KERNELS } from "./wgsl/kernels/index.ts";

export interface CodegenOptions {
  /** Storage buffers a kernel may bind (WebGPU's default and lavapipe's device limit: 8). */
  readonly maxStorageBuffers: number;
  /** Which kernel variants to write (./target.ts). */
  readonly target: Target;
  /** Fuse elementwise chains into their consumers (./fuse.ts; `codegen` only); default true. */
  readonly fuse?: boolean;
  /** Resident-state updates to write in place where safe: update output → resident input. */
  readonly inPlace?: ReadonlyMap<ValueId, ValueId>;
  /** Write a kernel's output over an input that dies there, where safe (`reuseInPlace`);
   *  default false (compile turns it on with CompileOptions.inPlace). */
  readonly reuse?: boolean;
  /** The resident inputs, which reuse must never overwrite and which stay out of the arena.
   *  Without it reuse takes temporaries only, never a graph input. */
  readonly resident?: ReadonlySet<ValueId>;
  /** Memory is planned in one shared arena (Program.arena): its values are bound read_write. */
  readonly arena?: boolean;
  /** "mixed": the arena's f32 temporaries are stored as f16 (./precision.ts); needs `arena`.
   *  Default "f32". */
  readonly precision?: Precision;
}

export const DEFAULT_CODEGEN: CodegenOptions = { maxStorageBuffers: 8, target: GPU_TARGET };

/** Fusion and code generation in program order, outside the pipeline (tools and tests). */
export function codegen(graph: Graph, opts: CodegenOptions = DEFAULT_CODEGEN): Program {
  const fusion = planFusion(graph, { fuse: opts.fuse ?? true, maxStorageBuffers: opts.maxStorageBuffers, target: opts.target });
  return generateKernels(
    graph,
    fusion,
    fusion.groups.map((k) => k.root),
    opts,
  );
}

/** The kernels of `fusion`'s groups in `order` (roots), and the buffers. */
export function generateKernels(graph: Graph, fusion: FusionPlan, order: readonly ValueId[], opts: CodegenOptions): Program {
  const groups = new Map(fusion.groups.map((k) => [k.root, k]));
  const specs = buffers(graph, fusion.buffers);
  const resident = opts.resident ?? new Set<ValueId>();
  const arena = new Set(opts.arena ? specs.filter((b) => inArena(b.role, resident.has(b.value))).map((b) => b.value) : []);
  const precision = opts.precision ?? "f32";
  if (precision === "mixed" && !opts.arena)
    throw new KilnError('precision "mixed" stores activations in the planned arena: compile with plan: true (the default)');
  const half = halfValues(graph, specs, arena, precision);
  const gen: Generate = (k, name, alias) => generate(graph, k, name, opts.target, arena, half, alias);
  const kernels: Kernel[] = [];
  for (const root of order) {
    const group = groups.get(root);
    if (!group) throw new Error(`internal: the schedule names %${root}, which is no kernel of the fusion plan`);
    const n = graph.nodes[root];
    const k = gen(group, `k${kernels.length}`)!;
    if (k.bindings.length > opts.maxStorageBuffers) {
      // ./fuse.ts fits every kernel to the limit: reaching here is a compiler bug, or a plan
      // made for a larger limit than this one.
      throw new KilnError(
        `internal: ${k.name} for ${describeNode(n.op, n.id, n.site)} binds ${k.bindings.length} storage buffers, past the limit of ${opts.maxStorageBuffers} that the fusion plan was made to fit`,
      );
    }
    kernels.push(k);
  }
  if (kernels.length !== groups.size) throw new Error(`internal: the schedule orders ${kernels.length} of ${groups.size} kernels`);
  for (const [o, w] of opts.inPlace ?? []) updateInPlace(graph, kernels, groups, o, w, gen);
  if (opts.reuse) reuseInPlace(graph, kernels, groups, gen, half, opts.resident);
  return { graph, kernels, buffers: specs, state: [], stats: [], ...(half.size ? { half: [...half].sort((a, b) => a - b) } : {}) };
}

/** Writes a group's kernel, named; with `alias`, storing into that input (undefined where unsafe). */
type Generate = (k: KernelGroup, name: string, alias?: ValueId) => Kernel | undefined;

/** Write the kernel computing `o` to store into `w`'s buffer instead, if that is safe (see the header). */
function updateInPlace(
  graph: Graph,
  kernels: Kernel[],
  groups: ReadonlyMap<ValueId, KernelGroup>,
  o: ValueId,
  w: ValueId,
  gen: Generate,
): void {
  const i = kernels.findIndex((k) => k.output === o);
  if (i < 0 || o === w || kernels[i].inPlace !== undefined) return;
  const binds = (k: Kernel, v: ValueId) => k.bindings.some((b) => b.value === v);
  if (kernels.some((k, j) => j > i && binds(k, w))) return; // a later kernel reads the old value
  if (kernels.some((k, j) => j !== i && binds(k, o))) return; // the update is read as a value
  if (graph.outputs.some((x) => x.id === w)) return; // read back as this run's input value
  const k = gen(groups.get(o)!, kernels[i].name, w);
  if (k) kernels[i] = k;
}

/** In-place reuse, after the resident updates: each kernel in turn whose output is a temporary
 *  is written storing into an input that dies there — its last reader, not a graph output, a
 *  temporary or (given `resident`) a non-resident input, the same storage type and element count
 *  — stored alike (both f16 or neither, ./precision.ts) — when the kernel builder saw every
 *  load of it at the element the store writes. The output
 *  then lives in that input's memory (compiler/plan-memory.ts places the two as one value);
 *  chains follow, each step over the last:  k0: v1 = exp(v0) → v0;  k1: v2 = neg(v1) → v0. */
function reuseInPlace(
  graph: Graph,
  kernels: Kernel[],
  groups: ReadonlyMap<ValueId, KernelGroup>,
  gen: Generate,
  half: ReadonlySet<ValueId>,
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
        half.has(w.id) !== half.has(n.id) ||
        !sizeEq(numel(w.type.shape), numel(n.type.shape))
      )
        continue;
      const alias = gen(groups.get(n.id)!, k.name, w.id);
      if (alias) return void (kernels[i] = alias);
    }
  });
}

/** The kernel writing group `k`; with `alias`, storing into that input instead, or undefined
 *  where the kernel reads it at an element other than the one it writes. The generator runs as
 *  the kernel builder's analysis pass, then renders the key and the WGSL from the plan made of it
 *  (./wgsl/kernel-builder.ts): the bindings, read_write for `arena` values, and the used `let`s. */
function generate(
  graph: Graph,
  k: KernelGroup,
  name: string,
  target: Target,
  arena: ReadonlySet<ValueId>,
  half: ReadonlySet<ValueId>,
  alias?: ValueId,
): Kernel | undefined {
  const builder = (render?: ReturnType<KernelBuilder["plan"]>) =>
    new KernelBuilder(graph, name, k.root, k.inlined, target, k.op ?? k.root, alias, render, half);
  const analysis = builder();
  write(analysis, graph, k);
  if (alias !== undefined && !analysis.aliasSafe) return undefined;
  const readWrite = (v: ValueId) => arena.has(v);
  const key = write(builder(analysis.plan(readWrite, true)), graph, k).wgsl;
  return { ...write(builder(analysis.plan(readWrite)), graph, k), key, nodes: k.nodes };
}

function write(kb: KernelBuilder, graph: Graph, k: KernelGroup): Kernel {
  const n = graph.nodes[k.root];
  const ops = [...k.inlined]
    .sort((a, b) => a - b)
    .map((i) => graph.nodes[i].op)
    .filter((op) => op !== "const");
  const low = lowering(n);
  if (low.kind === "kernel") {
    const what = ops.length ? `${n.op}[${ops.join(", ")}]` : n.op;
    return KERNELS[low.kernel](kb, what);
  }
  const what = ops.length > 1 ? `fused[${ops.join(", ")}]` : (ops[0] ?? n.op);
  const epi = k.op === undefined ? undefined : lowering(graph.nodes[k.op]);
  return epi?.kind === "kernel" ? KERNELS[epi.kernel](kb, what) : elementwiseKernel(kb, what);
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
