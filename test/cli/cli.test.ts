import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";

const kiln = (...args: string[]) => execFileSync("node", ["bin/kiln.js", ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

describe("kiln CLI", () => {
  test("info names the adapter and the limits Kiln plans against", () => {
    const out = kiln("info");
    expect(out).toMatch(/^adapter\s+\S/m);
    expect(out).toMatch(/maxStorageBuffersPerShaderStage\s+\d+/);
    // What the adapter offers, and what the device was created with: shader-f16 whenever offered.
    const offered = /^features\s+(.*)$/m.exec(out)![1].split(" ");
    const enabled = /^ {2}enabled\s+(.*)$/m.exec(out)![1].split(" ");
    for (const f of enabled) expect(offered).toContain(f);
    expect(enabled.includes("shader-f16")).toBe(offered.includes("shader-f16"));
  });

  test("run executes a text-IR graph on the GPU and agrees with the reference", () => {
    const out = kiln("run", "examples/ir/affine-tanh.kir", "-d", "B=3");
    expect(out).toMatch(/^\/\/ k0 = fused\[mul, add, tanh\] -> %5, f32\[B,4\]$/m);
    const err = /y: f32\[3,4\] max \|gpu − reference\| = (\S+)/.exec(out);
    expect(Number(err?.[1])).toBeLessThan(1e-6);
    expect(out).toMatch(/positive: bool\[3,4\] max \|gpu − reference\| = 0\.00e\+0/);
  });

  test("explain on a text-IR file: passes, kernels with FLOPs and bytes, saved values, memory", () => {
    const out = kiln("explain", "examples/ir/affine-tanh.kir", "-d", "B=3");
    expect(out).toMatch(/^  infer-shapes\s+8\s+\d+\.\d\d$/m);
    expect(out).toMatch(/^  fuse \(4 values in buffers\)\s+8\s+\d+\.\d\d$/m);
    expect(out).toMatch(/^  codegen \(2 kernels\)\s+8\s+\d+\.\d\d$/m);
    expect(out).toMatch(/^  plan-memory \(arena \d+ B, naive \d+ B, lower bound \d+ B\)\s+8\s+\d+\.\d\d$/m);
    expect(out).toMatch(/^  k0 = fused\[mul, add, tanh\] -> %5, f32\[B,4\]$/m);
    // 3 fused ops × 12 elements; reads x (12) and b (4) floats, writes y (12) over x, which dies there.
    expect(out).toMatch(/^ {6}36 FLOP, read 64 B, write 48 B; binds r %1 b \| rw %0 x → %5 y; uniforms B$/m);
    expect(out).toMatch(/^saved for the backward pass \(forward: the 6 nodes output "y" depends on; backward: the other 2\)$/m);
    expect(out).toMatch(/^ {2}every buffer its own: {3}160 B \(4 buffers: 2 input, 0 const, 2 temp\)$/m);
  });

  test("explain works without an adapter, for the default target", () => {
    const out = execFileSync("node", ["bin/kiln.js", "explain", "examples/ir/affine-tanh.kir", "-d", "B=3"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, VK_ICD_FILENAMES: "/nonexistent/icd.json" },
    });
    expect(out).toMatch(
      /^target: gpu, 8 storage buffers per kernel, fusion on \(no GPU adapter \(.+\); compiled for the default target\)$/m,
    );
    expect(out).toMatch(/^kernels: 2$/m);
  });

  test("explain needs every symbolic dim bound", () => {
    expect(() => kiln("explain", "examples/ir/affine-tanh.kir")).toThrow(/bind the symbolic dim B for the figures, e\.g\. --dim B=8/);
  });

  test("explain on the MLP training step: 5 matmuls' FLOPs, the activations saved, the arena", () => {
    const out = kiln("explain", "examples/models/mlp-train.ts");
    expect(out).toMatch(/^  simplify-all\s+\d+\s+\d+\.\d\d$/m);
    // The first layer's forward matmul with bias and ReLU as epilogue, 2·128·784·500 + 2·128·500
    // FLOPs, and its weight gradient with the SGD update as epilogue, written to w1_next.
    expect(out).toMatch(
      /^  k0 = fused\[matmul, add, relu\] -> %\d+, f32\[128,500\] .*\n {6}100\.48 MFLOP, read 1\.88 MiB, write 250\.00 KiB; binds r %0 x \| r %1 w1 \| r %2 b1 \| w %\d+$/m,
    );
    // In place: the update kernel binds w1's resident buffer once, read-write, and writes it.
    expect(out).toMatch(
      /^  k\d+ = fused\[permute, matmul, mul, sub\] -> %\d+, f32\[784,500\] .*\n {6}.*binds r %0 x \| r %\d+ \| rw %1 w1 → %\d+ w1_next$/m,
    );
    // Saved: the two hidden layers' activations, 128×500 floats each (ReLU's derivative reads
    // the activation, so the pre-activations are never stored).
    expect(out.match(/^ {2}%\d+ +f32\[128,500\] +250\.00 KiB +read by k\d+(, k\d+)*$/gm)).toHaveLength(2);
    expect(out).toMatch(/^ {4}planned \S+ \S+ in 1 arena\(s\), naive \S+ \S+, lower bound \S+ \S+$/m);
    const unfused = kiln("explain", "examples/models/mlp-train.ts", "--no-fuse");
    const count = (s: string) => Number(/^kernels: (\d+)$/m.exec(s)?.[1]);
    expect(count(unfused)).toBeGreaterThan(count(out));
  });

  test("explain --dot and --svg write the graph clustered by kernel; --wgsl dumps the kernels", () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-explain-"));
    const [dot, svg] = [join(dir, "g.dot"), join(dir, "g.svg")];
    const out = kiln("explain", "examples/ir/affine-tanh.kir", "-d", "B=3", "--wgsl", "--dot", dot, "--svg", svg);
    expect(out).toMatch(/@compute @workgroup_size/);
    const text = readFileSync(dot, "utf8");
    expect(text).toMatch(/^digraph kiln \{/);
    expect(text).toMatch(/subgraph cluster_0 \{\n\s+label="k0 = fused\[mul, add, tanh\] -> %5, f32\[B,4\]"/);
    const image = readFileSync(svg, "utf8");
    expect(image).toMatch(/<svg /);
    expect(image).toContain("%5 tanh");
  });

  test("a bad graph file fails with the parser's line and column", () => {
    expect(() => kiln("run", "package.json")).toThrow(/parse error at 1:1/);
  });
});
