/** ONNX's recurrent layers — LSTM, GRU, RNN — unrolled over their static sequence length into
 *  Kiln matmuls and elementwise gates: forward, reverse and bidirectional, `layout` 0 and 1.
 *  The input projection X·Wᵀ of every step is one matmul up front; each step adds H·Rᵀ and
 *  applies the gates. Gate orders are ONNX's, as rows of W, R and B:
 *      LSTM  i o f c          i = f(Xᵢ + H·Rᵢᵀ + Pᵢ⊙C + b),  f likewise, c̃ = g(X_c + H·R_cᵀ + b)
 *                             C' = f⊙C + i⊙c̃,  o = f(X_o + H·R_oᵀ + P_o⊙C' + b),  H' = o⊙h(C')
 *      GRU   z r h            z, r = f(…),  h̃ = g(X_h + (r⊙H)·R_hᵀ + R_bh + W_bh)   (linear_before_reset = 0)
 *                                            h̃ = g(X_h + r⊙(H·R_hᵀ + R_bh) + W_bh)  (linear_before_reset = 1)
 *                             H' = (1 − z)⊙h̃ + z⊙H
 *      RNN                    H' = f(X + H·Rᵀ + W_b + R_b)
 *  with b = W_b + R_b and the peepholes P [iof]. Activations default to ONNX's (LSTM Sigmoid,
 *  Tanh, Tanh; GRU Sigmoid, Tanh; RNN Tanh); the others ONNX names are compositions, their
 *  activation_alpha / activation_beta consumed in order by the ones that take them. `clip`
 *  bounds the gates' pre-activations (f's and g's inputs) to [−clip, clip]; LSTM's h(C) is not
 *  clipped, as in ONNX Runtime (test/formats/onnx-import-rnn.test.ts agrees with it). With sequence_lens, a sequence keeps its state
 *  past its length and its Y there is 0 (known full lengths need no masks). LSTM's
 *  input_forget is refused. */
import type { Tensor } from "../../src/api/builder.ts";
import { concat } from "../../src/api/builder.ts";
import type { Dim } from "../../src/ir/types.ts";
import type { Emitted, OpCtx, OpTable } from "./import-context.ts";

type Kind = "LSTM" | "GRU" | "RNN";
type Act = (x: Tensor) => Tensor;

const GATES: Record<Kind, number> = { LSTM: 4, GRU: 3, RNN: 1 };
const DEFAULT_ACTS: Record<Kind, string[]> = { LSTM: ["Sigmoid", "Tanh", "Tanh"], GRU: ["Sigmoid", "Tanh"], RNN: ["Tanh"] };

/** ONNX's activation functions for recurrent layers, with the defaults of their (alpha, beta). */
const ACTS: Record<string, { alpha?: number; beta?: number; f: (x: Tensor, a: number, b: number) => Tensor }> = {
  Sigmoid: { f: (x) => x.sigmoid() },
  Tanh: { f: (x) => x.tanh() },
  Relu: { f: (x) => x.relu() },
  LeakyRelu: { alpha: 0.01, f: (x, a) => x.lt(0).select(x.mul(a), x) },
  ThresholdedRelu: { alpha: 1, f: (x, a) => x.gt(a).select(x, 0) },
  ScaledTanh: { alpha: 1, beta: 1, f: (x, a, b) => x.mul(b).tanh().mul(a) },
  HardSigmoid: { alpha: 0.2, beta: 0.5, f: (x, a, b) => x.mul(a).add(b).maximum(0).minimum(1) },
  Elu: { alpha: 1, f: (x, a) => x.lt(0).select(x.exp().sub(1).mul(a), x) },
  Softsign: { f: (x) => x.div(x.abs().add(1)) },
  Softplus: { f: (x) => x.relu().add(x.abs().neg().exp().add(1).log()) },
  Affine: { alpha: 1, beta: 0, f: (x, a, b) => x.mul(a).add(b) },
};

/** The activations of each direction, from `activations` and their parameters. */
function activations(c: OpCtx, kind: Kind, dirs: number): Act[][] {
  const per = DEFAULT_ACTS[kind].length;
  const list = c.attr.strings("activations") ?? [...DEFAULT_ACTS[kind], ...(dirs === 2 ? DEFAULT_ACTS[kind] : [])];
  const all = list.length === per && dirs === 2 ? [...list, ...list] : list;
  if (all.length !== per * dirs)
    c.fail(`activations lists ${list.length} functions; ${kind} needs ${per} per direction, ${dirs} direction(s)`);
  const alphas = [...(c.attr.floats("activation_alpha") ?? [])];
  const betas = [...(c.attr.floats("activation_beta") ?? [])];
  const acts = all.map((name) => {
    const a = ACTS[name];
    if (!a) c.refuse(`activation ${name} is not supported (Kiln has ${Object.keys(ACTS).join(", ")})`);
    const alpha = a.alpha === undefined ? 0 : (alphas.shift() ?? a.alpha);
    const beta = a.beta === undefined ? 0 : (betas.shift() ?? a.beta);
    return (x: Tensor) => a.f(x, alpha, beta);
  });
  return Array.from({ length: dirs }, (_, d) => acts.slice(d * per, (d + 1) * per));
}

