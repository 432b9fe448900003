/** What fit / evaluate / predict are given, checked on the host before anything is compiled or run,
 *  with messages in the user's terms:
 *    data: `{ shape, data }`, a typed array or a flat array of numbers (examples of the model's
 *          shape, one after another), or a nested array ([[0.1, 0.2, 0.3], …]);
 *    options: known names only (with a "did you mean"), integer epochs ≥ 0 and batchSize ≥ 1. */
import { checkInt, checkOptions, checkRange } from "../src/api/options.ts";
import { KilnError } from "../src/ir/errors.ts";
import type { HostTensor } from "../src/ir/host.ts";

const FORMS = "{ shape, data }, a typed array, or a nested array of numbers";

const describe = (v: unknown): string =>
  v === null
    ? "null"
    : v === undefined
      ? "nothing (undefined)"
      : typeof v === "string"
        ? `the string "${v.length > 20 ? `${v.slice(0, 20)}…` : v}"`
        : Array.isArray(v)
          ? "an array"
          : typeof v === "object"
            ? `an object with keys ${Object.keys(v).join(", ") || "none"}`
            : `${typeof v} ${String(v)}`;

const isTyped = (v: unknown): v is ArrayLike<number> => ArrayBuffer.isView(v) && !(v instanceof DataView);

/** Every element a number (NaN and ±inf are numbers; strings, null, booleans are not). */
function checkNumbers(what: string, data: ArrayLike<unknown>): void {
  if (isTyped(data)) return;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (typeof v !== "number")
      throw new KilnError(`${what}: element ${i} is ${describe(v)}; the data must be numbers (convert strings with Number(...) first)`);
  }
}

/** A nested array's shape and its values in row-major order, or an error saying where it is ragged. */
function fromNested(what: string, v: readonly unknown[]): HostTensor {
  const shape: number[] = [];
  for (let a: unknown = v; Array.isArray(a); a = a[0]) shape.push(a.length);
  const data: number[] = [];
  const walk = (a: unknown, depth: number, path: string): void => {
    if (depth === shape.length) {
      if (typeof a !== "number")
        throw new KilnError(`${what}${path} is ${describe(a)}; the data must be numbers (convert strings with Number(...) first)`);
      data.push(a);
      return;
    }
    if (!Array.isArray(a) || a.length !== shape[depth])
      throw new KilnError(
        `${what}${path} is ${Array.isArray(a) ? `an array of ${a.length}` : describe(a)} where [${shape.slice(depth)}] was expected: nested arrays must be rectangular`,
      );
    for (let i = 0; i < a.length; i++) walk(a[i], depth + 1, `${path}[${i}]`);
  };
  walk(v, 0, "");
  return { shape, data };
}

/** `given` as a HostTensor whose examples have `example` shape (batch dim first). A flat typed
 *  or plain array is that many examples one after another. */
export function toHostTensor(what: string, given: unknown, example: readonly number[]): HostTensor {
  const per = example.reduce((a, d) => a * d, 1);
  const flat = (data: ArrayLike<number>): HostTensor => {
    if (per === 0 || data.length % per !== 0)
      throw new KilnError(`${what}: ${data.length} values are not a whole number of examples of shape [${example}] (${per} values each)`);
    return { shape: [data.length / per, ...example], data };
  };
  if (isTyped(given)) return flat(given);
  if (Array.isArray(given)) {
    if (given.length === 0) throw new KilnError(`${what}: no examples (an empty array)`);
    if (!Array.isArray(given[0])) {
      checkNumbers(what, given);
      return flat(given as number[]);
    }
    return fromNested(what, given);
  }
  if (given !== null && typeof given === "object" && "shape" in given && "data" in given) {
    const { shape, data } = given as { shape: unknown; data: unknown };
    if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0))
      throw new KilnError(`${what}: shape must be an array of non-negative integers such as [60000, 784], got ${JSON.stringify(shape)}`);
    if (!(isTyped(data) || Array.isArray(data)))
      throw new KilnError(`${what}: data must be a typed array or an array of numbers, got ${describe(data)}`);
    if (Array.isArray(data) && Array.isArray(data[0]))
      throw new KilnError(`${what}: data must be flat (row-major) with { shape, data }; pass a nested array by itself instead`);
    checkNumbers(what, data as ArrayLike<unknown>);
    const n = (shape as number[]).reduce((a, d) => a * d, 1);
    if (data.length !== n) throw new KilnError(`${what}: shape [${shape}] holds ${n} values but data has ${data.length}`);
    return { shape: shape as number[], data: data as ArrayLike<number> };
  }
  throw new KilnError(`${what} must be ${FORMS} (e.g. [[0.1, 0.2, 0.3], …] for examples of shape [${example}]); got ${describe(given)}`);
}

