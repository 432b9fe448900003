import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PNG } from "pngjs";
import { afterAll, describe, expect, test } from "vitest";
import { historyPlot, historySvg, imageGrid, imageGridPng } from "../../training/plot.ts";

const dir = mkdtempSync(join(tmpdir(), "kiln-plot-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Well-formedness at the tag level: every open tag is closed in order, attributes are quoted. */
function expectWellFormed(xml: string): void {
  const stack: string[] = [];
  const body = xml.replace(/^<\?xml[^?]*\?>/, "");
  for (const m of body.matchAll(/<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g)) {
    const [, close, name, , self] = m;
    if (close) expect(stack.pop(), `closing </${name}>`).toBe(name);
    else if (!self) stack.push(name);
  }
  expect(stack).toEqual([]);
  // Every '<' starts a tag the regex accepted (so no stray or malformed markup).
  const tags = [...body.matchAll(/<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g)].length;
  expect((body.match(/</g) ?? []).length).toBe(tags);
}
const polylines = (svg: string): Map<string, string[]> =>
  new Map([...svg.matchAll(/<polyline data-series="([^"]+)"[^>]* points="([^"]*)"/g)].map((m) => [m[1], m[2].split(" ").filter(Boolean)]));

describe("historyPlot", () => {
  const history = {
    loss: [2.3, 1.1, 0.7, 0.5, 0.42, 0.4],
    accuracy: [0.2, 0.6, 0.8, 0.85, 0.9, 0.91],
    valLoss: [2.0, 1.2, 0.8, 0.6, 0.55, 0.56],
    valAccuracy: [0.3, 0.55, 0.75, 0.82, 0.86, 0.87],
  };

  test("two panels, one polyline per series with a point per epoch, written atomically", () => {
    const path = join(dir, "history.svg");
    historyPlot(history, path);
    expect(readdirSync(dir).filter((f) => f.includes(".tmp-"))).toEqual([]);
    const svg = readFileSync(path, "utf8");
    expectWellFormed(svg);
    expect(svg).toBe(historySvg(history)); // deterministic
    expect(svg).toMatch(/<svg [^>]*height="520"/);
    expect(svg.match(/<g class="panel"/g)).toHaveLength(2);
    const lines = polylines(svg);
    expect([...lines.keys()]).toEqual(["loss", "val_loss", "accuracy", "val_accuracy"]);
    for (const pts of lines.values()) expect(pts).toHaveLength(6);
    for (const name of ["loss", "val_loss", "accuracy", "val_accuracy", "epoch", "accuracy"]) expect(svg).toContain(`>${name}</text>`);
    // Loss decreases: on screen, y grows downward, so the line's y values increase.
    const ys = lines.get("loss")!.map((p) => Number(p.split(",")[1]));
    expect(ys).toEqual([...ys].sort((a, b) => a - b));
    const xs = lines.get("accuracy")!.map((p) => Number(p.split(",")[0]));
    expect(new Set(xs).size).toBe(6);
    // Tick labels on the loss axis cover the data: 0.4 .. 2.3 → at least 0.0/0.5 .. 2.5.
    expect(svg).toMatch(/>2\.5<\/text>/);
  });

  test("loss only: one panel; non-finite points are left out; a flat line still has a range", () => {
    const svg = historySvg({ loss: [1, Number.NaN, 0.5] });
    expectWellFormed(svg);
    expect(svg.match(/<g class="panel"/g)).toHaveLength(1);
    expect(polylines(svg).get("loss")).toHaveLength(2);
    const flat = historySvg({ loss: [0.3] });
    expect(flat).not.toMatch(/NaN|Infinity/);
    expect(polylines(flat).get("loss")).toHaveLength(1);
  });

  test("mismatched lengths and empty history fail clearly", () => {
    expect(() => historySvg({ loss: [1, 2], accuracy: [0.5] })).toThrow(/accuracy has 1 values but loss has 2/);
    expect(() => historySvg({ loss: [] })).toThrow(/empty/);
  });
});

describe("imageGrid", () => {
  test("decodes back with the right size, gaps and per-image normalization", () => {
    const a = Float32Array.from({ length: 6 }, (_, i) => i); // 2×3, 0..5
    const b = Float32Array.from({ length: 6 }, (_, i) => -10 * i); // 0 .. -50: reversed ramp
    const c = new Float32Array(6).fill(7); // constant
    const path = join(dir, "grid.png");
    imageGrid([a, b, c], { width: 3, height: 2, cols: 2, path });
    const png = PNG.sync.read(readFileSync(path));
    expect([png.width, png.height]).toEqual([2 * 3 + 1, 2 * 2 + 1]);
    const px = (x: number, y: number): number[] => [...png.data.subarray((y * png.width + x) * 4, (y * png.width + x) * 4 + 4)];
    expect(px(0, 0)).toEqual([0, 0, 0, 255]); // a: min
    expect(px(2, 1)).toEqual([255, 255, 255, 255]); // a: max
    expect(px(1, 0)[0]).toBe(Math.round(255 / 5)); // a: 1 of 0..5
    expect(px(3, 0)).toEqual([0, 0, 0, 255]); // the gap column
    expect(px(4, 0)[0]).toBe(255); // b's first value is its max
    expect(px(6, 1)[0]).toBe(0); // b's last value is its min
    expect(px(0, 2)[0]).toBe(0); // the gap row
    expect(px(1, 3)[0]).toBe(128); // c: constant → mid-gray
    expect(px(5, 4)[0]).toBe(0); // the empty fourth cell stays background
    expect(Buffer.from(imageGridPng([a, b, c], { width: 3, height: 2, cols: 2 })).equals(readFileSync(path))).toBe(true);
  });

  test("bad sizes fail clearly", () => {
    expect(() => imageGridPng([new Float32Array(5)], { width: 3, height: 2 })).toThrow(/image 0 has 5 values, expected 2×3 = 6/);
    expect(() => imageGridPng([], { width: 3, height: 2 })).toThrow(/no images/);
    expect(() => imageGridPng([Float32Array.of(Number.NaN)], { width: 1, height: 1 })).toThrow(/non-finite/);
    expect(() => imageGridPng([new Float32Array(1)], { width: 1, height: 1, cols: 0 })).toThrow(/positive integers/);
  });
});
