import { afterEach, describe, expect, test, vi } from "vitest";
import { formatValues, progress, type ProgressStream } from "../../training/progress.ts";

/** Records writes. cli-progress (through node:readline) only calls write(chunk, cb) and reads
 *  isTTY and columns. */
function fakeStream(isTTY: boolean): ProgressStream & { out: string } {
  const s = {
    out: "",
    isTTY,
    columns: 160,
    write(chunk: string, cb?: (err?: Error | null) => void): boolean {
      s.out += chunk;
      cb?.();
      return true;
    },
  };
  return s;
}
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x09\x0b-\x1f\x7f]/;

afterEach(() => {
  vi.useRealTimers();
});

describe("progress", () => {
  test("not a TTY: one plain line per epoch with the numbers, no control characters", () => {
    const s = fakeStream(false);
    const bar = progress({ total: 235, label: "epoch 2/10", stream: s });
    for (let i = 1; i <= 235; i++) bar.update(i, { loss: 1 / i, accuracy: i / 235 });
    expect(s.out).toBe("");
    bar.end({ loss: 0.30114, accuracy: 0.9133, valLoss: 0.287, valAccuracy: 0.918 });
    bar.end({ loss: 1 }); // a second end is ignored
    expect(s.out).toMatch(
      /^epoch 2\/10: 235 steps in \d+\.\d+s \| loss 0\.3011 \| accuracy 0\.9133 \| val_loss 0\.2870 \| val_accuracy 0\.9180\n$/,
    );
    expect(s.out).not.toMatch(CONTROL);
  });

  test("the epoch line falls back to the last update's values", () => {
    const s = fakeStream(false);
    const bar = progress({ total: 3, label: "epoch 1/1", stream: s });
    bar.update(3, { loss: 0.5, accuracy: 0.25 });
    bar.end();
    expect(s.out).toMatch(/^epoch 1\/1: 3 steps in .* \| loss 0\.5000 \| accuracy 0\.2500\n$/);
  });

  test("verbose 0 writes nothing, TTY or not; verbose 2 writes plain lines even on a TTY", () => {
    for (const tty of [false, true]) {
      const s = fakeStream(tty);
      const bar = progress({ total: 10, label: "epoch 1/3", stream: s, verbose: 0 });
      bar.update(5, { loss: 1 });
      bar.end({ loss: 1 });
      expect(s.out).toBe("");
    }
    const s = fakeStream(true);
    const bar = progress({ total: 10, label: "epoch 1/3", stream: s, verbose: 2 });
    bar.update(10, { loss: 2 });
    bar.end({ accuracy: 0.75 });
    expect(s.out).toMatch(/^epoch 1\/3: 10 steps in .* \| loss 2\.0000 \| accuracy 0\.7500\n$/);
    expect(s.out).not.toMatch(CONTROL);
  });

  test("a TTY gets a redrawn bar with step, metrics and ETA, then the summary", () => {
    vi.useFakeTimers();
    const s = fakeStream(true);
    const bar = progress({ total: 200, label: "epoch 3/5", stream: s });
    for (let i = 1; i <= 120; i++) {
      vi.advanceTimersByTime(5); // 5 ms per step → an ETA of 80 × 5 ms ≈ 1 s
      bar.update(i, { loss: 0.25, accuracy: 0.875 });
    }
    vi.advanceTimersByTime(150); // the bar redraws on its own timer
    expect(s.out).toMatch(/epoch 3\/5 \[=+-+\] 120\/200 \| loss 0\.2500 \| accuracy 0\.8750 \| ETA \d+s/);
    expect(s.out).toContain("\x1b["); // cursor movement and line clearing
    for (let i = 121; i <= 200; i++) bar.update(i, { loss: 0.125, accuracy: 0.9 });
    bar.end({ loss: 0.125, accuracy: 0.9, valLoss: 0.5, valAccuracy: 0.8125 });
    const frames = s.out.split(/\x1b\[\d*G/); // each frame starts with a cursorTo(0)
    const lastFrame = frames.at(-1)!.replace(/\x1b(\[\d*K|[78])/g, ""); // clear-right, cursor restore
    expect(lastFrame).toMatch(
      /^epoch 3\/5 \[={20}\] 200\/200 \| loss 0\.1250 \| accuracy 0\.9000 \| val_loss 0\.5000 \| val_accuracy 0\.8125 \| \d+\.\d+s\n$/,
    );
    const writes = s.out.length;
    vi.advanceTimersByTime(1000);
    expect(s.out.length).toBe(writes); // stopped: no more redraws
  });

  test("every line fits 80 columns: the validation figures move to a line of their own, the bar narrows", () => {
    vi.useFakeTimers();
    const plain = Object.assign(fakeStream(false), { columns: undefined });
    const summary = { loss: 0.30114, accuracy: 0.9133, valLoss: 0.287, valAccuracy: 0.918 };
    const a = progress({ total: 1875, label: "epoch 10/10", stream: plain });
    a.update(1875);
    a.end(summary);
    expect(plain.out).toMatch(
      /^epoch 10\/10: 1875 steps in \d+\.\d+s \| loss 0\.3011 \| accuracy 0\.9133\n {2}val_loss 0\.2870 \| val_accuracy 0\.9180\n$/,
    );
    const tty = Object.assign(fakeStream(true), { columns: 80 });
    const b = progress({ total: 1875, label: "epoch 10/10", stream: tty });
    for (let i = 1; i <= 1875; i += 25) {
      vi.advanceTimersByTime(120);
      b.update(i, { loss: 0.25, accuracy: 0.875 });
    }
    b.end(summary);
    const lines = tty.out.split(/\x1b\[\d*G|\n/).map((l) => l.replace(/\x1b(\[\d*K|\[\?7[hl]|[78])/g, ""));
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThanOrEqual(80);
    expect(tty.out).toMatch(/val_loss 0\.2870 \| val_accuracy 0\.9180\n$/);
  });

  test("formatValues and bad totals", () => {
    expect(formatValues({ loss: Number.NaN, accuracy: 1 })).toBe(" | loss NaN | accuracy 1.0000");
    expect(formatValues({})).toBe("");
    expect(() => progress({ total: -1, label: "epoch 1/1", stream: fakeStream(false) })).toThrow(
      /epoch 1\/1.*non-negative integer, got -1/,
    );
  });
});
