/** An ImageNet-size CNN compiles and runs on Dawn: a VGG-style front end (two stages of two 3×3
 *  convs with bias and ReLU, then a 2×2 max pool; 3 → 64 → 128 channels) on a batch of two
 *  224×224 RGB images, ≈ 9.5 GMAC. The float64 interpreter cannot run the whole net in a test's
 *  time, so it runs on crops of the input instead: with "same" padding, the output at pooled
 *  position p (56×56 grid) reads input rows and columns 4p − 6 … 4p + 9 only, so a crop
 *  [s, s + S) of the image gives exact outputs for every p with s ≤ 4p − 6 (or s = 0, where the
 *  crop's edge is the image's, padding included) and 4p + 9 < s + S (or s + S = 224). Three
 *  crops — top-left corner, interior, bottom-right corner — check 3 × 4 × 4 positions × 128
 *  channels × 2 images against float64; every output is checked finite. */
import { describe, expect, test } from "vitest";
import { GraphBuilder, type Tensor } from "../../src/api/builder.ts";
import { interpret } from "../../src/interpret.ts";
import { Executable } from "../../runtime/execute.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();

const N = 2;
const HW = 224;
const S = 32;
const CHANNELS = [3, 64, 64, 128, 128];

/** The network over an NHWC input of `size`×`size`; weights are inputs w1…w4, b1…b4. */
function vgg(size: number) {
  const g = new GraphBuilder();
  let x: Tensor = g.input("x", "f32", [N, size, size, 3]);
  for (let l = 1; l <= 4; l++) {
    const [ci, co] = [CHANNELS[l - 1], CHANNELS[l]];
    const w = g.input(`w${l}`, "f32", [3, 3, ci, co]);
    const b = g.input(`b${l}`, "f32", [co]);
    x = x
      .conv2d(w, { padding: [1, 1, 1, 1] })
      .add(b)
      .relu();
    if (l % 2 === 0) x = x.maxPool2d([2, 2]);
  }
  return g.build({ y: x });
}

/** Deterministic values in [-1, 1) (a small LCG). */
function uniform(n: number, seed: number, scale: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return Math.fround((s / 2 ** 32) * 2 - 1) * scale;
  });
}

function weights() {
  const w: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (let l = 1; l <= 4; l++) {
    const [ci, co] = [CHANNELS[l - 1], CHANNELS[l]];
    // He-style scale keeps activations O(1) through the ReLUs.
    w[`w${l}`] = { shape: [3, 3, ci, co], data: uniform(9 * ci * co, 10 + l, Math.sqrt(6 / (9 * ci))) };
    w[`b${l}`] = { shape: [co], data: uniform(co, 20 + l, 0.1) };
  }
  return w;
}

/** Rows [s, s + S) and columns [s, s + S) of an NHWC image batch. */
function crop(x: Float32Array, s: number): Float32Array {
  const out = new Float32Array(N * S * S * 3);
  for (let b = 0; b < N; b++)
    for (let y = 0; y < S; y++)
      for (let xx = 0; xx < S; xx++)
        for (let c = 0; c < 3; c++) out[((b * S + y) * S + xx) * 3 + c] = x[((b * HW + s + y) * HW + s + xx) * 3 + c];
  return out;
}

/** Pooled positions whose window lies inside the crop at `s` (see the header). */
function exact(s: number): number[] {
  const ps: number[] = [];
  for (let p = 0; p < HW / 4; p++) {
    const lo = s === 0 || 4 * p - 6 >= s;
    const hi = s + S === HW || 4 * p + 9 < s + S;
    if (lo && hi && 4 * p >= s && 4 * p + 3 < s + S) ps.push(p);
  }
  return ps;
}

describe("an ImageNet-size CNN on Dawn", () => {
  test("VGG-style 224×224, batch 2, 3 → 64 → 128 channels: crops match float64", async () => {
    const graph = vgg(HW);
    const w = weights();
    const x = uniform(N * HW * HW * 3, 1, 1);
    const exe = await Executable.fromGraph(graph);
    let y: Float32Array;
    try {
      const out = await exe.run({ x: { shape: [N, HW, HW, 3], data: x }, ...w });
      expect(out.y.shape).toEqual([N, 56, 56, 128]);
      y = out.y.data as Float32Array;
    } finally {
      exe.dispose();
    }
    let finite = 0;
    for (const v of y) if (Number.isFinite(v)) finite++;
    expect(finite).toBe(y.length);

    const twin = vgg(S);
    let checked = 0;
    for (const s of [0, 96, HW - S]) {
      const ref = interpret(twin, { x: { shape: [N, S, S, 3], data: crop(x, s) }, ...w }).y.data;
      const ps = exact(s);
      expect(ps.length, `crop at ${s}`).toBeGreaterThanOrEqual(4);
      const q0 = s / 4;
      for (let b = 0; b < N; b++)
        for (const py of ps)
          for (const px of ps)
            for (let c = 0; c < 128; c++) {
              const got = y[((b * 56 + py) * 56 + px) * 128 + c];
              const want = ref[((b * (S / 4) + py - q0) * (S / 4) + px - q0) * 128 + c];
              if (Math.abs(got - want) > 1e-4 + 1e-3 * Math.abs(want))
                throw new Error(`y[${b},${py},${px},${c}] (crop at ${s}): gpu ${got}, float64 ${want}`);
              checked++;
            }
    }
    expect(checked).toBeGreaterThan(3 * 2 * 16 * 128 - 1);
  });
});
