import { describe, expect, test, vi } from "vitest";
import { asImages, loadMnist, oneHot, PIXELS, type MnistSplit } from "../../examples/data/mnist.ts";

const counts = (s: MnistSplit): number[] => {
  const c = new Array<number>(10).fill(0);
  for (const l of s.labels) c[l]++;
  return c;
};

describe("mnist split", () => {
  test("sizes, class balance and pixel range", () => {
    const { train, test: held } = loadMnist();
    expect([train.n, held.n]).toEqual([8000, 2000]);
    expect([train.x.length, held.x.length]).toEqual([8000 * PIXELS, 2000 * PIXELS]);
    expect([train.labels.length, held.labels.length]).toEqual([8000, 2000]);
    const tc = counts(train),
      hc = counts(held);
    expect(tc.reduce((a, b) => a + b)).toBe(8000);
    for (let d = 0; d < 10; d++) {
      expect(hc[d], `held-out digit ${d}`).toBeGreaterThanOrEqual(100);
      expect(tc[d], `train digit ${d}`).toBeGreaterThanOrEqual(600);
      // The shuffle is not stratified, but each class splits close to 80/20.
      expect(hc[d] / (hc[d] + tc[d])).toBeGreaterThan(0.15);
      expect(hc[d] / (hc[d] + tc[d])).toBeLessThan(0.25);
    }
    for (const s of [train, held]) {
      let lo = Infinity,
        hi = -Infinity,
        inked = 0;
      for (const v of s.x) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
        if (v > 0.5) inked++;
      }
      expect([lo, hi]).toEqual([0, 1]);
      // Digits are dark background with strokes: roughly 10–20% of pixels above 0.5.
      expect(inked / s.x.length).toBeGreaterThan(0.05);
      expect(inked / s.x.length).toBeLessThan(0.3);
    }
  });

  test("deterministic, cached, and train and test share no example", async () => {
    const a = loadMnist();
    expect(loadMnist() === a).toBe(true); // booleans: formatting 8,000 images for a message takes a minute
    const seen = new Set(a.train.indices);
    expect(seen.size).toBe(8000);
    for (const i of a.test.indices) expect(seen.has(i)).toBe(false);
    expect(new Set([...a.train.indices, ...a.test.indices]).size).toBe(10000);
    // Shuffled: the first 100 training examples are not all one digit (the files are per digit).
    expect(new Set(a.train.labels.subarray(0, 100)).size).toBe(10);
    // Same data under a fresh module instance (no cache): the split does not depend on load order.
    vi.resetModules();
    const m = await import("../../examples/data/mnist.ts");
    const b = m.loadMnist();
    expect(b === a).toBe(false);
    expect(b.test.indices).toEqual(a.test.indices);
    expect(b.test.labels).toEqual(a.test.labels);
    expect(Buffer.from(b.train.x.buffer).equals(Buffer.from(a.train.x.buffer))).toBe(true);
  });

  test("labels agree with the digit file each example came from", () => {
    // Files 0..9 hold 1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978 digits (mnist 1.1.0).
    const ends = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978].map(
      (
        (s) => (v: number) =>
          (s += v)
      )(0),
    );
    const { train, test: held } = loadMnist();
    for (const s of [train, held]) {
      s.indices.forEach((src, i) => expect(s.labels[i]).toBe(ends.findIndex((e) => src < e)));
    }
  });

  test("oneHot and the NHWC view", () => {
    expect([...oneHot(Int32Array.of(2, 0), 3)]).toEqual([0, 0, 1, 1, 0, 0]);
    expect(() => oneHot(Int32Array.of(10))).toThrow(/label 10 at 0 is outside 0..9/);
    const { test: held } = loadMnist();
    const y = oneHot(held.labels);
    expect(y.length).toBe(20000);
    expect(y[5 * 10 + held.labels[5]]).toBe(1);
    expect(y.reduce((a, b) => a + b)).toBe(2000);
    const img = asImages(held);
    expect(img.shape).toEqual([2000, 28, 28, 1]);
    expect(img.data === held.x).toBe(true);
  });
});