/** Gate block `k` (of `size` columns) of [batch, G·size] `m`. */
const cols = (m: Tensor, k: number, size: number): Tensor => m.slice([0, k * size], [m.shape[0], (k + 1) * size]);
/** Direction d of a [dirs, …] tensor, without its leading axis. */
const dir = (t: Tensor, d: number): Tensor =>
  t.slice([d, ...t.shape.slice(1).map(() => 0)], [d + 1, ...t.shape.slice(1)]).reshape(t.shape.slice(1));

const recurrent =
  (kind: Kind) =>
  (c: OpCtx): Emitted[] => {
    const G = GATES[kind];
    const hidden = c.attr.intOr("hidden_size");
    const direction = c.attr.string("direction", "forward");
    if (!["forward", "reverse", "bidirectional"].includes(direction))
      c.fail(`direction "${direction}" is not forward, reverse or bidirectional`);
    const dirs = direction === "bidirectional" ? 2 : 1;
    const layout = c.version >= 14 ? c.attr.int("layout", 0) : 0;
    const clip = c.attr.has("clip") ? c.attr.float("clip", 0) : undefined;
    if (kind === "LSTM" && c.attr.int("input_forget", 0) !== 0)
      c.refuse("input_forget=1 (coupled input and forget gates) is not supported");
    const lbr = kind === "GRU" && c.attr.int("linear_before_reset", 0) !== 0;
    const acts = activations(c, kind, dirs);

    let x = c.t(0);
    if (x.rank !== 3) c.fail(`X has rank ${x.rank}; ${kind} needs a rank-3 X`);
    if (x.dtype !== "f32") c.refuse(`X is ${x.dtype}; Kiln's ${kind} computes f32`);
    if (layout) x = x.permute([1, 0, 2]); // [batch, seq, in] → [seq, batch, in]
    const [seq, batch, inSize] = x.shape as [Dim, Dim, Dim];
    if (typeof seq !== "number") c.refuse(`the sequence length ${seq} must be static (Kiln unrolls the recurrence)`);
    const w = c.t(1);
    const r = c.t(2);
    const h = hidden ?? (r.shape[2] as number);
    const want = (t: Tensor, name: string, shape: Dim[]) => {
      if (t.shape.join() !== shape.join()) c.fail(`${name} has shape ${JSON.stringify(t.shape)}, not ${JSON.stringify(shape)}`);
    };
    want(w, "W", [dirs, G * h, inSize]);
    want(r, "R", [dirs, G * h, h]);
    // Shorter sequences (sequence_lens [batch]) freeze their state past their end, and their Y
    // there is 0; a sequence_lens known to be all full length needs no masks.
    const known = c.has(4) ? c.val(4).known : undefined;
    const full = !c.has(4) || (known !== undefined && Array.from(known).every((l) => l === seq));
    const lens = full ? undefined : c.t(4);
    if (lens && (lens.rank !== 1 || lens.dtype !== "i32"))
      c.fail(`sequence_lens must be an int32 vector [batch], got ${lens.dtype} ${JSON.stringify(lens.shape)}`);
    const live = (t: number) => lens?.gt(c.g.constant(t, "i32")).reshape([batch, 1]);
    const zeros = () => c.g.constant(0, "f32").expand([batch, h]);
    const state = (i: number, name: string): Tensor | undefined => {
      if (!c.has(i)) return undefined;
      const t = c.t(i);
      const s = layout ? t.permute([1, 0, 2]) : t;
      want(s, name, [dirs, batch, h]);
      return s;
    };
    const h0 = state(5, "initial_h");
    const c0 = kind === "LSTM" ? state(6, "initial_c") : undefined;
    const p = kind === "LSTM" && c.has(7) ? c.t(7) : undefined;
    if (p) want(p, "P", [dirs, 3 * h]);
    const b = c.has(3) ? c.t(3) : undefined;
    if (b) want(b, "B", [dirs, 2 * G * h]);
    const bound = (t: Tensor) => (clip === undefined ? t : t.maximum(-clip).minimum(clip));

    const ys: Tensor[] = [];
    const hs: Tensor[] = [];
    const cs: Tensor[] = [];
    for (let d = 0; d < dirs; d++) {
      const [f, g] = acts[d].map((a) => (v: Tensor) => a(bound(v)));
      const hAct = acts[d][2];
      const wd = dir(w, d);
      const rd = dir(r, d); // [G·h, h]
      const rt = rd.transpose(); // [h, G·h]
      // GRU: [R_z; R_r]ᵀ [h, 2h] on H, and R_hᵀ [h, h] on H or r⊙H.
      const rz = kind === "GRU" ? rd.slice([0, 0], [2 * h, h]).transpose() : rt;
      const rh = kind === "GRU" ? rd.slice([2 * h, 0], [3 * h, h]).transpose() : rt;
      const bd = b ? dir(b, d) : undefined;
      const wb = bd?.slice([0], [G * h]);
      const rb = bd?.slice([G * h], [2 * G * h]);
      // X·Wᵀ (+ W_b, and R_b except GRU's hidden gate under linear_before_reset) for every step.
      let xw = x.matmul(wd.transpose());
      if (wb) xw = xw.add(wb);
      if (rb && kind !== "GRU") xw = xw.add(rb);
      if (rb && kind === "GRU") xw = xw.add(concat([rb.slice([0], [2 * h]), c.g.constant(0, "f32").expand([h])], 0));
      const rbh = rb && kind === "GRU" ? rb.slice([2 * h], [3 * h]) : undefined;
      const pd = p ? dir(p, d) : undefined;
      const [pi, po, pf] = pd ? [0, 1, 2].map((k) => pd.slice([k * h], [(k + 1) * h])) : [];
      let hPrev = h0 ? dir(h0, d) : zeros();
      let cPrev = c0 ? dir(c0, d) : zeros();
      const out: Tensor[] = new Array<Tensor>(seq);
      const reverse = direction === "reverse" || d === 1;
      for (let s = 0; s < seq; s++) {
        const t = reverse ? seq - 1 - s : s;
        const [hWas, cWas] = [hPrev, cPrev];
        const xt = xw.slice([t, 0, 0], [t + 1, batch, G * h]).reshape([batch, G * h]);
        if (kind === "RNN") {
          hPrev = f(xt.add(hPrev.matmul(rt)));
        } else if (kind === "LSTM") {
          const z = xt.add(hPrev.matmul(rt));
          const peep = (k: number, v: Tensor | undefined, cc: Tensor) => (v ? cols(z, k, h).add(v.mul(cc)) : cols(z, k, h));
          const i = f(peep(0, pi, cPrev));
          const fg = f(peep(2, pf, cPrev));
          const cNew = fg.mul(cPrev).add(i.mul(g(cols(z, 3, h))));
          const o = f(peep(1, po, cNew));
          cPrev = cNew;
          hPrev = o.mul(hAct(cNew));
        } else {
          const zr = cols(xt, 0, 2 * h).add(hPrev.matmul(rz));
          const zg = f(cols(zr, 0, h));
          const rg = f(cols(zr, 1, h));
          const xh = cols(xt, 2, h);
          let hh: Tensor;
          if (lbr) {
            const lin = hPrev.matmul(rh);
            hh = g(xh.add(rg.mul(rbh ? lin.add(rbh) : lin)));
          } else {
            const lin = rg.mul(hPrev).matmul(rh);
            hh = g(xh.add(rbh ? lin.add(rbh) : lin));
          }
          hPrev = c.g.constant(1, "f32").sub(zg).mul(hh).add(zg.mul(hPrev));
        }
        const on = live(t);
        if (on) {
          hPrev = on.select(hPrev, hWas);
          cPrev = on.select(cPrev, cWas);
        }
        out[t] = on ? on.select(hPrev, 0) : hPrev;
      }
      ys.push(
        concat(
          out.map((v) => v.reshape([1, 1, batch, h])),
          0,
        ),
      );
      hs.push(hPrev.reshape([1, batch, h]));
      cs.push(cPrev.reshape([1, batch, h]));
    }
    let y = dirs === 1 ? ys[0] : concat(ys, 1); // [seq, dirs, batch, h]
    let yh = dirs === 1 ? hs[0] : concat(hs, 0); // [dirs, batch, h]
    let yc = dirs === 1 ? cs[0] : concat(cs, 0);
    if (layout) {
      y = y.permute([2, 0, 1, 3]);
      yh = yh.permute([1, 0, 2]);
      yc = yc.permute([1, 0, 2]);
    }
    return kind === "LSTM" ? [y, yh, yc] : [y, yh];
  };

export const RNN_OPS: OpTable = {
  LSTM: { since: [7, 14, 22], emit: recurrent("LSTM") },
  GRU: { since: [7, 14, 22], emit: recurrent("GRU") },
  RNN: { since: [7, 14, 22], emit: recurrent("RNN") },
};
