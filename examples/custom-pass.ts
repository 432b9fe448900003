/** A pass of your own in Kiln's pipeline: `npx tsx examples/custom-pass.ts`.
 *
 *  `squareToMul` rewrites pow(x, 2) into x·x — a strength reduction: WGSL's pow is exp2(y·log2 x)
 *  with its error bound, x·x is one correctly rounded multiply, and it is defined for x < 0. It
 *  is a `Pass` (a pure Graph → Graph built with the `rewrite` helper), put in the pipeline after
 *  the standard graph passes and before the lowering stages (fuse, schedule, codegen,
 *  plan-memory), with dead-code elimination once more after it; the per-step statistics show
 *  what each one did. */
import {
  compile,
  dce,
  Executable,
  GraphBuilder,
  insertBefore,
  printGraph,
  releaseGpu,
  rewrite,
  type OpAttrs,
  type Pass,
  type PassStat,
} from "kiln-nn";

export const squareToMul: Pass = {
  name: "square-to-mul",
  run: (graph) =>
    rewrite(graph, (n, b) => {
      if (n.op !== "pow") return undefined;
      const exponent = b.node(n.inputs[1]);
      if (exponent.op !== "const" || (exponent.attrs as OpAttrs["const"]).value !== 2) return undefined;
      const x = n.inputs[0];
      // Only where x already has the result's shape: pow(x[3], 2[2,3]) broadcasts x.
      if (b.node(x).type.shape.join() !== n.type.shape.join()) return undefined;
      return b.add("mul", [x, x], {}, n.site);
    }),
};

export function statsTable(stats: readonly PassStat[]): string {
  return stats.map((s) => `  ${s.pass.padEnd(60)} ${String(s.nodes).padStart(4)} nodes  ${s.ms.toFixed(2)} ms`).join("\n");
}

async function main(): Promise<void> {
  const g = new GraphBuilder();
  const x = g.input("x", "f32", ["B", 4]);
  const graph = g.build({ y: x.pow(2).sub(x.mul(0).add(1).pow(2)).sum(1) });
  const program = compile(graph, { passes: (standard) => insertBefore(standard, "fuse", squareToMul, dce) });
  console.log(`pipeline:\n${statsTable(program.stats)}\n\nafter it:\n${printGraph(program.graph)}`);
  const exe = await Executable.load(program);
  const { y } = await exe.run({ x: { shape: [2, 4], data: [-2, -1, 0, 3, 1, 2, 3, 4] } });
  console.log(`\ny = Σ x² − 1 per row: ${Array.from(y.data).join(", ")}`);
  exe.dispose();
  await releaseGpu();
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
