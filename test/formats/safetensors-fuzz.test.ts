/** The one safetensors decoder (formats/safetensors-codec.ts, which every bundle loader ships)
 *  against mutated files: byte flips, truncations and extensions anywhere, and header edits
 *  (offsets moved, overlapped, swapped or out of order, tensors renamed, dropped or added,
 *  dtypes and shapes changed, fields of the wrong type) with the header length kept right.
 *    decoder:  every file is refused with a KilnError or decoded; a decoded file is valid by an
 *              independent reading of the spec (the test's own: offsets tile the data section,
 *              sizes match dtype × shape) and its tensors are the bytes at their offsets; when the
 *              header says what the original's says and the data section is unchanged, they
 *              equal the original's ("loaded equal").
 *    bundle:   a bundle's weights check (decoder + the manifest's state: names, dtypes, shapes,
 *              nothing extra) refuses every header edit that changes what a state input is, so
 *              renamed, reshaped or retyped tensors never load; the SHA-256 in the manifest
 *              refuses every changed byte (tested in bundle-fuzz.test.ts).
 *  KILN_FUZZ=n sets the number of mutated files (default 2,000); the counts are printed. */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { KilnError } from "../../src/ir/errors.ts";
import { decodeSafetensors, encodeSafetensors, type SafeTensor } from "../../formats/safetensors.ts";
import { bundleWeights } from "../../runtime/bundle-runtime.ts";

const RUNS = Number(process.env.KILN_FUZZ ?? 2000);

const ORIGINAL: Record<string, SafeTensor> = {
  "dense/kernel": { dtype: "F32", shape: [3, 2], data: Float32Array.from([1, -2, 3.5, 0, 1e-3, 7]) },
  "dense/bias": { dtype: "F32", shape: [2], data: Float32Array.from([0.25, -0.5]) },
  steps: { dtype: "I32", shape: [], data: Int32Array.from([42]) },
  seen: { dtype: "U32", shape: [2, 1], data: Uint32Array.from([5, 6]) },
  mask: { dtype: "BOOL", shape: [3], data: Uint8Array.from([1, 0, 1]) },
};
const FILE = encodeSafetensors(ORIGINAL, { framework: "kiln" });
const headerLen = (b: Uint8Array) => Number(new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true));
const HEADER = JSON.parse(new TextDecoder().decode(FILE.subarray(8, 8 + headerLen(FILE))));
const DATA = FILE.subarray(8 + headerLen(FILE));
/** The manifest's view of the same weights (all but metadata are state inputs). */
const STATE = {
  weights: { file: "weights.safetensors", bytes: FILE.length, sha256: "" },
  state: Object.entries(ORIGINAL).map(([name, t], i) => ({
    name,
    dtype: ({ F32: "f32", I32: "i32", U32: "u32", BOOL: "bool" } as const)[t.dtype],
    shape: [...t.shape],
    buffer: i,
    update: null,
  })),
};

function withHeader(header: unknown, data: Uint8Array = DATA): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

type Mutation = { bytes: Uint8Array; headerOnly: boolean; what: string };
const names = Object.keys(ORIGINAL);
const weird = fc.constantFrom<unknown>(-1, 0, 1, 3, 4, 2 ** 32, 2 ** 53, 1e300, 0.5, NaN, "8", null, [], {}, [1, 2, 3], true);

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }).map(({ at, bit }) => {
    const bytes = FILE.slice();
    const i = at % bytes.length;
    bytes[i] ^= 1 << bit;
    return { bytes, headerOnly: i < 8 + headerLen(FILE), what: `flip bit ${bit} of byte ${i}` };
  }),
  fc.nat().map((n) => ({ bytes: FILE.slice(0, n % FILE.length), headerOnly: false, what: `truncate to ${n % FILE.length}` })),
  fc.uint8Array({ minLength: 1, maxLength: 16 }).map((extra) => {
    const bytes = new Uint8Array(FILE.length + extra.length);
    bytes.set(FILE);
    bytes.set(extra, FILE.length);
    return { bytes, headerOnly: false, what: `append ${extra.length} bytes` };
  }),
  fc.record({ t: fc.constantFrom(...names), field: fc.constantFrom("dtype", "shape", "data_offsets"), v: weird }).map(({ t, field, v }) => {
    const h = structuredClone(HEADER);
    h[t][field] = v;
    return { bytes: withHeader(h), headerOnly: true, what: `${t}.${field} = ${JSON.stringify(v)}` };
  }),
  fc
    .record({ t: fc.constantFrom(...names), end: fc.boolean(), by: fc.integer({ min: -9, max: 9 }).filter((d) => d !== 0) })
    .map(({ t, end, by }) => {
      const h = structuredClone(HEADER);
      h[t].data_offsets[end ? 1 : 0] += by;
      return { bytes: withHeader(h), headerOnly: true, what: `${t} offset ${end ? "end" : "begin"} ${by > 0 ? "+" : ""}${by}` };
    }),
  fc.record({ a: fc.constantFrom(...names), b: fc.constantFrom(...names) }).map(({ a, b }) => {
    const h = structuredClone(HEADER);
    [h[a].data_offsets, h[b].data_offsets] = [h[b].data_offsets, h[a].data_offsets];
    return { bytes: withHeader(h), headerOnly: true, what: `swap the offsets of ${a} and ${b}` };
  }),
  fc
    .record({ t: fc.constantFrom(...names), to: fc.constantFrom("dense/kernel ", "Dense/kernel", "__proto__", "", "other", "steps") })
    .map(({ t, to }) => {
      const h = Object.fromEntries(Object.entries(structuredClone(HEADER)).map(([k, v]) => [k === t ? to : k, v]));
      return { bytes: withHeader(h), headerOnly: true, what: `rename ${t} to ${JSON.stringify(to)}` };
    }),
  fc.constantFrom(...names).map((t) => {
    const h = structuredClone(HEADER);
    delete h[t];
    return { bytes: withHeader(h), headerOnly: true, what: `drop ${t}` };
  }),
  fc.constantFrom(...names).map((t) => {
    const h = structuredClone(HEADER);
    h[`${t}_copy`] = h[t];
    return { bytes: withHeader(h), headerOnly: true, what: `duplicate ${t}` };
  }),
  fc.record({ len: fc.integer({ min: -20, max: 20 }).filter((d) => d !== 0) }).map(({ len }) => {
    const bytes = FILE.slice();
    new DataView(bytes.buffer).setBigUint64(0, BigInt(Math.max(0, headerLen(FILE) + len)), true);
    return { bytes, headerOnly: true, what: `header length ${len > 0 ? "+" : ""}${len}` };
  }),
  fc.constant({ bytes: withHeader({ ...HEADER }), headerOnly: true, what: "header re-serialized (same meaning)" }),
);

