import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, test } from "vitest";
import { KilnError } from "../../src/ir/errors.ts";
import {
  checkAgainst,
  decodeSafetensors,
  encodeSafetensors,
  readSafetensors,
  writeSafetensors,
  type SafeDtype,
  type SafeTensor,
} from "../../formats/safetensors.ts";

const dir = mkdtempSync(join(tmpdir(), "kiln-st-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const arrays = { F32: Float32Array, I32: Int32Array, U32: Uint32Array, BOOL: Uint8Array } as const;

const tensorArb: fc.Arbitrary<SafeTensor> = fc
  .record({
    dtype: fc.constantFrom<SafeDtype>("F32", "I32", "U32", "BOOL"),
    shape: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }), // [] is a scalar; a 0 dim is empty
  })
  .chain(({ dtype, shape }) => {
    const n = shape.reduce((a, d) => a * d, 1);
    const v =
      dtype === "F32"
        ? fc.float({ noNaN: true })
        : dtype === "I32"
          ? fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })
          : dtype === "U32"
            ? fc.nat({ max: 2 ** 32 - 1 })
            : fc.integer({ min: 0, max: 1 });
    return fc.array(v, { minLength: n, maxLength: n }).map((xs) => ({ dtype, shape, data: arrays[dtype].from(xs) }));
  });

