/** Kiln's ONNX importer (formats/onnx/import.ts, from the onnx-import branch), loaded only where
 *  this checkout has it: the round-trip tests and the bench's W7 use it when it exists and say
 *  why they are skipped (or "not built") when it does not. Typed here by what they use of it. */
import { existsSync } from "node:fs";
import type { GraphBuilder, Tensor } from "../../src/api/builder.ts";
import type { Graph } from "../../src/ir/types.ts";

export interface Imported {
  readonly graph: Graph;
  readonly state: Readonly<Record<string, null>>;
  readonly weights: Readonly<Record<string, ArrayLike<number>>>;
  /** Kiln names of the ONNX inputs and outputs. */
  readonly inputs: readonly { readonly name: string; readonly onnx: string }[];
  readonly outputInfo: readonly { readonly name: string; readonly onnx: string }[];
}
export type ImportOnnx = (bytes: Uint8Array) => Imported;

const MODULE = new URL("../../formats/onnx/import.ts", import.meta.url);

/** Why there is no importer here, or undefined when there is one. */
export const NO_IMPORTER = "formats/onnx/import.ts with importOnnx is not in this checkout yet (it comes from the onnx-import branch)";

export async function loadImporter(): Promise<ImportOnnx | undefined> {
  if (!existsSync(MODULE)) return undefined;
  // A computed specifier: the file may not exist when this is type-checked.
  const mod = (await import(MODULE.href)) as { importOnnx?: ImportOnnx };
  return mod.importOnnx;
}

/** An imported graph's nodes replayed into `g`, its inputs taken from `xs` (or made anew), to
 *  differentiate it with the builder's `grad`: the value of its output number `out`. */
export function replay(graph: Graph, g: GraphBuilder, xs: Readonly<Record<string, Tensor>>, out = 0): Tensor {
  const ts: Tensor[] = [];
  for (const n of graph.nodes) {
    if (n.op === "input") {
      const name = (n.attrs as { name: string }).name;
      ts.push(xs[name] ?? g.input(name, n.type.dtype, n.type.shape));
    } else
      ts.push(
        g.add(
          n.op,
          n.inputs.map((i) => ts[i]),
          n.attrs as never,
        ),
      );
  }
  return ts[graph.outputs[out].id];
}
