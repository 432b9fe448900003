/** Kernel generators by name: `elementwise` for expression kernels, and one per op family that
 *  needs a kernel of its own (`lower: { kind: "kernel", kernel: … }` in the op table). */
import type { KernelName } from "../../../src/ops/def.ts";
import type { Kernel } from "../../program.ts";
import type { KernelBuilder } from "../kernel-builder.ts";

export type KernelGenerator = (kb: KernelBuilder, what: string) => Kernel;

export { elementwiseKernel } from "./elementwise.ts";

// TODO(issue 2): every KernelName gets its generator; this becomes Record<KernelName, …>.
export const KERNELS: Partial<Record<KernelName, KernelGenerator>> = {};
