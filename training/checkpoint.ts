/** fit's checkpoints: `dir`/checkpoint.safetensors holds every weight, the optimizer's slots, the
 *  step counter (which also keys dropout's noise), and in its metadata the epochs done (the
 *  shuffles' counter: a resumed fit replays that many shuffles), the history so far and early stopping's best (its weights too). One file, written
 *  to a temporary name and renamed (formats/safetensors.ts writeFileAtomic), so a crash or a
 *  lost device mid-write leaves the previous checkpoint whole. */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { KilnError } from "../src/ir/errors.ts";
import { readSafetensors, toSafeDtype, writeSafetensors, type SafeTensor } from "../formats/safetensors.ts";

const FORMAT = "kiln-checkpoint/1";
export const checkpointFile = (dir: string): string => join(dir, "checkpoint.safetensors");

export interface CheckpointState {
  /** Epochs completed. */
  readonly epoch: number;
  /** The fit's History so far (JSON). */
  readonly history: unknown;
  /** Early stopping's best so far. */
  readonly best: { readonly value: number; readonly epoch: number };
  /** The seed the epochs' shuffles derive from. */
  readonly seed: number;
}

/** Early stopping's best weights are kept beside the current ones under this prefix. */
const BEST = "best:";

export function writeCheckpoint(
  dir: string,
  weights: ReadonlyMap<string, Float32Array>,
  state: CheckpointState,
  best?: ReadonlyMap<string, Float32Array>,
): void {
  mkdirSync(dir, { recursive: true });
  const tensors: Record<string, SafeTensor> = {};
  for (const [name, data] of weights) tensors[name] = { dtype: toSafeDtype("f32"), shape: [data.length], data };
  for (const [name, data] of best ?? []) tensors[`${BEST}${name}`] = { dtype: toSafeDtype("f32"), shape: [data.length], data };
  writeSafetensors(checkpointFile(dir), tensors, {
    format: FORMAT,
    state: JSON.stringify({ ...state, best: { value: String(state.best.value), epoch: state.best.epoch } }),
  });
}

export function readCheckpoint(
  dir: string,
  expected: ReadonlyMap<string, number>,
): { weights: Map<string, Float32Array>; best?: Map<string, Float32Array>; state: CheckpointState } {
  const path = checkpointFile(dir);
  if (!existsSync(path)) throw new KilnError(`fit resumeFrom: no such file ${path} (a folder that fit's checkpoint option wrote)`);
  const file = readSafetensors(path);
  if (file.metadata.format !== FORMAT) throw new KilnError(`${path}: not a Kiln checkpoint (format "${file.metadata.format ?? "none"}")`);
  const weights = new Map<string, Float32Array>();
  for (const [name, n] of expected) {
    const t = file.tensors[name];
    if (!t) throw new KilnError(`${path}: lacks ${name}: it was written by another model or optimizer`);
    if (t.data.length !== n) throw new KilnError(`${path}: ${name} has ${t.data.length} values, the model's has ${n}`);
    weights.set(name, Float32Array.from(t.data as Float32Array));
  }
  let best: Map<string, Float32Array> | undefined;
  if (Object.keys(file.tensors).some((k) => k.startsWith(BEST))) {
    best = new Map();
    for (const [name, n] of expected) {
      const t = file.tensors[`${BEST}${name}`];
      if (!t || t.data.length !== n) throw new KilnError(`${path}: early stopping's best weights lack ${name} or have another size`);
      best.set(name, Float32Array.from(t.data as Float32Array));
    }
  }
  const extra = Object.keys(file.tensors).filter((k) => !expected.has(k) && !(k.startsWith(BEST) && expected.has(k.slice(BEST.length))));
  if (extra.length) throw new KilnError(`${path}: holds ${extra.join(", ")}, which this model does not have`);
  const raw = JSON.parse(file.metadata.state ?? "{}") as CheckpointState & { best: { value: string; epoch: number } };
  return { weights, ...(best ? { best } : {}), state: { ...raw, best: { value: Number(raw.best.value), epoch: raw.best.epoch } } };
}
