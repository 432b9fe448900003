import { execFileSync } from "node:child_process";
import { describe, expect, test } from "vitest";

const kiln = (...args: string[]) => execFileSync("node", ["bin/kiln.js", ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

describe("kiln CLI", () => {
  test("info names the adapter and the limits Kiln plans against", () => {
    const out = kiln("info");
    expect(out).toMatch(/^adapter\s+\S/m);
    expect(out).toMatch(/maxStorageBuffersPerShaderStage\s+\d+/);
  });

  test("run executes a text-IR graph on the GPU and agrees with the reference", () => {
    const out = kiln("run", "examples/ir/affine-tanh.kir", "-d", "B=3");
    expect(out).toMatch(/^\/\/ k0 = fused\[mul, add, tanh\] -> %5, f32\[B,4\]$/m);
    const err = /y: f32\[3,4\] max \|gpu − reference\| = (\S+)/.exec(out);
    expect(Number(err?.[1])).toBeLessThan(1e-6);
    expect(out).toMatch(/positive: bool\[3,4\] max \|gpu − reference\| = 0\.00e\+0/);
  });

  test("a bad graph file fails with the parser's line and column", () => {
    expect(() => kiln("run", "package.json")).toThrow(/parse error at 1:1/);
  });
});
