/** Binding symbolic dims from the shapes of the inputs a graph is run with. */
import { KilnError } from "./errors.ts";
import { formatShape, type DimEnv } from "./shape.ts";
import type { Graph, Node } from "./types.ts";

export const inputNodes = (g: Graph): Node<"input">[] => g.nodes.filter((n): n is Node<"input"> => n.op === "input");

/** Match each input's concrete shape against its declared shape; symbolic dims must agree. */
export function bindDims(g: Graph, shapes: Readonly<Record<string, readonly number[]>>): DimEnv {
  const env: Record<string, number> = {};
  for (const n of inputNodes(g)) {
    const { name, shape: want } = n.attrs;
    const got = shapes[name];
    if (!got)
      throw new KilnError(`input "${name}" ${formatShape(want)} was not given (inputs: ${Object.keys(shapes).join(", ") || "none"})`);
    const bad = () =>
      new KilnError(
        `input "${name}": shape ${formatShape(got)} does not match ${formatShape(want)}${Object.keys(env).length ? ` with ${JSON.stringify(env)}` : ""}`,
      );
    if (got.length !== want.length) throw bad();
    want.forEach((d, a) => {
      if (typeof d === "number") {
        if (got[a] !== d) throw bad();
      } else if (env[d] === undefined) env[d] = got[a];
      else if (env[d] !== got[a]) throw bad();
    });
  }
  const names = new Set(inputNodes(g).map((n) => n.attrs.name));
  for (const k of Object.keys(shapes))
    if (!names.has(k)) throw new KilnError(`unknown input "${k}" (the graph's inputs: ${[...names].join(", ")})`);
  return env;
}
