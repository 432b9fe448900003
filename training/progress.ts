/** Training progress: a cli-progress bar per epoch on a TTY, plain lines (or nothing) elsewhere.
 *
 *    TTY:      epoch 2/10 [==========----------] 120/235 | loss 0.3125 | accuracy 0.9102 | ETA 14s
 *    not TTY:  epoch 2/10: 235 steps in 28.1s | loss 0.3011 | accuracy 0.9133
 *              val_loss 0.2870 | val_accuracy 0.9180
 *
 *  The metrics are named as everywhere else (Keras's loss, accuracy, val_loss, val_accuracy), and
 *  every line fits the terminal (80 columns when it does not say): the bar narrows, and the
 *  epoch's line puts the validation figures on a line of their own when they would not fit.
 *
 *  verbose 0 writes nothing; 1 draws the bar on a TTY and one line per epoch otherwise (Keras'
 *  `verbose=1`); 2 writes only the per-epoch line, TTY or not (Keras' `verbose=2`). Logs and CI
 *  output therefore never receive control characters. */
import cliProgress from "cli-progress";
import { KilnError } from "../src/ir/errors.ts";

/** Metrics shown after the counters; undefined entries are left out. */
export interface ProgressValues {
  readonly loss?: number;
  readonly accuracy?: number;
  readonly valLoss?: number;
  readonly valAccuracy?: number;
}
export interface ProgressStream {
  write(chunk: string, cb?: (err?: Error | null) => void): boolean;
  readonly isTTY?: boolean;
  readonly columns?: number;
}
export interface ProgressOptions {
  /** Steps in this epoch. */
  readonly total: number;
  /** Shown first, e.g. "epoch 2/10". */
  readonly label: string;
  readonly stream?: ProgressStream;
  readonly verbose?: 0 | 1 | 2;
}
export interface Progress {
  /** `step` steps of `total` done; values are the latest (or running mean) metrics. */
  update(step: number, values?: ProgressValues): void;
  /** Finishes the epoch: the bar's last frame (TTY) or the epoch's line, with the summary. */
  end(summary?: ProgressValues): void;
}

const NAMES: readonly [keyof ProgressValues, string][] = [
  ["loss", "loss"],
  ["accuracy", "accuracy"],
  ["valLoss", "val_loss"],
  ["valAccuracy", "val_accuracy"],
];

const parts = (v: ProgressValues): string[] => NAMES.filter(([k]) => v[k] !== undefined).map(([k, name]) => `${name} ${v[k]!.toFixed(4)}`);

/** " | loss 0.3125 | accuracy 0.9102": four decimals, NaN and ±Infinity printed as such (a diverged run). */
export function formatValues(v: ProgressValues): string {
  return parts(v)
    .map((p) => ` | ${p}`)
    .join("");
}

/** `head` and the values on one line if it fits in `width`, else the validation values on a second one. */
function fitted(head: string, v: ProgressValues, width: number): string {
  const all = parts(v);
  const one = [head, ...all].join(" | ");
  if (one.length <= width) return one;
  const train = all.filter((p) => !p.startsWith("val_"));
  const val = all.filter((p) => p.startsWith("val_"));
  return [[head, ...train].join(" | "), ...(val.length ? [`  ${val.join(" | ")}`] : [])].join("\n");
}

const seconds = (ms: number): string => (ms < 10_000 ? (ms / 1000).toFixed(2) : (ms / 1000).toFixed(1)) + "s";

export function progress(opts: ProgressOptions): Progress {
  const { total, label, stream = process.stdout, verbose = 1 } = opts;
  if (!Number.isInteger(total) || total < 0) throw new KilnError(`progress "${label}": total must be a non-negative integer, got ${total}`);
  if (verbose === 0) return { update() {}, end() {} };
  const started = Date.now();
  let last: ProgressValues = {};
  let steps = 0;
  const width = Math.max(40, stream.columns ?? 80);
  const line = (summary: ProgressValues): string =>
    `${fitted(`${label}: ${steps} steps in ${seconds(Date.now() - started)}`, summary, width)}\n`;

  if (verbose === 2 || stream.isTTY !== true) {
    let ended = false;
    return {
      update(step, values) {
        steps = step;
        if (values) last = values;
      },
      end(summary) {
        if (ended) return;
        ended = true;
        stream.write(line({ ...last, ...summary }));
      },
    };
  }

  let done = false;
  // A formatter function, not a format string, so the last frame can show the epoch's time
  // where the ETA was.
  const format: cliProgress.GenericFormatter = (options, params, payload: { metrics: string }) => {
    const eta = typeof params.eta === "number" ? cliProgress.Format.TimeFormat(params.eta, options, 5) : "?";
    const tail = done ? seconds(Date.now() - started) : `ETA ${eta}`;
    const rest = ` ${params.value}/${params.total}${payload.metrics} | ${tail}`;
    // The bar takes what the terminal leaves, 20 at most; the metrics lose their tail last.
    const room = width - label.length - 3 - rest.length;
    const bar = cliProgress.Format.BarFormat(params.progress, { ...options, barsize: Math.max(5, Math.min(20, room)) });
    return `${label} [${bar}]${rest}`.slice(0, width);
  };
  const bar = new cliProgress.SingleBar({
    stream: stream as NodeJS.WritableStream,
    format,
    barsize: 20,
    clearOnComplete: false,
    linewrap: true, // truncate to the terminal's width instead of wrapping onto a new line
    fps: 10,
  });
  bar.start(total, 0, { metrics: "" });
  return {
    update(step, values) {
      if (done) return;
      steps = step;
      if (values) last = values;
      bar.update(Math.min(step, total), { metrics: formatValues(last) });
    },
    end(summary) {
      if (done) return;
      done = true;
      const all = { ...last, ...summary };
      const metrics = formatValues(all);
      // The smallest frame with every figure; too wide, and the validation figures get a line of their own.
      const fits = `${label} [=====] ${total}/${total}${metrics} | 100.0s`.length <= width;
      const { valLoss, valAccuracy, ...train } = all;
      bar.update(Math.min(steps, total), { metrics: fits ? metrics : formatValues(train) });
      bar.stop(); // draws the last frame and ends its line
      const val = formatValues({ valLoss, valAccuracy });
      if (!fits && val) stream.write(`  ${val.slice(3)}\n`);
    },
  };
}
