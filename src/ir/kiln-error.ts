/** Kiln's error classes, with no imports: every bundle's generated loader ships this file as
 *  text (compiler/bundle/loader.ts SHIPPED_SOURCES), so a bundle throws the same types. */

export class KilnError extends Error {
  override name = "KilnError";
}

/** WebGPU reported a validation error, out-of-memory, an internal error or a lost device. */
export class GpuError extends KilnError {
  override name = "GpuError";
}
