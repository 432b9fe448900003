/** What a compiled kernel costs, roughly, for `kiln explain`: FLOPs and bytes moved.
 *
 *  Bytes: the sizes of the buffers a kernel binds, read (every binding but the store's) and
 *  written (the store's), each counted once — caches and re-reads of a tile are not modelled; a
 *  binding written in place over its input counts as both.
 *  FLOPs, for the kernel's root op (the node it writes), 1 multiply-add = 2:
 *      matmul                 2·M·N·K (× batch)
 *      conv2d                 2·N·OH·OW·KH·KW·Cin·Cout
 *      conv2d_grad_input      the same product, from the cotangent's shape (N, OH, OW, Cout)
 *      conv2d_grad_filter     the same product
 *      pools and their grads  window size × output (pool) or cotangent (grad) elements
 *      reductions, argmax     input elements
 *      elementwise            fused ops × output elements (an inlined op runs at every output
 *                             element, broadcast or not: that is the recomputation fusion buys)
 *  plus, for a kernel root, the elementwise ops inlined into it (a reduction's prologue) once
 *  per element of their own shape; an elementwise root that is a GEMM's epilogue adds the
 *  GEMM's count. Index ops (movement, iota, random, constants) are free. */
import { evalSize, numel, type DimEnv } from "../src/ir/shape.ts";
import type { Graph, Node, Shape, ValueId } from "../src/ir/types.ts";
import { lowering } from "../src/ops/table.ts";
import type { Kernel, Program } from "./program.ts";

export interface KernelCost {
  readonly flops: number;
  readonly bytesRead: number;
  readonly bytesWritten: number;
}

/** Every dtype is stored as 4 bytes (bool as u32, see runtime/buffers.ts). */
export const bytesOf = (shape: Shape, env: DimEnv): number => 4 * evalSize(numel(shape), env);

/** The nodes a kernel computes: its root and the values codegen inlined into it. */
export const kernelNodes = (_program: Program, kernel: Kernel): readonly ValueId[] => kernel.nodes;

/** Per kernel, the graph nodes it computes, named by its header (the first line, after "// "):
 *  the groups of ir/dot.ts. */
export function kernelGroups(program: Program): { name: string; nodes: ValueId[] }[] {
  return program.kernels.map((k) => ({ name: k.wgsl.slice(3, k.wgsl.indexOf("\n")), nodes: [...k.nodes] }));
}

export function kernelCost(program: Program, kernel: Kernel, env: DimEnv): KernelCost {
  const { graph } = program;
  let bytesRead = 0;
  let bytesWritten = 0;
  for (const b of kernel.bindings) {
    const n = bytesOf(graph.nodes[b.value].type.shape, env);
    // In place (Kernel.inPlace): the input is read at each element and the output stored there.
    if (b.value === kernel.inPlace) (bytesRead += n), (bytesWritten += n);
    else b.value === kernel.output ? (bytesWritten += n) : (bytesRead += n);
  }
  const root = graph.nodes[kernel.output];
  const elems = (id: ValueId) => evalSize(numel(graph.nodes[id].type.shape), env);
  const inlinedOps = kernelNodes(program, kernel).filter((id) => id !== root.id && lowering(graph.nodes[id]).kind === "elementwise");
  let flops: number;
  const kind = lowering(root).kind;
  if (kind !== "kernel") {
    // An output that is an index op (a reshaped input, say) gets a copy kernel: no arithmetic.
    // A GEMM with this root as its epilogue (./fuse.ts) adds its own FLOPs.
    const gemms = kernelNodes(program, kernel).filter((id) => lowering(graph.nodes[id]).kind === "kernel");
    flops =
      (inlinedOps.length + (kind === "elementwise" ? 1 : 0)) * elems(root.id) +
      gemms.reduce((s, id) => s + rootFlops(graph, graph.nodes[id], env), 0);
  } else {
    flops = rootFlops(graph, root, env) + inlinedOps.reduce((s, id) => s + elems(id), 0);
  }
  return { flops, bytesRead, bytesWritten };
}

function rootFlops(graph: Graph, n: Node, env: DimEnv): number {
  const low = lowering(n);
  if (low.kind !== "kernel") return 0;
  const shape = (id: ValueId) => graph.nodes[id].type.shape;
  const elems = (id: ValueId) => evalSize(numel(shape(id)), env);
  const dim = (s: Shape, axis: number) => evalSize(numel([s[s.length + axis]]), env);
  // HWIO filter: KH·KW·Cin, the multiply-adds per output element of the forward conv.
  const window = (filter: Shape) => dim(filter, -4) * dim(filter, -3) * dim(filter, -2);
  switch (low.kernel) {
    case "matmul":
      return 2 * elems(n.id) * dim(shape(n.inputs[0]), -1);
    case "conv2d":
      return 2 * elems(n.id) * window(shape(n.inputs[1]));
    case "conv2d_grad_input": // inputs [g, filter]
      return 2 * elems(n.inputs[0]) * window(shape(n.inputs[1]));
    case "conv2d_grad_filter": // inputs [x, g]; the output is the filter
      return 2 * elems(n.inputs[1]) * window(n.type.shape);
    case "pool":
    case "pool_grad": {
      const [wh, ww] = (n.attrs as { window: readonly [number, number] }).window;
      return wh * ww * (low.kernel === "pool" ? elems(n.id) : elems(n.inputs[n.inputs.length - 1]));
    }
    case "reduce":
    case "argmax":
      return elems(n.inputs[0]);
  }
}
