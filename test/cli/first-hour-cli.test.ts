/** The CLI as a new user meets it: a missing model file is "no such file", an unknown -d dim is
 *  refused naming the graph's dims, `kiln run` takes a saved model's weights, and explain's
 *  --svg makes its folder and says clearly when it cannot write. */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { dense } from "../../src/api/layers.ts";
import { sequential } from "../../src/api/model.ts";
import { compileModel } from "../../training/compile-model.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();

const kiln = (...args: string[]) => execFileSync("node", ["bin/kiln.js", ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
/** The stderr of a failing command. */
const failure = (...args: string[]): string => {
  try {
    kiln(...args);
  } catch (e) {
    return String((e as { stderr: string }).stderr);
  }
  throw new Error(`kiln ${args.join(" ")} succeeded`);
};

describe("kiln, first hour", () => {
  test("a model file that does not exist is 'no such file', for run, explain and build", () => {
    expect(failure("run", "nothing/here.kir")).toContain("kiln: no such file nothing/here.kir");
    expect(failure("explain", "nothing/model.ts", "-d", "B=2")).toContain("kiln: no such file nothing/model.ts");
    expect(failure("build", "nothing/model.ts", "-o", join(tmpdir(), "kiln-never-built"))).toContain("kiln: no such file nothing/model.ts");
  });

  test("Dawn's two 'artificially reduced' warnings are not printed; other stderr and the exit status pass through", () => {
    const r = spawnSync("node", ["bin/kiln.js", "info"], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^adapter\s+\S/m);
    expect(r.stderr).not.toContain("artificially reduced");
    const bad = spawnSync("node", ["bin/kiln.js", "run", "nothing/here.kir"], { encoding: "utf8" });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toBe("kiln: no such file nothing/here.kir\n");
  });

  test("an unknown -d dim is refused, naming the graph's dims", () => {
    expect(failure("run", "examples/ir/affine-tanh.kir", "-d", "b=3")).toContain(
      'kiln: --dim b=3: the graph has no symbolic dim "b" (did you mean "B"?) (its dims: B)',
    );
    expect(failure("explain", "examples/ir/affine-tanh.kir", "-d", "B=3", "-d", "N=2")).toContain('the graph has no symbolic dim "N"');
  });

  test("run on a saved model uses its weights and seeds only x", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-run-"));
    const m = await compileModel(sequential([dense(3, { activation: "relu" }), dense(2)], { inputShape: [4] }), {
      optimizer: "sgd",
      loss: "mse",
      seed: 4,
    });
    await m.save(join(dir, "model"));
    const w = await m.getWeights();
    m.dispose();
    const out = kiln("run", join(dir, "model"), "-d", "B=2");
    expect(out).toContain(
      `weights from ${join(dir, "model", "weights.safetensors")}: dense_1/kernel, dense_1/bias, dense_2/kernel, dense_2/bias; seeded: x`,
    );
    expect(Number(/y: f32\[2,2\] max \|gpu − reference\| = (\S+)/.exec(out)?.[1])).toBeLessThan(1e-5);
    expect(w["dense_1/kernel"]).toHaveLength(12);
  });

  test("explain --dot and --svg (one writer) make their folder; a path they cannot write is named, after the explanation", () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-svg-"));
    kiln("explain", "examples/ir/affine-tanh.kir", "-d", "B=3", "--dot", join(dir, "new", "g.dot"));
    expect(readFileSync(join(dir, "new", "g.dot"), "utf8")).toMatch(/^digraph kiln/);
    writeFileSync(join(dir, "file"), "");
    expect(failure("explain", "examples/ir/affine-tanh.kir", "-d", "B=3", "--dot", join(dir, "file", "g.dot"))).toContain(
      `kiln: could not write --dot ${join(dir, "file", "g.dot")}: `,
    );
  });
});
