/** fuse: which values get a buffer of their own (and so a kernel that writes it); the rest are
 *  computed inside their consumer's kernel as part of its expression (see
 *  wgsl/kernel-builder.ts `value`). Codegen writes exactly this plan, the binding limit included
 *  (below).
 *
 *  Always in a buffer: graph outputs, buffer-backed values (inputs, constant data) and the
 *  result of every op with a kernel of its own (pools, reductions; matmul and conv unless an
 *  epilogue takes them, below). Never: index ops (movement, iota, random, gather, scalar
 *  constants), which are index arithmetic inside their consumer's loads. An elementwise value
 *  is fused into its consumers (computed inside each consumer's kernel) when every consumer is
 *  elementwise or a reduction (a prologue: exp inside Σ exp), never the operand of a GEMM-like
 *  kernel (matmul, conv and their gradients, pools), which reads each element many times; and
 *  either
 *    - it has exactly one use over as many elements: nothing is computed twice; or
 *    - its fused cone (it and the fused values it reads, in rough op costs, each op's record's
 *      `pattern.cost`: 1 for + − × and selects, 2 for ÷ and √, 4 for transcendentals) costs ≤ 8: then it is recomputed in each
 *      consumer, and across a broadcast, rather than written out and read back — the
 *      subtracted max and exp(x − max) of softmax are recomputed beside the row sum and the
 *      division, which saves a tensor's round trip through memory.
 *      ew₁ → ew₂ → ew₃ → reduce_sum     one kernel: Σ ew₃(ew₂(ew₁(x)))
 *  A GEMM (matmul, conv2d and its gradients) takes an epilogue: the chain of elementwise values
 *  after it, each the single use of the one before, read once, of exactly the GEMM's shape, is
 *  computed at the GEMM's store, and only the chain's last value gets a buffer:
 *      matmul → add(·, bias) → relu        one kernel: C = relu(A·B + bias), stored once
 *  The chain's other operands are fused as usual (a broadcast bias is a load at the store's
 *  coordinates). The GEMM itself is never recomputed, nor read across a broadcast or in a
 *  reduction's prologue, and a kernel holds at most one GEMM (`epilogues`).
 *  A reduction with kept dims over a short static row takes a row epilogue: the elementwise
 *  value of the row's shape that reads it broadcast back (`rowEpilogues`):
 *      m = max x; z = x − m;  s = Σ exp z; p = exp z / s      two kernels for softmax
 *  Last, the binding limit (`fitBindings`): a kernel binds its output and every buffer its
 *  inlined cone reads. Past `maxStorageBuffers`, one inlined value of that kernel is stored —
 *  a GEMM of an epilogue too, which gives back the plain GEMM — chosen by cost: of the values
 *  whose storing brings the kernel and the value's own new kernel within the limit (pushing no
 *  other kernel that inlined it past it), else of those that lower the count most, the one
 *  with the least extra traffic (elements × 2 × kernels now reading it), then the fewest ops
 *  left to compute, then the lowest id; repeated until every kernel fits:
 *      y = tanh(Σ₆ xᵢ[64,64] + Σ₄ sⱼ[64])   11 bindings  →  Σ₄ sⱼ stored (64 elements), y: 8
 *  Where no single value lowers the count (operands sharing their reads), all the kernel's
 *  operands are stored; an op whose own operands and output pass the limit is an error.
 *  `spilled` records each such value and why. `fuse: false` keeps one kernel per non-index op,
 *  for comparison (the limit still applies to the index ops it inlines). */
import { liveNodes } from "../src/ir/live.ts";
import { describeNode, KilnError } from "../src/ir/errors.ts";
import { numel, sizeEq } from "../src/ir/shape.ts";
import type { Graph, Node, OpAttrs, Shape, ValueId } from "../src/ir/types.ts";
import { lowering, pattern } from "../src/ops/table.ts";
import { GPU_TARGET, type Target } from "./target.ts";
import { usesTree } from "./wgsl/kernels/reduce.ts";

