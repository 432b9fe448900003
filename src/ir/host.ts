/** A tensor on the host: a concrete shape and row-major values (any numeric array). What the
 *  interpreter, the runtime and the training loop take as data. */
export interface HostTensor {
  readonly shape: readonly number[];
  readonly data: ArrayLike<number>;
}
