/** Kernel generators by name: `elementwise` for expression kernels, and one per op family that
 *  needs a kernel of its own (`lower: { kind: "kernel", kernel: … }` in the op table). */
import type { KernelName } from "../../../src/ops/def.ts";
import type { Kernel } from "../../program.ts";
import type { KernelBuilder } from "../kernel-builder.ts";
import { conv2dKernel } from "./conv2d.ts";
import { conv2dGradFilterKernel, conv2dGradInputKernel } from "./conv2d-grad.ts";
import { matmulKernel } from "./matmul.ts";
import { poolKernel } from "./pool.ts";
import { poolGradKernel } from "./pool-grad.ts";
import { reduceKernel } from "./reduce.ts";

export type KernelGenerator = (kb: KernelBuilder, what: string) => Kernel;

export { elementwiseKernel } from "./elementwise.ts";

export const KERNELS: Readonly<Record<KernelName, KernelGenerator>> = {
  reduce: reduceKernel,
  argmax: reduceKernel,
  matmul: matmulKernel,
  conv2d: conv2dKernel,
  pool: poolKernel,
  conv2d_grad_input: conv2dGradInputKernel,
  conv2d_grad_filter: conv2dGradFilterKernel,
  pool_grad: poolGradKernel,
};
