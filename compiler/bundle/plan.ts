/** A compiled Program as the executor's Plan (formats/bundle-manifest.ts): the description a
 *  bundle's manifest holds and Kiln's Executable runs, made by this one function for both.
 *
 *    buffers: the memory plan's arenas; a state buffer per resident input; constants and values
 *             kept out of the arena (no plan, or not placed) a buffer each
 *    values:  where each value lives — its arena placement, the memory of the input it is
 *             written in place over (a resident one's state buffer), or its own buffer
 *    kernels: bindings, dims uniform and dispatch as data; `file` is the kernel's WGSL file in a
 *             bundle (kernels/k2-matmul-add-relu.wgsl)
 *  Everything is sized at `dims`, the dims the memory was planned for. */
import { inputNodes } from "../../src/ir/bind.ts";
import { KilnError } from "../../src/ir/errors.ts";
import { bindShape } from "../../src/ir/shape.ts";
import type { Node, ValueId } from "../../src/ir/types.ts";
import type { BufferData, KernelData, Plan, ValueData } from "../../formats/bundle-manifest.ts";
import type { MemoryPlan } from "../plan-memory.ts";
import { elementBytes } from "../precision.ts";
import { inPlaceOutputs, type Kernel, type Program } from "../program.ts";

export interface PlanOptions {
  /** The kernels as they run (Program.kernels: access modes final, WGSL as compiled). */
  readonly kernels: readonly Kernel[];
  readonly memory: MemoryPlan | undefined;
  /** The dims memory is planned for. */
  readonly dims: Readonly<Record<string, number>>;
  /** Every graph output ("all", as Executable returns them on request) or all but the state updates. */
  readonly outputs: "all" | "results";
  /** Put constant data into the plan (a bundle); else the caller provides those buffers. */
  readonly constData: boolean;
}

export function programPlan(program: Program, opts: PlanOptions): Plan {
  const { graph } = program;
  const { dims, memory } = opts;
  const state = new Map(program.state.map((s) => [s.input, s]));
  const inPlace = inPlaceOutputs(program);
  const half = new Set(program.half);
  const bytesAt = (shape: Node["type"]["shape"], v?: ValueId) =>
    bindShape(shape, dims).reduce((a, d) => a * d, elementBytes(half, v ?? -1));

  const buffers: BufferData[] = (memory?.arenas ?? []).map((bytes, i) => ({ label: `arena ${i}`, bytes, kind: "arena" as const }));
  const stateBuffer = new Map<string, number>();
  for (const n of inputNodes(graph)) {
    if (!state.has(n.attrs.name)) continue;
    stateBuffer.set(n.attrs.name, buffers.length);
    buffers.push({ label: `state ${n.attrs.name}`, bytes: bytesAt(n.type.shape), kind: "state", state: n.attrs.name });
  }
  const at = new Map<ValueId, { buffer: number; offset: number }>();
  for (const p of memory?.placements ?? []) at.set(p.value, { buffer: p.arena, offset: p.offset });
  for (const b of program.buffers) {
    if (at.has(b.value)) continue;
    const n = graph.nodes[b.value];
    // Written in place: the memory of the input it is stored into (a smaller id: seen already).
    const into = inPlace.get(b.value);
    const of = into === undefined ? n : graph.nodes[into];
    const resident = of.op === "input" ? stateBuffer.get((of as Node<"input">).attrs.name) : undefined;
    if (resident !== undefined) at.set(b.value, { buffer: resident, offset: 0 });
    else if (into !== undefined) at.set(b.value, at.get(into)!);
    else {
      at.set(b.value, { buffer: buffers.length, offset: 0 });
      const data = b.role === "const" && opts.constData ? [...((n as Node<"const">).attrs.value as readonly number[])] : undefined;
      buffers.push({
        label: `v${b.value}`,
        bytes: bytesAt(b.shape, b.value),
        kind: b.role === "const" ? "const" : "own",
        ...(b.role === "const" ? { dtype: n.type.dtype } : {}),
        ...(data ? { data } : {}),
      });
    }
  }
  const values: ValueData[] = program.buffers.map((b) => ({
    id: b.value,
    ...at.get(b.value)!,
    dtype: b.dtype,
    shape: [...b.shape],
    ...(half.has(b.value) ? { storage: "f16" as const } : {}),
  }));
  const valueIds = new Set(values.map((v) => v.id));
  const updates = new Set(program.state.flatMap((s) => s.output ?? []));
  const kernels: KernelData[] = opts.kernels.map((k) => {
    const d = k.dispatch;
    return {
      name: k.name,
      file: `kernels/${k.name}-${kernelWord(program, k)}.wgsl`,
      bindings: k.bindings.map((b) => ({ value: b.value, access: b.access })),
      uniforms: [...k.uniforms],
      dispatch:
        d.kind === "linear"
          ? { kind: "linear", total: sizeData(d.total), perGroup: d.perGroup }
          : { kind: "grid", x: count(d.x), y: count(d.y), z: count(d.z) },
    };
  });
  return {
    dims: { ...dims },
    inputs: inputNodes(graph)
      .filter((n) => !state.has(n.attrs.name))
      .map((n) => ({ name: n.attrs.name, dtype: n.type.dtype, shape: [...n.type.shape], value: valueIds.has(n.id) ? n.id : null })),
    outputs: graph.outputs
      .filter((o) => opts.outputs === "all" || !updates.has(o.name))
      .map((o) => {
        if (!valueIds.has(o.id)) throw new KilnError(`output "${o.name}" has no buffer`);
        return { name: o.name, dtype: graph.nodes[o.id].type.dtype, shape: [...graph.nodes[o.id].type.shape], value: o.id };
      }),
    state: inputNodes(graph)
      .filter((n) => state.has(n.attrs.name))
      .map((n) => {
        const out = state.get(n.attrs.name)!.output;
        return {
          name: n.attrs.name,
          dtype: n.type.dtype,
          shape: [...n.type.shape],
          buffer: stateBuffer.get(n.attrs.name)!,
          update: out === undefined ? null : graph.outputs.find((o) => o.name === out)!.id,
        };
      }),
    buffers,
    values,
    kernels,
  };
}

/** A file-name-safe word for what a kernel computes (Kernel.what, as its header says:
 *  "fused[matmul, add, relu]" → "matmul-add-relu"); long chains keep their first four ops. */
function kernelWord(program: Program, k: Kernel): string {
  const ops = k.what
    ? k.what
        .replace(/^fused\[|\]$/g, "")
        .split(/[^A-Za-z0-9_]+/)
        .filter(Boolean)
    : [program.graph.nodes[k.output].op];
  return [...ops.slice(0, 4), ...(ops.length > 4 ? ["etc"] : [])].join("-").replace(/_/g, "-");
}

const sizeData = (s: { k: number; syms: readonly string[] }) => ({ k: s.k, syms: [...s.syms] });
const count = (c: { size: { k: number; syms: readonly string[] }; per: number }) => ({ size: sizeData(c.size), per: c.per });
