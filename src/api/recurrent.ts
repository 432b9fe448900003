/** Recurrent layers unrolled over a static sequence length: inputs [B, T, F], T copies of the
 *  cell sharing one set of parameters, so backpropagation through time is just `grad` of the
 *  unrolled graph. The input projection x·W of every step is one matmul over [B, T, F]; each
 *  step slices its [B, 1, ·] row out and reshapes it to [B, ·] (index maps: no copies). */
import { KilnError } from "../ir/errors.ts";
import { formatType } from "../ir/shape.ts";
import { concat, type Tensor } from "./builder.ts";
import { glorotUniform, orthogonal, zeros, type Initializer } from "./initializers.ts";
import { Layer, type Scope } from "./layers.ts";

export interface RecurrentOptions {
  /** Output every step's h, [B, T, units], rather than the last one, [B, units]. */
  readonly returnSequences?: boolean;
  readonly kernelInitializer?: Initializer;
  readonly recurrentInitializer?: Initializer;
  readonly name?: string;
}

abstract class Recurrent extends Layer {
  constructor(
    readonly units: number,
    readonly gates: number,
    readonly opts: RecurrentOptions,
  ) {
    super(opts.name);
  }

  protected abstract biasInit(): Initializer;
  /** One step: the new state from this step's x·W + b ([B, gates·units]) and the previous
   *  state (undefined at t = 0, where h and c are zero and the recurrent term vanishes). */
  protected abstract step(xw: Tensor, prev: { h: Tensor; c?: Tensor } | undefined, u: Tensor): { h: Tensor; c?: Tensor };

  call(inputs: readonly Tensor[], scope: Scope): Tensor {
    const x = this.one(inputs, 3);
    const [t, f] = [this.staticDim(x, 1), this.staticDim(x, 2)];
    if (t < 1) throw new KilnError(`${this.where}: needs at least one time step, got ${formatType(x.type)}`);
    const n = this.gates * this.units;
    const w = scope.param("kernel", [f, n], this.opts.kernelInitializer ?? glorotUniform(), { decay: true });
    const u = scope.param("recurrent_kernel", [this.units, n], this.opts.recurrentInitializer ?? orthogonal(), { decay: true });
    const b = scope.param("bias", [n], this.biasInit());
    const xw = x.matmul(w).add(b);
    const batch = x.shape[0];
    const hs: Tensor[] = [];
    let state: { h: Tensor; c?: Tensor } | undefined;
    for (let s = 0; s < t; s++) {
      const xs = xw.slice([0, s, 0], [batch, s + 1, n]).reshape([batch, n]);
      state = this.step(xs, state, u);
      hs.push(state.h);
    }
    if (!this.opts.returnSequences) return hs[t - 1];
    return concat(
      hs.map((h) => h.reshape([batch, 1, this.units])),
      1,
    );
  }
}

class SimpleRnn extends Recurrent {
  readonly kind = "simple_rnn";
  constructor(units: number, opts: RecurrentOptions) {
    super(units, 1, opts);
  }
  protected biasInit(): Initializer {
    return zeros();
  }
  /** h_t = tanh(x_t W + h_{t−1} U + b) */
  protected step(xw: Tensor, prev: { h: Tensor } | undefined, u: Tensor): { h: Tensor } {
    return { h: (prev ? xw.add(prev.h.matmul(u)) : xw).tanh() };
  }
}

export const simpleRnn = (units: number, opts: RecurrentOptions = {}): Layer => new SimpleRnn(units, opts);

export interface LstmOptions extends RecurrentOptions {
  /** Start the forget gate's bias at 1, so the cell remembers early in training (Keras: true). */
  readonly unitForgetBias?: boolean;
}

class Lstm extends Recurrent {
  readonly kind = "lstm";
  constructor(
    units: number,
    readonly lstmOpts: LstmOptions,
  ) {
    super(units, 4, lstmOpts);
  }

  protected biasInit(): Initializer {
    const k = this.units;
    if (!(this.lstmOpts.unitForgetBias ?? true)) return zeros();
    return {
      name: "unitForgetBias",
      init: (shape) => {
        const out = new Float32Array(shape.reduce((a, d) => a * d, 1));
        out.fill(1, k, 2 * k);
        return out;
      },
    };
  }

  /** Keras's gate order i, f, g, o along the 4·units axis:
   *    i, f, o = σ(·)   g = tanh(·)   c_t = f·c_{t−1} + i·g   h_t = o·tanh(c_t) */
  protected step(xw: Tensor, prev: { h: Tensor; c?: Tensor } | undefined, u: Tensor): { h: Tensor; c: Tensor } {
    const z = prev ? xw.add(prev.h.matmul(u)) : xw;
    const k = this.units;
    const batch = z.shape[0];
    const gate = (j: number) => z.slice([0, j * k], [batch, (j + 1) * k]);
    const [i, f, g, o] = [gate(0).sigmoid(), gate(1).sigmoid(), gate(2).tanh(), gate(3).sigmoid()];
    const c = prev?.c ? f.mul(prev.c).add(i.mul(g)) : i.mul(g);
    return { h: o.mul(c.tanh()), c };
  }
}

export const lstm = (units: number, opts: LstmOptions = {}): Layer => new Lstm(units, opts);
