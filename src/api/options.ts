/** Checks of what users pass to the model API, with messages in their terms:
 *      fit: unknown option "epoch" (did you mean "epochs"?); options are epochs, batchSize, …
 *      dense: units must be an integer ≥ 1, got 0
 *  Used by the layers, the model builders and training/ (compileModel, fit, evaluate, predict). */
import { KilnError } from "../ir/errors.ts";

/** Edit distance (insertions, deletions, substitutions, and swaps of neighbours). */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The closest of `names` to `given` (ignoring case and "_"), if it is close enough to be a typo. */
export function closest(given: string, names: readonly string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/_/g, "");
  let best: string | undefined;
  let bestD = Infinity;
  for (const n of names) {
    const dd = distance(norm(given), norm(n));
    if (dd < bestD) [best, bestD] = [n, dd];
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(Math.min(given.length, best.length) / 3)) ? best : undefined;
}

/** ' (did you mean "epochs"?)' or "". */
export const didYouMean = (given: string, names: readonly string[]): string => {
  const c = closest(given, names);
  return c ? ` (did you mean "${c}"?)` : "";
};

const kindOf = (v: unknown): string =>
  v === null
    ? "null"
    : Array.isArray(v)
      ? "an array"
      : typeof v === "string"
        ? `the string "${v}"`
        : typeof v === "object"
          ? "an object"
          : `${typeof v} ${String(v)}`;

/** `given` must be undefined or a plain object whose keys are all in `names`. */
export function checkOptions(what: string, given: unknown, names: readonly string[]): void {
  if (given === undefined) return;
  if (given === null || typeof given !== "object" || Array.isArray(given))
    throw new KilnError(`${what}: options must be an object such as { ${names[0]}: … }, got ${kindOf(given)}`);
  for (const k of Object.keys(given)) {
    if (!names.includes(k))
      throw new KilnError(`${what}: unknown option "${k}"${didYouMean(k, names)}; the options are ${names.join(", ")}`);
  }
}

/** An integer ≥ `min` (the message says what the number means). */
export function checkInt(what: string, name: string, v: unknown, min: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min)
    throw new KilnError(`${what}: ${name} must be an integer ≥ ${min}, got ${typeof v === "number" ? v : kindOf(v)}`);
  return v;
}

/** A finite number in [lo, hi] (`open` excludes the ends it names). */
export function checkRange(
  what: string,
  name: string,
  v: unknown,
  lo: number,
  hi: number,
  open: { lo?: boolean; hi?: boolean } = {},
): number {
  const ok = typeof v === "number" && Number.isFinite(v) && (open.lo ? v > lo : v >= lo) && (open.hi ? v < hi : v <= hi);
  if (!ok) {
    const range = `${open.lo ? "(" : "["}${lo}, ${hi === Infinity ? "∞" : hi}${open.hi || hi === Infinity ? ")" : "]"}`;
    throw new KilnError(`${what}: ${name} must be a number in ${range}, got ${typeof v === "number" ? v : kindOf(v)}`);
  }
  return v as number;
}

/** One of `names` (case as given). */
export function checkChoice<T extends string>(what: string, name: string, v: unknown, names: readonly T[]): T {
  if (typeof v !== "string" || !names.includes(v as T)) {
    const hint = typeof v === "string" ? didYouMean(v, names) : "";
    throw new KilnError(`${what}: ${name} must be one of ${names.map((n) => `"${n}"`).join(", ")}, got ${kindOf(v)}${hint}`);
  }
  return v as T;
}