/** The spec, read independently: the header's tensors tile the data section exactly. */
function validBySpec(bytes: Uint8Array, t: Record<string, SafeTensor>): boolean {
  const n = headerLen(bytes);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  const data = bytes.subarray(8 + n);
  const entries = Object.entries(header).filter(([k]) => k !== "__metadata__") as [
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] },
  ][];
  if (entries.length !== Object.keys(t).length) return false;
  let at = 0;
  for (const [name, e] of [...entries].sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0])) {
    const width = e.dtype === "BOOL" ? 1 : 4;
    const [b, end] = e.data_offsets;
    if (b !== at || end - b !== e.shape.reduce((a, d) => a * d, 1) * width) return false;
    const got = t[name];
    if (!got || got.dtype !== e.dtype || got.shape.join() !== e.shape.join()) return false;
    const raw = new Uint8Array(got.data.buffer, got.data.byteOffset, got.data.byteLength);
    if (raw.some((x, i) => x !== data[b + i])) return false;
    at = end;
  }
  return at === data.length;
}

const sameTensors = (a: Record<string, SafeTensor>, b: Record<string, SafeTensor>) =>
  Object.keys(a).sort().join() === Object.keys(b).sort().join() &&
  Object.entries(a).every(([k, t]) => t.dtype === b[k].dtype && t.shape.join() === b[k].shape.join() && t.data.join() === b[k].data.join());

describe("safetensors fuzz", () => {
  test(`${RUNS} mutated files: refused with a KilnError, or valid and decoded as the file says; header edits reach a bundle's state only with the declared names and types`, () => {
    const counts = { refused: 0, equal: 0, "valid other file": 0, "bundle refused": 0, "bundle equal": 0, "bundle other values": 0 };
    fc.assert(
      fc.property(mutation, ({ bytes, headerOnly, what }) => {
        let t: Record<string, SafeTensor> | undefined;
        try {
          t = decodeSafetensors(bytes, "fuzz").tensors;
        } catch (e) {
          if (!(e instanceof KilnError)) throw new Error(`${what}: not a KilnError: ${e}`);
          expect((e as Error).message, what).toMatch(/^safetensors fuzz: /);
          counts.refused++;
        }
        if (t) {
          expect(validBySpec(bytes, t), `${what}: accepted a file the spec refuses`).toBe(true);
          const same = sameTensors(t, ORIGINAL);
          const untouchedData =
            bytes.length - 8 - headerLen(bytes) === DATA.length && bytes.subarray(8 + headerLen(bytes)).every((x, i) => x === DATA[i]);
          if (
            untouchedData &&
            JSON.stringify(Object.entries(JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen(bytes))))).sort()) ===
              JSON.stringify(Object.entries(HEADER).sort())
          )
            expect(same, `${what}: same header and data, other tensors`).toBe(true);
          counts[same ? "equal" : "valid other file"]++;
        }
        if (!headerOnly) return;
        // A bundle's weights check: an edited header loads only if every state input is as declared.
        try {
          const w = bundleWeights(STATE, bytes);
          for (const s of STATE.state) {
            const got = w.get(s.name)!;
            expect(got.shape.join(), what).toBe(s.shape.join());
            expect(got.dtype, what).toBe(ORIGINAL[s.name].dtype);
          }
          // Same names and types but other values (two equal-sized tensors' offsets swapped): only
          // the manifest's SHA-256 tells, and it does (bundle-fuzz.test.ts).
          counts[sameTensors(Object.fromEntries(w), ORIGINAL) ? "bundle equal" : "bundle other values"]++;
        } catch (e) {
          if (!(e instanceof KilnError)) throw new Error(`${what}: bundle: not a KilnError: ${e}`);
          counts["bundle refused"]++;
        }
      }),
      { numRuns: RUNS, seed: 12 },
    );
    console.info(`safetensors fuzz (${RUNS}):`, JSON.stringify(counts));
    expect(counts.refused).toBeGreaterThan(RUNS / 4);
    expect(counts.equal).toBeGreaterThan(0);
  });
});
