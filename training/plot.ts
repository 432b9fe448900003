/** Pictures of a training run: the history as an SVG line chart (loss and accuracy panels) and a
 *  grid of images as a PNG (the sparse autoencoder's filters). Both are deterministic — same input,
 *  same bytes — and written atomically. */
import { PNG } from "pngjs";
import { KilnError } from "../src/ir/errors.ts";
import { writeFileAtomic } from "../formats/safetensors.ts";

export interface History {
  readonly loss: readonly number[];
  readonly accuracy?: readonly number[];
  readonly valLoss?: readonly number[];
  readonly valAccuracy?: readonly number[];
}

const W = 640;
const PANEL_H = 260;
const M = { left: 64, right: 120, top: 28, bottom: 40 };
const COLORS = { train: "#1f77b4", val: "#d62728" };

/** 1, 2 or 5 × 10^k, the smallest such step giving at most `count` intervals over `span`. */
function niceStep(span: number, count: number): number {
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw * (1 - 1e-9))!;
}
function ticks(lo: number, hi: number, count: number): { lo: number; hi: number; values: number[]; decimals: number } {
  const step = niceStep(hi - lo, count);
  const a = Math.floor(lo / step + 1e-9) * step;
  const b = Math.ceil(hi / step - 1e-9) * step;
  const values: number[] = [];
  for (let i = 0; a + i * step <= b + step * 1e-9; i++) values.push(a + i * step);
  return { lo: a, hi: b, values, decimals: Math.max(0, -Math.floor(Math.log10(step) + 1e-9)) };
}
const f2 = (v: number): string => v.toFixed(2);

interface Series {
  readonly name: string;
  readonly values: readonly number[];
  readonly color: string;
}

/** One panel: frame, ticks with labels, one polyline per series (non-finite values are left out of
 *  the line — a diverged loss — and of the axis range), legend right of the frame. */
function panel(title: string, series: readonly Series[], epochs: number, top: number): string[] {
  const x0 = M.left,
    x1 = W - M.right,
    y0 = top + M.top,
    y1 = top + PANEL_H - M.bottom;
  const finite = series.flatMap((s) => s.values.filter(Number.isFinite));
  let lo = finite.length ? Math.min(...finite) : 0;
  let hi = finite.length ? Math.max(...finite) : 1;
  if (hi - lo < 1e-12) {
    // a flat line still needs a range
    const pad = Math.max(Math.abs(lo) * 0.1, 1e-3);
    lo -= pad;
    hi += pad;
  }
  const yt = ticks(lo, hi, 5);
  const xt = epochs > 1 ? ticks(1, epochs, Math.min(epochs - 1, 10)) : { lo: 0, hi: 2, values: [1], decimals: 0 };
  const sx = (e: number): number => x0 + ((e - xt.lo) / (xt.hi - xt.lo)) * (x1 - x0);
  const sy = (v: number): number => y1 - ((v - yt.lo) / (yt.hi - yt.lo)) * (y1 - y0);
  const out = [
    `<g class="panel" data-title="${title}">`,
    `<text x="${f2((x0 + x1) / 2)}" y="${f2(y0 - 10)}" text-anchor="middle" font-weight="bold">${title}</text>`,
    `<rect x="${x0}" y="${y0}" width="${x1 - x0}" height="${y1 - y0}" fill="none" stroke="#000"/>`,
  ];
  for (const v of yt.values) {
    const y = f2(sy(v));
    out.push(`<line x1="${x0 - 5}" y1="${y}" x2="${x0}" y2="${y}" stroke="#000"/>`);
    out.push(`<text x="${x0 - 8}" y="${y}" text-anchor="end" dominant-baseline="middle">${v.toFixed(yt.decimals)}</text>`);
  }
  for (const e of xt.values.filter((e) => e >= 1)) {
    // steps are whole epochs: count ≤ epochs − 1
    const x = f2(sx(e));
    out.push(`<line x1="${x}" y1="${y1}" x2="${x}" y2="${y1 + 5}" stroke="#000"/>`);
    out.push(`<text x="${x}" y="${y1 + 18}" text-anchor="middle">${Math.round(e)}</text>`);
  }
  out.push(`<text x="${f2((x0 + x1) / 2)}" y="${y1 + 34}" text-anchor="middle">epoch</text>`);
  series.forEach((s, i) => {
    const pts = s.values.flatMap((v, j) => (Number.isFinite(v) ? [`${f2(sx(j + 1))},${f2(sy(v))}`] : []));
    out.push(`<polyline data-series="${s.name}" fill="none" stroke="${s.color}" stroke-width="2" points="${pts.join(" ")}"/>`);
    const ly = y0 + 12 + i * 18;
    out.push(`<line x1="${x1 + 12}" y1="${ly}" x2="${x1 + 36}" y2="${ly}" stroke="${s.color}" stroke-width="2"/>`);
    out.push(`<text x="${x1 + 42}" y="${ly}" dominant-baseline="middle">${s.name}</text>`);
  });
  out.push("</g>");
  return out;
}

