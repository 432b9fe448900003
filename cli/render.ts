/** DOT → SVG with Graphviz compiled to WebAssembly (@viz-js/viz), so `kiln explain --svg` needs
 *  no system Graphviz. The WASM module is instantiated once, on first use. */
import { instance, type Viz } from "@viz-js/viz";
import { KilnError } from "../src/ir/errors.ts";

let viz: Promise<Viz> | undefined;

export async function toSvg(dot: string): Promise<string> {
  viz ??= instance();
  const result = (await viz).render(dot, { format: "svg" });
  if (result.status !== "success") {
    throw new KilnError(`Graphviz could not render the DOT text: ${result.errors.map((e) => e.message.trim()).join("; ")}`);
  }
  return result.output;
}
