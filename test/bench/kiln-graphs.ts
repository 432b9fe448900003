/** The bench's networks in Kiln's IR (used by runners/kiln.ts): they live in
 *  examples/models/networks.ts, where `kiln explain` models use them too. */
export { buildStep, lenet, mlp, type Params } from "../../examples/models/networks.ts";
