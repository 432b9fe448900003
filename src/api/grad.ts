/** Reverse-mode differentiation into the same IR: `grad(loss, [w1, b1])` appends the backward
 *  graph to the builder and returns the gradients as ordinary tensors, so they get shape
 *  inference, simplification, fusion and codegen like any node, and can be differentiated
 *  again (grad of grad).
 *
 *  Walk the nodes from `y` down; each node whose cotangent is known hands it to its op's vjp
 *  rule, which returns its inputs' cotangents as new nodes; cotangents of a value used several
 *  times are summed. Only nodes on a path from a `wrt` tensor to `y` are visited, so unused
 *  branches make no backward work; integer and bool values carry no gradient. */
import { describeNode, KilnError } from "../ir/errors.ts";
import { formatType, shapeEq } from "../ir/shape.ts";
import type { ValueId } from "../ir/types.ts";
import type { OpDef, VjpCtx } from "../ops/def.ts";
import { OPS } from "../ops/table.ts";
import type { Tensor } from "./builder.ts";

/** Give `out`, a value computed from `inputs` inside a composite, its own gradient rule: `grad`
 *  hands the cotangent of `out` to `vjp`, which returns the cotangents of `inputs` (undefined:
 *  none), and does not descend into the nodes between them. For a composite whose generic
 *  gradient is correct but not the form a person would write (e.g. softmax cross-entropy,
 *  whose chain-rule gradient is p·Σy − y where the labels are known to sum to 1). The rule's
 *  nodes are ordinary IR, so grad of grad goes through them. `out` must be a node made after
 *  every input (so no other value shares it). */
export function customGradient(out: Tensor, inputs: readonly Tensor[], vjp: (g: Tensor) => readonly (Tensor | undefined)[]): Tensor {
  const b = out.builder;
  for (const x of inputs) {
    if (x.builder !== b) throw new KilnError("customGradient: an input belongs to another graph");
    if (x.id >= out.id) throw new KilnError(`customGradient: %${out.id} must be computed after its input %${x.id}`);
  }
  if (b.customVjps.has(out.id)) throw new KilnError(`customGradient: %${out.id} already has a gradient rule`);
  b.customVjps.set(out.id, { inputs: [...inputs], vjp });
  return out;
}

export function grad(y: Tensor, wrt: readonly Tensor[], seed?: Tensor): Tensor[] {
  const b = y.builder;
  if (y.dtype !== "f32") throw new KilnError(`grad: the value differentiated must be f32, got ${formatType(y.type)}`);
  if (!seed && y.rank !== 0) {
    throw new KilnError(`grad: ${formatType(y.type)} is not a scalar; reduce it first or pass a seed cotangent of its shape`);
  }
  if (seed && !shapeEq(seed.shape, y.shape))
    throw new KilnError(`grad: seed ${formatType(seed.type)} does not match ${formatType(y.type)}`);
  for (const x of wrt) {
    if (x.builder !== b) throw new KilnError("grad: a wrt tensor belongs to another graph");
    if (x.dtype !== "f32")
      throw new KilnError(`grad: cannot differentiate with respect to ${formatType(x.type)} %${x.id}; only f32 values have gradients`);
  }

  // Which values depend on a wrt tensor (forward), below y.
  const reaches = new Array<boolean>(y.id + 1).fill(false);
  for (const x of wrt) if (x.id <= y.id) reaches[x.id] = true;
  const inputsOf = (id: ValueId): readonly ValueId[] => b.customVjps.get(id)?.inputs.map((t) => t.id) ?? b.node(id).inputs;
  for (let id = 0; id <= y.id; id++) if (!reaches[id]) reaches[id] = inputsOf(id).some((i) => reaches[i]);

  const ct = new Map<ValueId, Tensor>([[y.id, seed ?? b.constant(1)]]);
  for (let id = y.id; id >= 0; id--) {
    const g = ct.get(id);
    if (!g) continue;
    const n = b.node(id);
    const inputs = inputsOf(id);
    const live = inputs.map((i) => reaches[i] && b.type(i).dtype === "f32");
    if (!live.some(Boolean)) continue;
    const custom = b.customVjps.get(id);
    let gs: readonly (Tensor | undefined)[];
    if (custom) {
      gs = custom.vjp(g);
    } else {
      const def = OPS[n.op] as OpDef<typeof n.op>;
      if (!def.vjp) throw new KilnError(`grad: ${describeNode(n.op, n.id, n.site)} has no gradient rule`);
      const ctx: VjpCtx<typeof n.op> = { g, ins: n.inputs.map((i) => b.tensor(i)), out: b.tensor(id), attrs: n.attrs };
      gs = def.vjp(ctx);
    }
    inputs.forEach((input, k) => {
      const gi = gs[k];
      if (!live[k] || !gi) return;
      if (!shapeEq(gi.shape, b.type(input).shape) || gi.dtype !== "f32") {
        throw new KilnError(
          `grad: the ${custom ? "custom " : ""}rule of ${describeNode(n.op, n.id, n.site)} gave ${formatType(gi.type)} for input %${input} ${formatType(b.type(input))}`,
        );
      }
      const prev = ct.get(input);
      ct.set(input, prev ? prev.add(gi) : gi);
    });
  }
  return wrt.map((x) => ct.get(x.id) ?? b.constant(0, "f32", x.shape));
}