/** Training data must be finite: a NaN or an infinity in one example would spread to every weight. */
export function checkFinite(what: string, t: HostTensor): void {
  const d = t.data;
  const row = t.shape.slice(1).reduce((a, n) => a * n, 1) || 1;
  for (let i = 0; i < d.length; i++) {
    if (!Number.isFinite(d[i]))
      throw new KilnError(
        `${what}: example ${Math.floor(i / row)} holds ${d[i]} (element ${i} of the data); training data must be finite numbers — drop or impute that example`,
      );
  }
}

/** Sparse class labels in [0, classes): refused on the host, before any step trains on them. */
export function checkClassLabels(what: string, y: HostTensor, classes: number): void {
  const d = y.data;
  for (let i = 0; i < d.length; i++) {
    const v = d[i];
    if (!(Number.isInteger(v) && v >= 0 && v < classes)) {
      throw new KilnError(
        `${what}: label ${i} is ${v}, but the model has ${classes} classes: sparse labels must be integers 0 … ${classes - 1}` +
          (Number.isInteger(v) && v >= classes ? " (is the last layer's size the number of classes?)" : ""),
      );
    }
  }
}

export const FIT_OPTIONS = [
  "epochs",
  "batchSize",
  "shuffle",
  "seed",
  "validationSplit",
  "validationData",
  "earlyStopping",
  "verbose",
  "stream",
  "logEvery",
  "plot",
  "onEpoch",
  "checkpoint",
  "resumeFrom",
] as const;

/** fit's numbers: epochs an integer ≥ 0 (0 trains nothing, as Keras), batchSize an integer ≥ 1. */
export function checkFitOptions(opts: unknown): void {
  if (opts === undefined) throw new KilnError("fit: needs options with the number of epochs, e.g. fit(x, y, { epochs: 10 })");
  checkOptions("fit", opts, FIT_OPTIONS);
  const o = opts as Record<string, unknown>;
  if (o.epochs === undefined) throw new KilnError("fit: epochs is missing: say how many passes over the data, e.g. { epochs: 10 }");
  checkInt("fit", "epochs", o.epochs, 0);
  if (o.batchSize !== undefined) checkInt("fit", "batchSize", o.batchSize, 1);
  if (o.logEvery !== undefined) checkInt("fit", "logEvery", o.logEvery, 1);
  if (o.seed !== undefined) checkInt("fit", "seed", o.seed, 0);
  if (o.verbose !== undefined && ![0, 1, 2].includes(o.verbose as number))
    throw new KilnError(`fit: verbose must be 0 (silent), 1 (progress bar) or 2 (a line per epoch), got ${String(o.verbose)}`);
  if (o.validationSplit !== undefined) checkRange("fit", "validationSplit", o.validationSplit, 0, 1, { hi: true });
  if (o.validationData !== undefined && (!Array.isArray(o.validationData) || o.validationData.length !== 2))
    throw new KilnError("fit: validationData must be a pair [x, y]");
  if (o.validationSplit && o.validationData !== undefined) throw new KilnError("fit: give validationSplit or validationData, not both");
  if (o.earlyStopping !== undefined) {
    checkOptions("fit earlyStopping", o.earlyStopping, ["monitor", "patience", "minDelta", "restoreBestWeights"]);
    const es = o.earlyStopping as Record<string, unknown>;
    if (es.patience !== undefined) checkInt("fit earlyStopping", "patience", es.patience, 0);
    if (es.minDelta !== undefined) checkRange("fit earlyStopping", "minDelta", es.minDelta, 0, Infinity);
  }
  if (o.plot !== undefined && (typeof o.plot !== "string" || o.plot === ""))
    throw new KilnError(`fit: plot must be a file path such as "out/curves.svg", got ${describe(o.plot)}`);
  if (o.checkpoint !== undefined) {
    checkOptions("fit checkpoint", o.checkpoint, ["dir", "every"]);
    const c = o.checkpoint as Record<string, unknown>;
    if (typeof c.dir !== "string" || c.dir === "") throw new KilnError(`fit checkpoint: dir must be a folder path, got ${describe(c.dir)}`);
    if (c.every !== undefined) checkInt("fit checkpoint", "every (epochs between checkpoints)", c.every, 1);
  }
  if (o.resumeFrom !== undefined && (typeof o.resumeFrom !== "string" || o.resumeFrom === ""))
    throw new KilnError(`fit: resumeFrom must be a checkpoint folder, got ${describe(o.resumeFrom)}`);
}

/** evaluate's and predict's options: { batchSize } only. */
export function checkBatchOptions(what: string, opts: unknown): void {
  checkOptions(what, opts, ["batchSize"]);
  const b = (opts as { batchSize?: unknown } | undefined)?.batchSize;
  if (b !== undefined) checkInt(what, "batchSize", b, 1);
}
