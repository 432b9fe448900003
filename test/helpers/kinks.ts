/** Is a central difference at this point trustworthy? Random graphs are not steered away from
 *  kinks; instead every live node that has one (relu/abs/sign at 0, max/min ties, reduce_max and
 *  max_pool ties, floor/ceil/trunc/mod near integers, comparisons near equality) and every
 *  singularity (log, sqrt, rsqrt, recip, div, pow bases at 0) is measured at the point, and the
 *  caller discards the case (fc.pre) when one sits within `margin` of it: 1e-3 is far more than
 *  the difference steps (ε = 1e-6 times the node's gain) move it, and far more than f32 rounding
 *  on the GPU, so both sides of the check take the same branch.
 *
 *  A kink that the value sits on *identically* (a relu of a relu's zeros, max(x, relu(x)) for
 *  x > 0, a max over an expanded axis) is no hazard: nothing moves along the difference, and the
 *  rules' conventions (0 at relu's kink, ties shared by reduce_max, the first maximal position in
 *  a max_pool2d window) give the true directional derivative. Such a value is recognised by
 *  staying exactly on the kink at `probes`: the point moved a little along random directions.
 *  Values must also be finite and within `limit`, or float64 rounding swamps the difference. */
import { interpret } from "../../src/interpret.ts";
import type { HostTensor } from "../../src/ir/host.ts";
import { liveNodes } from "../../src/ir/live.ts";
import type { Graph, Node } from "../../src/ir/types.ts";
import { broadcastAt, forEachIndex, type Tensor64 } from "../../src/ops/tensor64.ts";

export interface SmoothOptions {
  readonly margin: number;
  readonly limit: number;
  /** Also require sin and cos inputs in [-π, π], where WGSL states their accuracy. */
  readonly gpuDomains?: boolean;
}

type Values = (id: number) => Tensor64;

/** Signed distance to the kink, per element; 0 is on it. */
const DISTANCE: Partial<Record<string, (n: Node, v: Values) => ArrayLike<number>>> = {
  relu: (n, v) => v(n.inputs[0]).data,
  abs: (n, v) => v(n.inputs[0]).data,
  sign: (n, v) => v(n.inputs[0]).data,
  floor: (n, v) => offInteger(v(n.inputs[0]).data),
  ceil: (n, v) => offInteger(v(n.inputs[0]).data),
  cast: (n, v) =>
    v(n.inputs[0]).dtype === "f32" && n.type.dtype !== "f32" && n.type.dtype !== "bool" ? offInteger(v(n.inputs[0]).data) : [],
  mod: (n, v) => offInteger(pairwise(n, v, (a, b) => a / b)),
  max: (n, v) => pairwise(n, v, (a, b) => a - b),
  min: (n, v) => pairwise(n, v, (a, b) => a - b),
  ...Object.fromEntries(
    ["lt", "le", "gt", "ge", "eq", "ne"].map((op) => [
      op,
      (n: Node, v: Values) => (v(n.inputs[0]).dtype === "f32" ? pairwise(n, v, (a, b) => a - b) : []),
    ]),
  ),
  log: (n, v) => v(n.inputs[0]).data,
  sqrt: (n, v) => v(n.inputs[0]).data,
  rsqrt: (n, v) => v(n.inputs[0]).data,
  recip: (n, v) => v(n.inputs[0]).data,
  div: (n, v) => pairwise(n, v, (_a, b) => b),
  pow: (n, v) => pairwise(n, v, (a) => a),
};

const offInteger = (xs: ArrayLike<number>): number[] => Array.from(xs, (x) => x - Math.round(x));

/** f(a, b) over the node's (broadcast) output shape. */
function pairwise(n: Node, v: Values, f: (a: number, b: number) => number): number[] {
  const [a, b] = [v(n.inputs[0]), v(n.inputs[1])];
  const out: number[] = [];
  forEachIndex(v(n.id).shape, (idx) => out.push(f(broadcastAt(a, idx), broadcastAt(b, idx))));
  return out;
}

/** For each output of a max-like node, the flat input offsets it chooses among. */
function groups(n: Node, v: Values): number[][] | undefined {
  const x = v(n.inputs[0]);
  const out = v(n.id);
  if (n.op === "reduce_max" || n.op === "reduce_min") {
    const axes = (n as Node<"reduce_max">).attrs.axes;
    const kept = x.shape.map((d, a) => (axes.includes(a) ? 1 : d));
    const gs: number[][] = Array.from({ length: out.data.length }, () => []);
    forEachIndex(x.shape, (idx, flat) => {
      let o = 0;
      idx.forEach((i, a) => (o = o * kept[a] + (axes.includes(a) ? 0 : i)));
      gs[o].push(flat);
    });
    return gs;
  }
  if (n.op === "max_pool2d") {
    const { window, strides, padding } = (n as Node<"max_pool2d">).attrs;
    const [nb, h, w, c] = x.shape;
    const [, oh, ow] = out.shape;
    const gs: number[][] = [];
    for (let b = 0; b < nb; b++)
      for (let i = 0; i < oh; i++)
        for (let j = 0; j < ow; j++)
          for (let ch = 0; ch < c; ch++) {
            const at: number[] = [];
            for (let p = 0; p < window[0]; p++)
              for (let t = 0; t < window[1]; t++) {
                const [y, z] = [i * strides[0] + p - padding[0], j * strides[1] + t - padding[2]];
                if (y >= 0 && y < h && z >= 0 && z < w) at.push(((b * h + y) * w + z) * c + ch);
              }
            gs.push(at);
          }
    return gs;
  }
  return undefined;
}