export interface FusionOptions {
  readonly fuse: boolean;
  /** Storage buffers one kernel may bind, its output included (WebGPU's default: 8). */
  readonly maxStorageBuffers?: number;
  /** The kernels' target: whether a reduction can take a row epilogue depends on its variant. */
  readonly target?: Target;
}

/** A value stored only so that a kernel fits the binding limit: `root`'s kernel needed `bindings`. */
export interface Spill {
  readonly value: ValueId;
  readonly root: ValueId;
  readonly bindings: number;
}

/** One kernel, as fusion hands it over: what it writes, what it computes inside, what it reads.
 *      %7 = matmul %0, %1;  %8 = add %7, %2;  %9 = relu %8
 *        → { root: 9, nodes: [7, 8, 9], gemm: 7, reads: [0, 1, 2] }   (matmul with an epilogue) */
export interface KernelGroup {
  /** The value the kernel writes (its store). */
  readonly root: ValueId;
  /** The nodes it computes, ascending: the root and its inlined cone (index maps, fused values,
   *  a GEMM or reduction whose epilogue the root is). Codegen writes exactly these. */
  readonly nodes: readonly ValueId[];
  /** The values computed inside it rather than loaded (`nodes` less a kernel-op root). */
  readonly inlined: ReadonlySet<ValueId>;
  /** The node whose kernel generator writes it: a kernel op (the root, or the GEMM whose
   *  epilogue the root is), or undefined for an expression kernel. */
  readonly op?: ValueId;
  /** The buffers it loads, ascending (not the root, unless the root is read as well). */
  readonly reads: readonly ValueId[];
}

export interface FusionPlan {
  /** The values that live in buffers. */
  readonly buffers: ReadonlySet<ValueId>;
  /** The values among them stored for the binding limit, in the order chosen. */
  readonly spilled: readonly Spill[];
  /** One group per kernel, in program order (by root id). */
  readonly groups: readonly KernelGroup[];
}

/** An elementwise op's cost in a fused cone (its record's `pattern.cost`). */
const costOf = (n: Node): number => {
  const p = pattern(n);
  if (p.kind !== "elementwise") throw new Error(`${describeNode(n.op, n.id, n.site)}: not elementwise, so it has no cost in a cone`);
  return p.cost;
};
/** The most recomputation a fused value may bring into each of its consumers. */
const BUDGET = 8;

/** The kernels: the values that live in buffers, grouped with what each kernel computes, and
 *  which of them are there for the binding limit. */
export function planFusion(graph: Graph, opts: FusionOptions = { fuse: true }): FusionPlan {
  const live = liveNodes(graph);
  const outputs = new Set(graph.outputs.map((o) => o.id));
  const uses = new Map<ValueId, Node[]>();
  for (const n of graph.nodes) if (live[n.id]) for (const i of n.inputs) uses.set(i, [...(uses.get(i) ?? []), n]);
  const kept = new Set<ValueId>();
  const cone = new Map<ValueId, number>();
  for (const n of graph.nodes) {
    if (!live[n.id]) continue;
    const kind = lowering(n).kind;
    if (outputs.has(n.id) || kind === "buffer" || kind === "kernel") {
      kept.add(n.id);
      continue;
    }
    if (kind !== "elementwise") continue;
    const cost = costOf(n) + n.inputs.reduce((s, i) => s + (cone.get(i) ?? 0), 0);
    if (opts.fuse && fusible(n, uses.get(n.id) ?? [], cost)) cone.set(n.id, cost);
    else kept.add(n.id);
  }
  if (opts.fuse) epilogues(graph, live, outputs, uses, kept);
  if (opts.fuse) rowEpilogues(graph, live, outputs, uses, kept, opts.target ?? GPU_TARGET);
  const spilled = fitBindings(graph, live, kept, opts.maxStorageBuffers ?? 8);
  return { buffers: kept, spilled, groups: kernelGroups(graph, kept) };
}

