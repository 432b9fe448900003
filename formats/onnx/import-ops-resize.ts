/** Resize and Upsample, axis by axis over static dims: each output coordinate x is mapped back
 *  to the input (coordinate_transformation_mode), then
 *    nearest: a gather at the rounded coordinate (nearest_mode), clamped into range;
 *    linear:  a·(1 − w) + b·w of the gathers at ⌊x⌋ and ⌊x⌋ + 1, x clamped into [0, in − 1].
 *  The indices and weights are constants computed here. Cubic, antialias, tf_crop_and_resize
 *  and the aspect-ratio policies other than "stretch" are refused. */
import type { Tensor } from "../../src/api/builder.ts";
import type { Emitted, OpCtx, OpTable } from "./import-context.ts";

/** `o` is the output's size; align_corners and pytorch_half_pixel use the unrounded in·scale. */
type Transform = (x: number, scale: number, inSize: number, outSize: number) => number;

const TRANSFORMS: Readonly<Record<string, Transform>> = {
  half_pixel: (x, s) => (x + 0.5) / s - 0.5,
  pytorch_half_pixel: (x, s, i) => (i * s > 1 ? (x + 0.5) / s - 0.5 : 0),
  align_corners: (x, s, i) => (i * s === 1 ? 0 : (x * (i - 1)) / (i * s - 1)),
  asymmetric: (x, s) => x / s,
  half_pixel_symmetric: (x, s, i, o) => {
    const adjustment = o / (s * i);
    return (i / 2) * (1 - adjustment) + (x + 0.5) / s - 0.5;
  },
};

const NEAREST: Readonly<Record<string, (x: number) => number>> = {
  round_prefer_floor: (x) => (x - Math.floor(x) === 0.5 ? Math.floor(x) : Math.round(x)),
  round_prefer_ceil: (x) => Math.round(x),
  floor: Math.floor,
  ceil: Math.ceil,
};

function resizeAxis(
  c: OpCtx,
  x: Tensor,
  axis: number,
  out: number,
  scale: number,
  mode: string,
  tf: Transform,
  nearest: (x: number) => number,
) {
  const n = x.shape[axis] as number;
  const clamp = (i: number) => Math.min(Math.max(i, 0), n - 1);
  const coords = Array.from({ length: out }, (_, i) => tf(i, scale, n, out));
  const at = (idx: number[]) => x.gather(c.g.constant(idx, "i32", [out]), axis);
  if (mode === "nearest") return at(coords.map((v) => clamp(nearest(v))));
  const lo = coords.map((v) => Math.floor(clamp(v)));
  const w = coords.map((v, i) => clamp(v) - lo[i]);
  const shape = x.shape.map((d, a) => (a === axis ? out : 1));
  const wt = c.g.constant(w, "f32", shape);
  return at(lo)
    .mul(wt.neg().add(1))
    .add(at(lo.map((i) => clamp(i + 1))).mul(wt));
}

function resize(c: OpCtx, upsample: boolean): Emitted[] {
  let x = c.t(0);
  const mode = c.attr.string("mode", "nearest");
  if (mode !== "nearest" && mode !== "linear" && mode !== "bilinear") c.refuse(`mode "${mode}"`);
  const legacy = upsample || c.version < 11;
  const ctm = legacy ? "asymmetric" : c.attr.string("coordinate_transformation_mode", "half_pixel");
  const nm = legacy ? "floor" : c.attr.string("nearest_mode", "round_prefer_floor");
  if (!legacy) {
    c.attr.float("cubic_coeff_a", -0.75);
    if (c.attr.int("exclude_outside", 0) !== 0) c.refuse("exclude_outside=1");
    c.attr.float("extrapolation_value", 0);
  }
  if (c.version >= 18 && !upsample) {
    if (c.attr.int("antialias", 0) !== 0) c.refuse("antialias=1");
    const policy = c.attr.string("keep_aspect_ratio_policy", "stretch");
    if (policy !== "stretch") c.refuse(`keep_aspect_ratio_policy "${policy}"`);
  }
  const tf = TRANSFORMS[ctm] ?? c.refuse(`coordinate_transformation_mode "${ctm}"`);
  const nearest = NEAREST[nm] ?? c.refuse(`nearest_mode "${nm}"`);
  const axes = c.version >= 18 && !upsample ? c.axes(c.attr.ints("axes") ?? x.shape.map((_, a) => a), x.rank) : x.shape.map((_, a) => a);
  const [scalesAt, sizesAt] = upsample ? [1, -1] : c.version < 11 ? [1, -1] : [2, 3];
  const scalesIn =
    upsample && c.version < 9 ? c.attr.floats("scales") : c.has(scalesAt) ? c.dims(scalesAt, "scales").map(Number) : undefined;
  const scales = scalesIn?.length ? scalesIn : undefined;
  const sizes = sizesAt > 0 && c.has(sizesAt) ? c.ints(sizesAt, "sizes") : undefined;
  if (!scales && !sizes?.length) c.fail("needs scales or sizes");
  const k = (scales ?? sizes)!.length;
  if (k !== axes.length) c.fail(`${k} scales or sizes for ${axes.length} axes`);
  axes.forEach((a, i) => {
    const n = x.shape[a];
    if (typeof n !== "number") c.refuse(`resizing the symbolic axis ${a} (${n})`);
    const out = sizes?.length ? sizes[i] : Math.floor(n * scales![i]);
    const scale = sizes?.length ? out / n : scales![i];
    if (!(scale > 0) || out < 0) c.fail(`axis ${a}: scale ${scale}, output size ${out}`);
    if (out === n && scale === 1) return;
    x = resizeAxis(c, x, a, out, scale, mode === "bilinear" ? "linear" : mode, tf, nearest);
  });
  return [x];
}

export const RESIZE_OPS: OpTable = {
  Resize: { since: [10, 11, 13, 18, 19], emit: (c) => resize(c, false) },
  Upsample: { since: [7, 9], emit: (c) => resize(c, true) },
};
