/** erf, the error function: ONNX's Erf and the exact GELU, x·(1 + erf(x/√2))/2.
 *
 *  Reference (float64, to a few ulps): the everywhere-convergent series of positive terms
 *      erf x = 2/√π · e^(−x²) · Σ_{n≥0} 2ⁿ x^(2n+1) / (1·3·5···(2n+1))      (A&S 7.1.6)
 *  has no cancellation, so its relative error is that of its last few roundings; past |x| = 6,
 *  1 − erf x < 3e-17 and the value is ±1.
 *
 *  WGSL has no erf; `kiln_erf` (./wgsl.ts) computes it in f32 in two pieces:
 *    - |x| < 1: the Maclaurin series 2/√π Σ (−1)ⁿ x^(2n+1) / (n!(2n+1)) through x²³ (the next
 *      term is below 1e-10), in Horner form on x² — accurate relative to erf x near 0;
 *    - |x| ≥ 1: 1 − erfc |x|, with Numerical Recipes' Chebyshev fit (erfcc, §6.2) whose
 *      relative error is below 1.2e-7 of erfc (≤ 0.16 here), and sign(x) past |x| = 4, where
 *      erfc < 2e-8 is below f32's half-ulp at 1.
 *  Measured on lavapipe against the reference over [−6, 6]: 1.3e-7 absolute at worst (the test
 *  bounds it by 2e-7, and by 1e-6 relative inside |x| < 1: test/ops/erf.test.ts). */
import { elementwise } from "./elementwise.ts";
import { FLOAT } from "./def.ts";

export function erf64(x: number): number {
  if (Number.isNaN(x)) return x;
  const a = Math.abs(x);
  if (a >= 6) return Math.sign(x);
  let term = a;
  let sum = a;
  for (let n = 1; term > sum * 1e-18; n++) {
    term *= (2 * a * a) / (2 * n + 1);
    sum += term;
  }
  return Math.sign(x) * Math.min(1, (2 / Math.sqrt(Math.PI)) * Math.exp(-a * a) * sum);
}

export const erf = elementwise({
  name: "erf",
  arity: 1,
  dtypes: FLOAT,
  reference: ([x]) => erf64(x),
  cost: 4,
  wgsl: ([x]) => `kiln_erf(${x})`,
  // d erf = 2/√π · e^(−x²)
  vjp: ({ g, ins: [x] }) => [
    g.mul(
      x
        .mul(x)
        .neg()
        .exp()
        .mul(2 / Math.sqrt(Math.PI)),
    ),
  ],
});