/** The kernels of a fusion plan (`kept`: the values in buffers), one per value in a buffer that a
 *  kernel writes, each cone computed once here; every later stage reads these. */
export function kernelGroups(graph: Graph, kept: ReadonlySet<ValueId>): KernelGroup[] {
  const groups: KernelGroup[] = [];
  for (const n of graph.nodes) {
    if (!kept.has(n.id) || lowering(n).kind === "buffer") continue;
    const inl = inlined(graph, n, kept);
    const nodes = [...new Set([...inl, n.id])].sort((a, b) => a - b);
    const reads = new Set<ValueId>();
    for (const id of nodes) for (const i of graph.nodes[id].inputs) if (kept.has(i)) reads.add(i);
    const ops = nodes.filter((id) => lowering(graph.nodes[id]).kind === "kernel");
    if (ops.length > 1) throw new Error(`${describeNode(n.op, n.id, n.site)}: inlines ${ops.length} kernel ops`);
    groups.push({ root: n.id, nodes, inlined: inl, op: ops[0], reads: [...reads].sort((a, b) => a - b) });
  }
  return groups;
}

/** A reduction takes an epilogue too, when its value goes, one use after another, through
 *  elementwise values of its own shape, either
 *    - to one that is in a buffer anyway (an output, a value of many uses): the chain is
 *      computed at the reduction's store — a bias's SGD update b − lr·Σ_batch g is one kernel
 *      with its gradient's column sum (an MLP step: 19 → 16 kernels), or
 *    - with kept dims over a short static row, to one elementwise value of its input's shape (the
 *      row it reduced, broadcast back): softmax's Σ exp(x − m) and the division e / Σ are one
 *      kernel, each thread summing its row and then writing it.
 *  Only for the one-thread-per-output reduction, whose thread holds its output element (and the
 *  whole row). */
function rowEpilogues(
  graph: Graph,
  live: readonly boolean[],
  outputs: ReadonlySet<ValueId>,
  uses: ReadonlyMap<ValueId, Node[]>,
  kept: Set<ValueId>,
  target: Target,
): void {
  for (const r of graph.nodes) {
    const p = pattern(r);
    if (!live[r.id] || p.kind !== "reduction" || !p.rowEpilogue || outputs.has(r.id) || !kept.has(r.id)) continue;
    const { axes, keepdims } = r.attrs as OpAttrs["reduce_sum"];
    const x = graph.nodes[r.inputs[0]].type.shape;
    const reduced = axes.map((a) => x[a]);
    if (usesTree(r.type.shape, reduced, target)) continue;
    const row = keepdims && reduced.every((d) => typeof d === "number");
    let cur: Node = r;
    let root: ValueId | undefined;
    for (;;) {
      const us = uses.get(cur.id) ?? [];
      const [c] = us;
      if (us.length !== 1 || c.inputs.filter((i) => i === cur.id).length !== 1 || lowering(c).kind !== "elementwise") break;
      if ((row && sameDims(c.type.shape, x)) || (sameDims(c.type.shape, r.type.shape) && kept.has(c.id))) {
        root = c.id;
        break;
      }
      if (!sameDims(c.type.shape, r.type.shape)) break;
      cur = c;
    }
    // One kernel op per kernel: not where a GEMM's epilogue ends.
    if (root === undefined || inlinesKernelOp(graph, root, kept)) continue;
    // The values between are single uses, never in a buffer: the root's kernel computes them.
    kept.delete(r.id);
    kept.add(root);
  }
}

/** Moves each GEMM's buffer to the end of its epilogue chain (see the header): the GEMM and the
 *  chain before the last value leave `kept`, the last value joins it. */