/** The tied winners of one group (as a key) and the gap to the best of the rest. */
function winners(x: Tensor64, at: readonly number[], sign: number): { key: string; gap: number } {
  const best = Math.max(...at.map((i) => sign * x.data[i]));
  const tied = at.filter((i) => sign * x.data[i] === best);
  const rest = at.filter((i) => sign * x.data[i] !== best).map((i) => sign * x.data[i]);
  return { key: tied.join(","), gap: rest.length ? best - Math.max(...rest) : Infinity };
}

/** Why a central difference at points[0] is not trustworthy, or undefined when it is.
 *  points[1…] are probes: points[0] moved slightly along random directions. */
export function notSmooth(graph: Graph, points: readonly Readonly<Record<string, HostTensor>>[], opts: SmoothOptions): string | undefined {
  const live = liveNodes(graph);
  const all: Graph = { nodes: graph.nodes, outputs: graph.nodes.filter((n) => live[n.id]).map((n) => ({ name: `v${n.id}`, id: n.id })) };
  const runs = points.map((p) => interpret(all, p));
  const at =
    (k: number): Values =>
    (id) =>
      runs[k][`v${id}`];
  const users = (id: number) => graph.nodes.filter((m) => live[m.id] && m.inputs.includes(id));
  const onlyStopped = (id: number) =>
    !graph.outputs.some((o) => o.id === id) && users(id).length > 0 && users(id).every((m) => m.op === "stop_gradient");
  const where = (n: Node, what: string) => `${what} at %${n.id} (${n.op})`;

  for (const n of graph.nodes) {
    if (!live[n.id] || n.type.dtype !== "f32") continue;
    for (let k = 0; k < runs.length; k++) {
      if (!at(k)(n.id).data.every((x) => Math.abs(x) <= opts.limit)) return where(n, `a value beyond ±${opts.limit} or not finite`);
    }
  }
  for (const n of graph.nodes) {
    if (!live[n.id]) continue;
    if (opts.gpuDomains && (n.op === "sin" || n.op === "cos") && !at(0)(n.inputs[0]).data.every((x) => Math.abs(x) <= Math.PI)) {
      return where(n, "an argument outside [-π, π]");
    }
    const dist = DISTANCE[n.op];
    if (dist) {
      const ds = runs.map((_, k) => dist(n, at(k)));
      for (let i = 0; i < ds[0].length; i++) {
        const d0 = ds[0][i];
        const onIt = ds.every((d) => d[i] === 0);
        const clear = Math.abs(d0) >= opts.margin && ds.every((d) => Math.sign(d[i]) === Math.sign(d0));
        if (!onIt && !clear) return where(n, `${d0.toExponential(1)} from a kink`);
      }
    }
    // The max that softmax and logsumexp subtract is a stopped gradient: its ties cancel.
    const gs = onlyStopped(n.id) ? undefined : groups(n, at(0));
    if (gs) {
      const sign = n.op === "reduce_min" ? -1 : 1;
      for (const g of gs) {
        const w = runs.map((_, k) => winners(at(k)(n.inputs[0]), g, sign));
        const persistent = w.every((x) => x.key === w[0].key);
        if (!persistent || w[0].gap < opts.margin) return where(n, `a tie or near tie (gap ${w[0].gap.toExponential(1)})`);
      }
    }
  }
  return undefined;
}

/** points[0] = `inputs`; then each input moved by ±δ·w along `directions` random w in [-1, 1). */
export function probePoints(
  inputs: Readonly<Record<string, HostTensor>>,
  seed: number,
  delta = 1e-5,
  directions = 2,
): Record<string, HostTensor>[] {
  const points: Record<string, HostTensor>[] = [{ ...inputs }];
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  for (let d = 0; d < directions; d++) {
    const w = Object.fromEntries(Object.entries(inputs).map(([k, t]) => [k, Array.from(t.data, () => rand())]));
    for (const sign of [1, -1]) {
      points.push(
        Object.fromEntries(
          Object.entries(inputs).map(([k, t]) => [k, { shape: t.shape, data: Array.from(t.data, (x, i) => x + sign * delta * w[k][i]) }]),
        ),
      );
    }
  }
  return points;
}
