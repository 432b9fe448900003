/** fuse: which values get a buffer of their own (and so a kernel that writes it); the rest are
 *  computed inside their consumer's kernel as part of its expression (see
 *  wgsl/kernel-builder.ts `value`). Codegen starts from this plan and only ever adds to it (when
 *  a kernel would bind more storage buffers than the device allows).
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
 *    - its fused cone (it and the fused values it reads, in rough op costs: 1 for + − × and
 *      selects, 2 for ÷ and √, 4 for transcendentals) costs ≤ 8: then it is recomputed in each
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
 *  `fuse: false` keeps one kernel per non-index op, for comparison. */
import { liveNodes } from "../src/interpret.ts";
import { numel, sizeEq } from "../src/ir/shape.ts";
import type { Graph, Node, OpAttrs, OpKind, Shape, ValueId } from "../src/ir/types.ts";
import { loweringOf, type Lowering } from "../src/ops/def.ts";
import { OPS } from "../src/ops/table.ts";
import { usesTree } from "./wgsl/kernels/reduce.ts";

const lowering = (n: Node): Lowering<OpKind> => loweringOf(OPS[n.op] as never, n.attrs as never);

const REDUCTIONS = new Set(["reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "argmax"]);

export interface FusionOptions {
  readonly fuse: boolean;
}

const COST: Readonly<Record<string, number>> = {
  div: 2, mod: 2, sqrt: 2, rsqrt: 2, recip: 2,
  exp: 4, log: 4, sin: 4, cos: 4, tanh: 4, sigmoid: 4, pow: 6,
};
/** The most recomputation a fused value may bring into each of its consumers. */
const BUDGET = 8;

/** The values that live in buffers. */
export function planBuffers(graph: Graph, opts: FusionOptions = { fuse: true }): Set<ValueId> {
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
    const cost = (COST[n.op] ?? 1) + n.inputs.reduce((s, i) => s + (cone.get(i) ?? 0), 0);
    if (opts.fuse && fusible(n, uses.get(n.id) ?? [], cost)) cone.set(n.id, cost);
    else kept.add(n.id);
  }
  if (opts.fuse) epilogues(graph, live, outputs, uses, kept);
  if (opts.fuse) rowEpilogues(graph, live, outputs, uses, kept);
  return kept;
}

const ROW_REDUCTIONS: ReadonlySet<OpKind> = new Set<OpKind>(["reduce_sum", "reduce_mean", "reduce_max", "reduce_min"]);

/** A reduction with kept dims takes an epilogue too, when its value goes, one use after another
 *  through elementwise values of its own shape, to one elementwise value of its input's shape
 *  (the row it reduced, broadcast back): softmax's Σ exp(x − m) and the division e / Σ are one
 *  kernel, each thread summing its row and then writing it. Only for the one-thread-per-output
 *  reduction (a short static reduced extent), whose thread holds the whole row. */
function rowEpilogues(graph: Graph, live: readonly boolean[], outputs: ReadonlySet<ValueId>, uses: ReadonlyMap<ValueId, Node[]>, kept: Set<ValueId>): void {
  for (const r of graph.nodes) {
    if (!live[r.id] || !ROW_REDUCTIONS.has(r.op) || outputs.has(r.id) || !kept.has(r.id)) continue;
    const { axes, keepdims } = r.attrs as OpAttrs["reduce_sum"];
    const x = graph.nodes[r.inputs[0]].type.shape;
    const reduced = axes.map((a) => x[a]);
    if (!keepdims || reduced.some((d) => typeof d !== "number") || usesTree(r.type.shape, reduced)) continue;
    let cur: Node = r;
    const path: ValueId[] = [];
    let root: ValueId | undefined;
    for (;;) {
      const us = uses.get(cur.id) ?? [];
      const [c] = us;
      if (us.length !== 1 || c.inputs.filter((i) => i === cur.id).length !== 1 || lowering(c).kind !== "elementwise") break;
      if (sameDims(c.type.shape, x)) {
        root = c.id;
        break;
      }
      if (!sameDims(c.type.shape, r.type.shape) || kept.has(c.id)) break;
      path.push(c.id);
      cur = c;
    }
    if (root === undefined || lowering(graph.nodes[root]).kind !== "elementwise") continue;
    // One kernel op per kernel: not where a GEMM's epilogue ends.
    if (inlinesKernelOp(graph, root, kept)) continue;
    kept.delete(r.id);
    for (const id of path) kept.delete(id);
    kept.add(root);
  }
}

/** Matmul, conv2d and conv2d's gradients: the ops written by the GEMM writers, whose store can
 *  compute an epilogue (wgsl/kernels/gemm.ts). */
export const GEMMS: ReadonlySet<OpKind> = new Set<OpKind>(["matmul", "conv2d", "conv2d_grad_input", "conv2d_grad_filter"]);

/** Moves each GEMM's buffer to the end of its epilogue chain (see the header): the GEMM and the
 *  chain before the last value leave `kept`, the last value joins it. */
function epilogues(graph: Graph, live: readonly boolean[], outputs: ReadonlySet<ValueId>, uses: ReadonlyMap<ValueId, Node[]>, kept: Set<ValueId>): void {
  const roots = new Set<ValueId>();
  for (const m of graph.nodes) {
    if (!live[m.id] || !GEMMS.has(m.op) || outputs.has(m.id)) continue;
    const chain: ValueId[] = [];
    let cur = m;
    for (;;) {
      const us = uses.get(cur.id) ?? [];
      const [c] = us;
      const next = us.length === 1 && c.inputs.filter((i) => i === cur.id).length === 1 && lowering(c).kind === "elementwise" && sameDims(c.type.shape, m.type.shape);
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
  if (!uses.every((c) => REDUCTIONS.has(c.op) || lowering(c).kind === "elementwise")) return false;
  const [c] = uses;
  const once = uses.length === 1 && c.inputs.filter((i) => i === n.id).length === 1;
  if (once && (REDUCTIONS.has(c.op) || sizeEq(numel(c.type.shape), numel(n.type.shape)))) return true;
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