function epilogues(
  graph: Graph,
  live: readonly boolean[],
  outputs: ReadonlySet<ValueId>,
  uses: ReadonlyMap<ValueId, Node[]>,
  kept: Set<ValueId>,
): void {
  const roots = new Set<ValueId>();
  for (const m of graph.nodes) {
    if (!live[m.id] || pattern(m).kind !== "gemm" || outputs.has(m.id)) continue;
    const chain: ValueId[] = [];
    let cur = m;
    for (;;) {
      const us = uses.get(cur.id) ?? [];
      const [c] = us;
      const next =
        us.length === 1 &&
        c.inputs.filter((i) => i === cur.id).length === 1 &&
        lowering(c).kind === "elementwise" &&
        sameDims(c.type.shape, m.type.shape);
      if (!next) break;
      chain.push(c.id);
      cur = c;
      if (kept.has(c.id)) break;
    }
    if (!chain.length || roots.has(cur.id)) continue;
    roots.add(cur.id);
    for (const id of [m.id, ...chain]) kept.delete(id);
    kept.add(cur.id);
  }
}

const sameDims = (a: Shape, b: Shape): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

function fusible(n: Node, uses: readonly Node[], cost: number): boolean {
  const reduction = (c: Node) => pattern(c).kind === "reduction";
  if (!uses.every((c) => reduction(c) || lowering(c).kind === "elementwise")) return false;
  const [c] = uses;
  const once = uses.length === 1 && c.inputs.filter((i) => i === n.id).length === 1;
  if (once && (reduction(c) || sizeEq(numel(c.type.shape), numel(n.type.shape)))) return true;
  return cost <= BUDGET;
}

/** Whether the kernel of `root` would compute a kernel op inside it (a GEMM with its epilogue). */
function inlinesKernelOp(graph: Graph, root: ValueId, kept: ReadonlySet<ValueId>): boolean {
  const seen = new Set<ValueId>();
  const visit = (id: ValueId): boolean => {
    if (seen.has(id)) return false;
    seen.add(id);
    return graph.nodes[id].inputs.some((i) => !kept.has(i) && (lowering(graph.nodes[i]).kind === "kernel" || visit(i)));
  };
  return visit(root);
}

/** What `root`'s kernel computes inside it, given the values in buffers (`kept`): the root
 *  itself unless it is a kernel op, and the values in no buffer it reads, transitively (index
 *  maps, fused values, a GEMM or reduction whose epilogue it is). Fusion weighs candidate plans
 *  with it; the plan it settles on hands its cones over as `KernelGroup`s. */
function inlined(graph: Graph, root: Node, kept: ReadonlySet<ValueId>): Set<ValueId> {
  const set = new Set<ValueId>();
  const visit = (id: ValueId) => {
    if (set.has(id)) return;
    set.add(id);
    for (const i of graph.nodes[id].inputs) if (!kept.has(i)) visit(i);
  };
  if (lowering(root).kind === "kernel") {
    for (const i of root.inputs) if (!kept.has(i)) visit(i);
  } else visit(root.id);
  return set;
}

/** The storage buffers `root`'s kernel binds, ascending: every buffer its cone (and a kernel
 *  op's own operands) loads, as wgsl/kernel-builder.ts binds what `value` loads, and its output. */
export function kernelBindings(graph: Graph, root: ValueId, kept: ReadonlySet<ValueId>): ValueId[] {
  const reads = new Set<ValueId>([root]);
  for (const id of [root, ...inlined(graph, graph.nodes[root], kept)]) {
    for (const i of graph.nodes[id].inputs) if (kept.has(i)) reads.add(i);
  }
  return [...reads].sort((a, b) => a - b);
}

/** Adds to `kept` until every kernel binds at most `limit` buffers (see the header); returns
 *  what it added and why. Ends: each round stores one more value, or throws. */
