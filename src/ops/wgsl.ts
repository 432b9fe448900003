/** WGSL text shared by the op lowerings: literals and helper functions. A kernel carries a
 *  helper only when its body calls it (the codegen looks for the name). */
import type { DType } from "../ir/types.ts";

const F32_MAX = 3.4028234663852886e38;

/** A WGSL literal of `dtype` for `v`; non-finite floats become bitcasts (WGSL has no inf/NaN literal). */
export function lit(v: number, dtype: DType): string {
  switch (dtype) {
    case "f32":
      if (Number.isNaN(v)) return "kiln_f32(0x7fc00000u)";
      if (v > F32_MAX) return "kiln_f32(0x7f800000u)";
      if (v < -F32_MAX) return "kiln_f32(0xff800000u)";
      return v < 0 || Object.is(v, -0) ? `(${String(v)}f)` : `${String(v)}f`;
    case "i32":
      return v === -2147483648 ? "bitcast<i32>(0x80000000u)" : v < 0 ? `(${v}i)` : `${v}i`;
    case "u32":
      return `${v >>> 0}u`;
    case "bool":
      return v ? "true" : "false";
  }
}

/** WGSL's scalar type for a dtype inside expressions (bool is stored as u32 in buffers). */
export const wgslType = (d: DType): string => (d === "bool" ? "bool" : d);

/** erf's Maclaurin coefficients 2/√π·(−1)ⁿ/(n!(2n+1)), n = 0…11, for `kiln_erf` (see ./erf.ts). */
const ERF_TAYLOR = Array.from({ length: 12 }, (_, n) => {
  let fact = 1;
  for (let i = 2; i <= n; i++) fact *= i;
  return ((2 / Math.sqrt(Math.PI)) * (n % 2 ? -1 : 1)) / (fact * (2 * n + 1));
});
/** Horner form c0 + v·(c1 + v·(c2 + …)) of `cs` in `v`, as WGSL. */
const horner = (cs: readonly number[], v: string): string =>
  cs.reduceRight((acc, c, i) => (i === cs.length - 1 ? lit(c, "f32") : `${lit(c, "f32")} + ${v} * (${acc})`), "");

export const WGSL_HELPERS: Readonly<Record<string, string>> = {
  // inf and NaN from their bits. A function call is never a const-expression, so this is not
  // rejected as "value cannot be represented" the way bitcast<f32>(0x7fc00000u) is.
  kiln_f32: `fn kiln_f32(bits: u32) -> f32 {
  return bitcast<f32>(bits);
}`,
  // NaN by its bits: a driver that assumes no NaNs may fold \`x != x\` to false.
  kiln_is_nan: `fn kiln_is_nan(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}`,
  // WGSL leaves max/min of a NaN to the driver (lavapipe returns the other operand); Kiln's rule
  // is the reference's, Math.max / Math.min: a NaN operand gives NaN (a + b is NaN then).
  kiln_max: `fn kiln_max(a: f32, b: f32) -> f32 {
  return select(max(a, b), a + b, kiln_is_nan(a) || kiln_is_nan(b));
}`,
  kiln_min: `fn kiln_min(a: f32, b: f32) -> f32 {
  return select(min(a, b), a + b, kiln_is_nan(a) || kiln_is_nan(b));
}`,
  // WGSL's pow is exp2(y·log2 x): undefined for x < 0, for 0^0 and for 0^y with y < 0 (lavapipe
  // gives 0, not inf). Match Math.pow instead.
  kiln_pow: `fn kiln_pow(x: f32, y: f32) -> f32 {
  if (y == 0.0) { return 1.0; }
  if (x == 0.0 && y < 0.0) { return kiln_f32(0x7f800000u); }
  let m = pow(abs(x), y);
  if (x < 0.0) {
    if (y != floor(y)) { return kiln_f32(0x7fc00000u); }
    return select(m, -m, fract(y * 0.5) != 0.0);
  }
  return m;
}`,
  // Some drivers' tanh returns NaN for |x| > 88; past 15, tanh is ±1 in f32. Not a clamp: that
  // would turn NaN into -1.
  kiln_tanh: `fn kiln_tanh(x: f32) -> f32 {
  if (abs(x) > 15.0) { return sign(x); }
  return tanh(x);
}`,
  // erf in f32: a Maclaurin series inside |x| < 1, Numerical Recipes' erfc fit outside, ±1 past
  // |x| = 4 (see ./erf.ts for the accuracy). NaN stays NaN: every comparison with it is false.
  kiln_erf: `fn kiln_erf(x: f32) -> f32 {
  let a = abs(x);
  if (a < 1.0) {
    let s = x * x;
    return x * (${horner(ERF_TAYLOR, "s")});
  }
  if (a > 4.0) { return sign(x); }
  let t = 1.0 / (1.0 + 0.5 * a);
  let e = t * exp(-a * a - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return sign(x) * (1.0 - e);
}`,
  // σ(x) = 1/(1+e^-x), written so neither branch overflows to inf/inf.
  kiln_sigmoid: `fn kiln_sigmoid(x: f32) -> f32 {
  let e = exp(-abs(x));
  return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}`,
  // Integer division as WGSL defines it is what the reference does; spelled out for i32 so the
  // edge cases (÷0 → x, MIN ÷ -1 → MIN) hold on every driver.
  kiln_idiv: `fn kiln_idiv(x: i32, y: i32) -> i32 {
  if (y == 0 || (x == i32(-2147483647 - 1) && y == -1)) { return x; }
  return x / y;
}`,
  kiln_imod: `fn kiln_imod(x: i32, y: i32) -> i32 {
  if (y == 0 || (x == i32(-2147483647 - 1) && y == -1)) { return 0; }
  return x % y;
}`,
  kiln_udiv: `fn kiln_udiv(x: u32, y: u32) -> u32 {
  return select(x / y, x, y == 0u);
}`,
  kiln_umod: `fn kiln_umod(x: u32, y: u32) -> u32 {
  return select(x % y, 0u, y == 0u);
}`,
  // The counter-based generator of the random op (PCG hash chain; see src/ops/sources.ts).
  kiln_pcg: `fn kiln_pcg(v: u32) -> u32 {
  let s = v * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}`,
};