/** The chart's SVG text: a loss panel, and an accuracy panel below it when accuracies are given. */
export function historySvg(history: History): string {
  const epochs = history.loss.length;
  const check = (name: string, v: readonly number[] | undefined): void => {
    if (v !== undefined && v.length !== epochs) {
      throw new KilnError(`historyPlot: ${name} has ${v.length} values but loss has ${epochs} (one per epoch)`);
    }
  };
  check("accuracy", history.accuracy);
  check("valLoss", history.valLoss);
  check("valAccuracy", history.valAccuracy);
  if (epochs === 0) throw new KilnError("historyPlot: the history is empty (no epochs)");
  const pick = (pairs: [string, readonly number[] | undefined, string][]): Series[] =>
    pairs.filter(([, v]) => v !== undefined).map(([name, values, color]) => ({ name, values: values!, color }));
  const panels = [
    pick([
      ["loss", history.loss, COLORS.train],
      ["val_loss", history.valLoss, COLORS.val],
    ]),
  ];
  const acc = pick([
    ["accuracy", history.accuracy, COLORS.train],
    ["val_accuracy", history.valAccuracy, COLORS.val],
  ]);
  if (acc.length) panels.push(acc);
  const h = PANEL_H * panels.length;
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${h}" viewBox="0 0 ${W} ${h}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${h}" fill="#fff"/>`,
    ...panels.flatMap((s, i) => panel(i === 0 ? "loss" : "accuracy", s, epochs, i * PANEL_H)),
    "</svg>",
    "",
  ].join("\n");
}

export function historyPlot(history: History, path: string): void {
  writeFileAtomic(path, historySvg(history));
}

export interface GridOptions {
  /** Pixels per image row and column; each image is `height × width`, row-major. */
  readonly width: number;
  readonly height: number;
  /** Images per grid row (default: ⌈√n⌉). */
  readonly cols?: number;
}

/** Grayscale PNG bytes: images row by row with a 1-px black gap, each stretched from its own
 *  min..max to 0..255 (a constant image becomes mid-gray 128, there being no range to stretch). */
export function imageGridPng(images: readonly Float32Array[], opts: GridOptions): Uint8Array {
  const { width, height } = opts;
  const n = images.length;
  if (n === 0) throw new KilnError("imageGrid: no images");
  const cols = opts.cols ?? Math.ceil(Math.sqrt(n));
  const positive = (v: number): boolean => Number.isInteger(v) && v > 0;
  if (!positive(width) || !positive(height) || !positive(cols)) {
    throw new KilnError(`imageGrid: width, height and cols must be positive integers (got ${width}, ${height}, ${cols})`);
  }
  const rows = Math.ceil(n / cols);
  const png = new PNG({ width: cols * (width + 1) - 1, height: rows * (height + 1) - 1 });
  png.data.fill(0);
  for (let k = 0; k < png.data.length; k += 4) png.data[k + 3] = 255;
  images.forEach((img, i) => {
    if (img.length !== width * height) {
      throw new KilnError(`imageGrid: image ${i} has ${img.length} values, expected ${height}×${width} = ${width * height}`);
    }
    let lo = Infinity,
      hi = -Infinity;
    for (const v of img) {
      if (!Number.isFinite(v)) throw new KilnError(`imageGrid: image ${i} has a non-finite value (${v})`);
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    const ox = (i % cols) * (width + 1),
      oy = Math.floor(i / cols) * (height + 1);
    for (let r = 0; r < height; r++) {
      for (let c = 0; c < width; c++) {
        const g = hi > lo ? Math.round(((img[r * width + c] - lo) / (hi - lo)) * 255) : 128;
        const at = ((oy + r) * png.width + ox + c) * 4;
        png.data[at] = png.data[at + 1] = png.data[at + 2] = g;
      }
    }
  });
  return PNG.sync.write(png, { colorType: 0 });
}

export function imageGrid(images: readonly Float32Array[], opts: GridOptions & { readonly path: string }): void {
  writeFileAtomic(opts.path, imageGridPng(images, opts));
}
