/** oneHot in a module of its own: the gather op's gradient (src/ops/gather.ts) builds it, and
 *  importing it from ./composites.ts would close a cycle (composites → builder → op table → gather). */
import { KilnError } from "../ir/errors.ts";
import { isValidDim } from "../ir/shape.ts";
import type { DType, Dim } from "../ir/types.ts";
import type { Tensor } from "./builder.ts";

/** oneHot(indices, depth): [...S] i32 → [...S, depth], 1 where the new axis's position equals
 *  the index, else 0; an index outside 0..depth-1 gives a row of zeros. The depth may be a
 *  symbolic dim. An iota compared with the indices expanded along the new axis, then cast: no
 *  primitive of its own. */
export function oneHot(indices: Tensor, depth: Dim, dtype: DType = "f32"): Tensor {
  if (indices.dtype !== "i32") throw new KilnError(`oneHot: indices must be i32, got ${indices.dtype}`);
  if (!isValidDim(depth) || depth === 0)
    throw new KilnError(`oneHot: depth must be a positive integer, got ${JSON.stringify(depth)} (or a symbolic dim such as "V")`);
  const shape = [...indices.shape, depth];
  const positions = indices.builder.iota(shape, indices.rank, "i32");
  return positions.eq(indices.reshape([...indices.shape, 1]).expand(shape)).cast(dtype);
}