function fitBindings(graph: Graph, live: readonly boolean[], kept: Set<ValueId>, limit: number): Spill[] {
  const spilled: Spill[] = [];
  for (;;) {
    const roots = graph.nodes.filter((n) => live[n.id] && kept.has(n.id) && lowering(n).kind !== "buffer");
    const counts = new Map(roots.map((r) => [r.id, kernelBindings(graph, r.id, kept).length]));
    const over = roots.find((r) => counts.get(r.id)! > limit);
    if (!over) return spilled;
    const need = counts.get(over.id)!;
    const one = cheapestSpill(graph, roots, counts, over, kept, limit);
    // No single value helps when inlined operands share their reads (f(g₁, g₂), both over a, b,
    // c): storing every operand gives the floor, its distinct operands and its output.
    const operands = [...new Set(over.inputs.filter((i) => !kept.has(i)))];
    const values = one !== undefined ? [one] : operands;
    if (!values.length || kernelBindings(graph, over.id, new Set([...kept, ...values])).length >= need) {
      throw new KilnError(
        `${describeNode(over.op, over.id, over.site)}: needs ${need} storage buffers (its operands and output), the device allows ${limit}`,
      );
    }
    for (const value of values) {
      kept.add(value);
      spilled.push({ value, root: over.id, bindings: need });
    }
  }
}

/** A symbolic dim counts as this many elements when traffic is compared (a typical batch). */
const NOMINAL_DIM = 256;

interface SpillOption {
  readonly id: ValueId;
  /** The over-limit kernel, the value's own kernel and every other kernel it touches fit. */
  readonly fits: boolean;
  /** The over-limit kernel's bindings afterwards. */
  readonly left: number;
  /** Extra memory traffic in elements: written once, read once, per kernel now reading it. */
  readonly traffic: number;
  /** Ops computed, over the kernels that inlined it and its own new one. */
  readonly work: number;
}

/** The inlined value of `root`'s kernel to store (see the header), or undefined when storing
 *  none of them lowers its binding count. */
function cheapestSpill(
  graph: Graph,
  roots: readonly Node[],
  counts: ReadonlyMap<ValueId, number>,
  root: Node,
  kept: ReadonlySet<ValueId>,
  limit: number,
): ValueId | undefined {
  const cones = new Map(roots.map((r) => [r.id, inlined(graph, r, kept)]));
  const options: SpillOption[] = [];
  for (const id of cones.get(root.id)!) {
    if (id === root.id) continue;
    const next = new Set(kept).add(id);
    const left = kernelBindings(graph, root.id, next).length;
    if (left >= counts.get(root.id)!) continue;
    const readers = roots.filter((r) => cones.get(r.id)!.has(id));
    const fits =
      left <= limit &&
      kernelBindings(graph, id, next).length <= limit &&
      readers.every((r) => kernelBindings(graph, r.id, next).length <= Math.max(limit, counts.get(r.id)!));
    const n = numel(graph.nodes[id].type.shape);
    const traffic = n.k * NOMINAL_DIM ** n.syms.length * 2 * readers.length;
    const work = [...readers, graph.nodes[id]].reduce((s, r) => s + opsIn(graph, r, next), 0);
    options.push({ id, fits, left, traffic, work });
  }
  if (!options.length) return undefined;
  const least = Math.min(...options.map((o) => o.left));
  const pool = options.some((o) => o.fits) ? options.filter((o) => o.fits) : options.filter((o) => o.left === least);
  return pool.sort((a, b) => a.traffic - b.traffic || a.work - b.work || a.id - b.id)[0].id;
}

/** The ops `root`'s kernel computes (index ops and constants are free). */
function opsIn(graph: Graph, root: Node, kept: ReadonlySet<ValueId>): number {
  const cone = inlined(graph, root, kept).add(root.id);
  return [...cone].filter((id) => {
    const n = graph.nodes[id];
    const kind = lowering(n).kind;
    return n.op !== "const" && kind !== "index" && kind !== "buffer";
  }).length;
}
