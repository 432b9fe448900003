/** Errors that name the op, the shapes and where the node was made:
 *    matmul %4 @ mlp.ts:12: inner dims differ (f32[B,784] × f32[500,10]) */
import { formatType } from "./shape.ts";
import type { TensorType } from "./types.ts";

import { KilnError } from "./kiln-error.ts";

export { GpuError, KilnError } from "./kiln-error.ts";

/** A shape or dtype rule rejected its inputs. Op rules throw it without a site; the builder adds one. */
export class ShapeError extends KilnError {
  override name = "ShapeError";
}

export class VerifyError extends KilnError {
  override name = "VerifyError";
}

export function describeNode(op: string, id: number | undefined, site: string): string {
  return `${op}${id === undefined ? "" : ` %${id}`}${site ? ` @ ${site}` : ""}`;
}

export const formatTypes = (ts: readonly TensorType[]): string => ts.map(formatType).join(" × ");
