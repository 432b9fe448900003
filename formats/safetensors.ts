/** safetensors files: the codec (./safetensors-codec.ts, shipped in every bundle) and the file
 *  I/O of Kiln's readers and writers, which a bundle does not need. */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { KilnError } from "../src/ir/kiln-error.ts";
import { decodeSafetensors, encodeSafetensors, type SafeTensor, type SafetensorsFile } from "./safetensors-codec.ts";

export * from "./safetensors-codec.ts";

/** Writes `bytes` to `path + ".tmp-<pid>"`, flushes it, then renames: readers see the old file or the
 *  whole new one, never half of it. */
export function writeFileAtomic(path: string, bytes: Uint8Array | string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    const fd = openSync(tmp, "w");
    try {
      const buf = typeof bytes === "string" ? Buffer.from(bytes, "utf8") : bytes;
      for (let at = 0; at < buf.byteLength; ) at += writeSync(fd, buf, at, buf.byteLength - at);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

export function writeSafetensors(path: string, tensors: Record<string, SafeTensor>, metadata?: Record<string, string>): void {
  writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}

export function readSafetensors(path: string): SafetensorsFile {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new KilnError(`safetensors ${path}: cannot read (${(e as Error).message})`);
  }
  return decodeSafetensors(bytes, path);
}
