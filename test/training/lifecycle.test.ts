/** One model, many calls: overlapping fit / evaluate / predict run one after another (each result
 *  equal to its twin made alone, in the same order), dispose refuses later calls clearly, and a
 *  checkpointed fit resumed in a new model follows the uninterrupted run bit for bit — also after
 *  a lost device, whose error says how to resume, and after the process was killed mid-fit. */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test, vi } from "vitest";
import { GpuError } from "../../src/ir/errors.ts";
import { Executable } from "../../runtime/execute.ts";
import { loadPredictor } from "../../training/compile-model.ts";
import { useGpu } from "../helpers/gpu.ts";
import { data, fitOpts, make } from "./fixtures/small-model.ts";

useGpu();

const { x, y } = data(40, 5);

describe("calls on one model", () => {
  test("fit, evaluate and predict started together give what the same calls give one by one", async () => {
    const a = await make();
    const started = [a.fit(x, y, fitOpts), a.predict(x), a.evaluate(x, y), a.fit(x, y, fitOpts), a.predict(x, { batchSize: 5 })] as const;
    const together = await Promise.all(started);
    const b = await make();
    const alone = [
      await b.fit(x, y, fitOpts),
      await b.predict(x),
      await b.evaluate(x, y),
      await b.fit(x, y, fitOpts),
      await b.predict(x, { batchSize: 5 }),
    ];
    for (const i of [0, 3]) expect((together[i] as { loss: number[] }).loss).toEqual((alone[i] as { loss: number[] }).loss);
    for (const i of [1, 4])
      expect(Array.from((together[i] as { data: Float32Array }).data)).toEqual(Array.from((alone[i] as { data: Float32Array }).data));
    expect(together[2]).toEqual(alone[2]);
    expect(await a.getWeights({ optimizer: true })).toEqual(await b.getWeights({ optimizer: true }));
    a.dispose();
    b.dispose();
  });

  test("loadPredictor: predictions started together equal the same made one by one", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "kiln-pred-")), "m");
    const m = await make();
    await m.fit(x, y, fitOpts);
    await m.save(dir);
    m.dispose();
    const p = await loadPredictor(dir, { batchSize: 8 });
    const parts = [0, 1, 2, 3, 4].map((k) => ({ shape: [8, 3], data: x.data.subarray(24 * k, 24 * (k + 1)) }));
    const together = await Promise.all(parts.map((part) => p.predict(part)));
    for (const [k, part] of parts.entries()) expect(Array.from(together[k].data)).toEqual(Array.from((await p.predict(part)).data));
    p.dispose();
  });

  test("after dispose every call is refused with what to do instead", async () => {
    const m = await make();
    const running = m.fit(x, y, fitOpts);
    m.dispose(); // waits for the fit already started
    await expect(running).resolves.toMatchObject({ epochs: 2 });
    const refused =
      "this model was disposed, which released its GPU memory and weights; call getWeights() or save() before dispose(), or compileModel again";
    await expect(m.getWeights()).rejects.toThrow(`getWeights: ${refused}`);
    await expect(m.predict(x)).rejects.toThrow(`predict: ${refused}`);
    await expect(m.fit(x, y, fitOpts)).rejects.toThrow(`fit: ${refused}`);
    m.dispose(); // twice is harmless
  });
});