/** A small valid file and its header, to corrupt. */
function sample(): Uint8Array {
  return encodeSafetensors(
    {
      "dense_1/kernel": { dtype: "F32", shape: [2, 3], data: Float32Array.of(1, 2, 3, 4, 5, 6) },
      "dense_1/bias": { dtype: "F32", shape: [3], data: Float32Array.of(-1, 0, 1) },
      step: { dtype: "I32", shape: [], data: Int32Array.of(7) },
    },
    { format: "kiln" },
  );
}
function withHeader(header: object, data: Uint8Array): Uint8Array {
  const json = Buffer.from(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}
const decodeError = (bytes: Uint8Array): string => {
  try {
    decodeSafetensors(bytes, "model.safetensors");
  } catch (e) {
    expect(e).toBeInstanceOf(KilnError);
    expect((e as Error).message).toContain("safetensors model.safetensors:");
    return (e as Error).message;
  }
  throw new Error("decode accepted a corrupt file");
};

describe("safetensors", () => {
  test("round trip over random names, dtypes and shapes (scalars, empty tensors)", () => {
    fc.assert(
      fc.property(
        fc.dictionary(
          fc
            .oneof(fc.string({ minLength: 1, maxLength: 8 }), fc.constantFrom("__proto__", "constructor", "dense_1/kernel"))
            .filter((s) => s !== "__metadata__"),
          tensorArb,
          { maxKeys: 6 },
        ),
        fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 3 }),
        (tensors, metadata) => {
          const bytes = encodeSafetensors(tensors, metadata);
          const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
          expect(headerLen % 8).toBe(0);
          const back = decodeSafetensors(bytes);
          expect(back.metadata).toEqual(metadata);
          expect(Object.keys(back.tensors).sort()).toEqual(Object.keys(tensors).sort());
          for (const [name, t] of Object.entries(tensors)) {
            const b = back.tensors[name];
            expect(b.dtype).toBe(t.dtype);
            expect(b.shape).toEqual(t.shape);
            expect(b.data).toEqual(t.data); // same typed-array class and values (-0 and +0 differ under toEqual)
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  test("a tensor named __proto__ is an ordinary name", () => {
    const tensors = Object.fromEntries([["__proto__", { dtype: "F32", shape: [1], data: Float32Array.of(2) }]]) as Record<
      string,
      SafeTensor
    >;
    const back = decodeSafetensors(encodeSafetensors(tensors));
    expect(Object.keys(back.tensors)).toEqual(["__proto__"]);
    expect(Object.getOwnPropertyDescriptor(back.tensors, "__proto__")?.value.data).toEqual(Float32Array.of(2));
  });

  test("golden bytes of a tiny file, built by hand from the spec", () => {
    const bytes = encodeSafetensors({
      a: { dtype: "I32", shape: [1], data: Int32Array.of(-2) },
      b: { dtype: "F32", shape: [2], data: Float32Array.of(1, 0.5) },
    });
    // HF's order: dtype rank descending (F32 before I32), then name, so "b" comes first.
    const json = '{"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"I32","shape":[1],"data_offsets":[8,12]}}';
    expect(json.length).toBe(108); // padded with 4 spaces to 112
    const expected = [
      112,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      ...[...json].map((c) => c.charCodeAt(0)),
      32,
      32,
      32,
      32,
      0x00,
      0x00,
      0x80,
      0x3f, // 1.0f
      0x00,
      0x00,
      0x00,
      0x3f, // 0.5f
      0xfe,
      0xff,
      0xff,
      0xff, // -2
    ];
    expect([...bytes]).toEqual(expected);
  });

  test("parses a hand-built file with unsorted header keys, padding and metadata", () => {
    const data = new Uint8Array([1, 0, 0x00, 0x00, 0x20, 0x41, 0x05, 0x00, 0x00, 0x00]); // BOOL[2], F32 10.0, U32 5
    const bytes = withHeader(
      {
        w: { dtype: "F32", shape: [], data_offsets: [2, 6] },
        __metadata__: { format: "pt" },
        m: { dtype: "BOOL", shape: [2], data_offsets: [0, 2] },
        u: { dtype: "U32", shape: [1, 1], data_offsets: [6, 10] },
      },
      data,
    );
    const f = decodeSafetensors(bytes);
    expect(f.metadata).toEqual({ format: "pt" });
    expect(f.tensors.w).toEqual({ dtype: "F32", shape: [], data: Float32Array.of(10) });
    expect(f.tensors.m.data).toEqual(Uint8Array.of(1, 0));
    expect(f.tensors.u).toEqual({ dtype: "U32", shape: [1, 1], data: Uint32Array.of(5) });
  });

  test("writes atomically and reads back from disk", () => {
    const path = join(dir, "w.safetensors");
    writeSafetensors(path, { x: { dtype: "F32", shape: [2], data: Float32Array.of(3, 4) } }, { epoch: "3" });
    expect(readdirSync(dir).filter((f) => f.includes(".tmp-"))).toEqual([]);
    expect(readSafetensors(path)).toEqual({
      tensors: { x: { dtype: "F32", shape: [2], data: Float32Array.of(3, 4) } },
      metadata: { epoch: "3" },
    });
    // A failed write (bad data) leaves the previous file intact and no temporary behind.
    expect(() => writeSafetensors(path, { x: { dtype: "F32", shape: [3], data: Float32Array.of(1) } })).toThrow(
      /3 elements but the data has 1/,
    );
    expect(readSafetensors(path).tensors.x.data).toEqual(Float32Array.of(3, 4));
    expect(readdirSync(dir).filter((f) => f.includes(".tmp-"))).toEqual([]);
    expect(() => readSafetensors(join(dir, "absent.safetensors"))).toThrow(/absent\.safetensors: cannot read/);
  });

  test("rejects bad tensors on write", () => {
    expect(() => encodeSafetensors({ x: { dtype: "I32", shape: [1], data: Float32Array.of(1) } })).toThrow(
      /I32 needs a Int32Array, got Float32Array/,
    );
    expect(() => encodeSafetensors({ x: { dtype: "F16" as SafeDtype, shape: [1], data: Float32Array.of(1) } })).toThrow(
      /unknown dtype F16/,
    );
    expect(() => encodeSafetensors({ x: { dtype: "F32", shape: [-1], data: Float32Array.of(1) } })).toThrow(/bad shape/);
    expect(() => encodeSafetensors({ __metadata__: { dtype: "F32", shape: [], data: Float32Array.of(1) } })).toThrow(/reserved/);
  });

  test("truncation at any byte fails clearly", () => {
    const bytes = sample();
    fc.assert(
      fc.property(fc.integer({ min: 0, max: bytes.length - 1 }), (cut) => {
        expect(decodeError(bytes.subarray(0, cut))).toMatch(/too short|runs past the end|truncated|cover/);
      }),
      { numRuns: 100 },
    );
    expect(decodeError(bytes.subarray(0, 5))).toMatch(/5 bytes, too short/);
    expect(decodeError(bytes.subarray(0, bytes.length - 1))).toMatch(/out of bounds: data is truncated/);
  });

  test("a corrupt header length, JSON or entry fails clearly", () => {
    const bytes = sample();
    const flipped = bytes.slice();
    flipped[7] = 0x80; // header length now ~2^63
    expect(decodeError(flipped)).toMatch(/runs past the end of the file/);
    const longer = bytes.slice();
    longer[0] += 8; // JSON now swallows the first data bytes
    expect(decodeError(longer)).toMatch(/not valid UTF-8 JSON|runs past|cover|not a JSON/);
    const data = new Uint8Array(8);
    expect(decodeError(withHeader({}, data).map((b, i) => (i === 8 ? 0x5b : b)))).toMatch(/not valid UTF-8 JSON/);
    expect(decodeError(withHeader([1] as unknown as object, new Uint8Array()))).toMatch(/not a JSON object/);
    const one = (e: object) => decodeError(withHeader({ x: e }, data));
    expect(one({ dtype: "F16", shape: [4], data_offsets: [0, 8] })).toMatch(/tensor "x": unknown dtype "F16"/);
    expect(one({ dtype: "F32", shape: [1.5], data_offsets: [0, 8] })).toMatch(/bad shape/);
    expect(one({ dtype: "F32", shape: [2], data_offsets: [4, 0] })).toMatch(/bad data_offsets \[4,0\]/);
    expect(one({ dtype: "F32", shape: [3], data_offsets: [0, 8] })).toMatch(/F32\[3\] needs 12 bytes but data_offsets \[0, 8\] hold 8/);
    expect(one({ dtype: "F32", shape: [1], data_offsets: [4, 8] })).toMatch(/leave a gap after byte 0/);
    expect(one({ dtype: "F32", shape: [1], data_offsets: [0, 4] })).toMatch(/data section is 8 bytes but the tensors cover 4/);
    expect(one({ dtype: "F32", shape: [4], data_offsets: [0, 16] })).toMatch(/out of bounds/);
    expect(
      decodeError(
        withHeader(
          {
            x: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
            y: { dtype: "F32", shape: [1], data_offsets: [4, 8] },
          },
          data,
        ),
      ),
    ).toMatch(/overlap the previous tensor/);
    expect(decodeError(withHeader({ __metadata__: { epoch: 3 } }, new Uint8Array()))).toMatch(/__metadata__ "epoch" is not a string/);
    expect(decodeError(withHeader({ m: { dtype: "BOOL", shape: [1], data_offsets: [0, 1] } }, Uint8Array.of(2)))).toMatch(/BOOL values/);
  });

  test("checkAgainst reports every mismatch at once", () => {
    const expected = {
      "d/kernel": { dtype: "F32", shape: [4, 3] },
      "d/bias": { dtype: "F32", shape: [3] },
      t: { dtype: "F32", shape: [] },
    } as const;
    expect(() => checkAgainst(expected, { ...expected })).not.toThrow();
    let msg = "";
    try {
      checkAgainst(
        expected,
        { "d/kernel": { dtype: "F32", shape: [3, 4] }, t: { dtype: "I32", shape: [] }, extra: { dtype: "U32", shape: [1] } },
        "m.safetensors",
      );
    } catch (e) {
      expect(e).toBeInstanceOf(KilnError);
      msg = (e as Error).message;
    }
    expect(msg).toContain("m.safetensors does not match the model");
    expect(msg).toContain("missing: d/bias");
    expect(msg).toContain("unexpected: extra");
    expect(msg).toContain('"d/kernel": expected F32[4,3], got F32[3,4]');
    expect(msg).toContain('"t": expected F32[], got I32[]');
  });

  test("a file on disk truncated mid-data names the file", () => {
    const path = join(dir, "cut.safetensors");
    writeFileSync(path, sample().subarray(0, sample().length - 3));
    expect(existsSync(path)).toBe(true);
    expect(() => readSafetensors(path)).toThrow(new RegExp(`safetensors ${path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: .*truncated`));
    expect(readFileSync(path).length).toBe(sample().length - 3);
  });
});