describe("checkpoints", () => {
  test("4 epochs in one go equal 2 epochs, a checkpoint, and 2 more in a new model, bit for bit", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "kiln-ck-")), "ck");
    const whole = await make();
    const h4 = await whole.fit(x, y, { ...fitOpts, epochs: 4 });
    const first = await make();
    await first.fit(x, y, { ...fitOpts, epochs: 2, checkpoint: { dir, every: 1 } });
    first.dispose();
    const resumed = await make();
    const h = await resumed.fit(x, y, { ...fitOpts, epochs: 4, resumeFrom: dir });
    expect(h.loss).toEqual(h4.loss);
    expect(h.accuracy).toEqual(h4.accuracy);
    expect(h.epochs).toBe(4);
    expect(await resumed.getWeights({ optimizer: true })).toEqual(await whole.getWeights({ optimizer: true }));
    whole.dispose();
    resumed.dispose();
  });

  test("a process killed (SIGKILL) mid-fit leaves a checkpoint that resumes to the uninterrupted run, bit for bit", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "kiln-ck-")), "ck");
    const child = spawnSync(
      process.execPath,
      ["--import", "tsx", fileURLToPath(new URL("./fixtures/fit-then-die.ts", import.meta.url)), dir, "3"],
      {
        cwd: fileURLToPath(new URL("../../", import.meta.url)),
        encoding: "utf8",
      },
    );
    expect(child.signal, child.stderr).toBe("SIGKILL");
    const whole = await make();
    const h4 = await whole.fit(x, y, { ...fitOpts, epochs: 4 });
    const resumed = await make();
    const h = await resumed.fit(x, y, { ...fitOpts, epochs: 4, resumeFrom: dir });
    expect(h.loss).toEqual(h4.loss);
    expect(await resumed.getWeights({ optimizer: true })).toEqual(await whole.getWeights({ optimizer: true }));
    whole.dispose();
    resumed.dispose();
  });

  test("early stopping across a resume restores the same best weights as an uninterrupted run", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "kiln-ck-")), "ck");
    // Flipped validation labels: val_loss is best at epoch 1 and rises, so fit stops after epoch 3.
    const flipped = { shape: [40], data: y.data.map((v) => 1 - v) };
    const opts = { ...fitOpts, epochs: 8, validationData: [x, flipped] as const, earlyStopping: { patience: 2 } };
    const whole = await make();
    const h = await whole.fit(x, y, opts);
    // The best epoch comes before the resume, so its weights must travel in the checkpoint.
    expect(h.stoppedEarly).toBe(true);
    expect(h.bestEpoch).toBeLessThanOrEqual(2);
    const first = await make();
    await first.fit(x, y, { ...opts, epochs: 2, checkpoint: { dir } });
    first.dispose();
    const resumed = await make();
    const r = await resumed.fit(x, y, { ...opts, resumeFrom: dir });
    expect({ epochs: r.epochs, best: r.bestEpoch, stopped: r.stoppedEarly }).toEqual({
      epochs: h.epochs,
      best: h.bestEpoch,
      stopped: h.stoppedEarly,
    });
    expect(r.valLoss).toEqual(h.valLoss);
    expect(await resumed.getWeights()).toEqual(await whole.getWeights());
    whole.dispose();
    resumed.dispose();
  });

  test("a lost device leaves the last checkpoint whole and the error says how to resume", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "kiln-ck-")), "ck");
    const m = await make();
    const real = Executable.prototype.run;
    let calls = 0;
    // 5 steps per epoch: the device goes in epoch 3, after the checkpoint of epoch 2.
    const spy = vi.spyOn(Executable.prototype, "run").mockImplementation(function (this: Executable, ...args) {
      if (++calls === 12) throw new GpuError("the GPU device was lost (simulated)");
      return real.apply(this, args);
    });
    const err = await m.fit(x, y, { ...fitOpts, epochs: 4, checkpoint: { dir } }).catch((e: Error) => e);
    spy.mockRestore();
    expect(err).toBeInstanceOf(GpuError);
    expect((err as Error).message).toContain("the GPU device was lost (simulated)");
    expect((err as Error).message).toContain(
      `fit stopped in training: the checkpoint after epoch 2 is intact in ${join(dir, "checkpoint.safetensors")}; resume with fit(x, y, { ...the same options, resumeFrom: ${JSON.stringify(dir)} })`,
    );
    expect(existsSync(join(dir, "checkpoint.safetensors"))).toBe(true);
    const resumed = await make();
    await resumed.fit(x, y, { ...fitOpts, epochs: 4, resumeFrom: dir });
    const whole = await make();
    await whole.fit(x, y, { ...fitOpts, epochs: 4 });
    expect(await resumed.getWeights()).toEqual(await whole.getWeights());
    for (const t of [m, resumed, whole]) t.dispose();
  });

  test("resumeFrom a folder without a checkpoint says so", async () => {
    const m = await make();
    await expect(m.fit(x, y, { ...fitOpts, resumeFrom: "/nonexistent/ck" })).rejects.toThrow(
      "fit resumeFrom: no such file /nonexistent/ck/checkpoint.safetensors (a folder that fit's checkpoint option wrote)",
    );
  });
});
