/** Hostile and mutated bundles against the bundle runtime (runtime/bundle-runtime.ts, the code
 *  every generated loader ships), on a small real bundle (x·w + b → relu, B ≤ 2).
 *    files changed:  any changed byte of manifest.json, a kernel or the weights is refused with a
 *                    KilnError before the device sees anything (a device that records every
 *                    call stands in), whatever it is: the integrity hash the loader was built
 *                    with covers the whole bundle.
 *    attacker:       manifests edited and every checksum recomputed to match (the integrity hash
 *                    and weights SHA-256): refused by validateManifest with a KilnError before
 *                    the device, or consistent enough to reach it — those are all loaded and
 *                    run on Dawn, where each gives outputs or a KilnError/GpuError:
 *                    the process never dies and nothing is read outside the bundle.
 *    hostile cases:  path traversal, absolute paths, out-of-range offsets, a 2³²-thread dispatch,
 *                    wrong access modes, aliased bindings, too many bindings: each named.
 *  KILN_FUZZ=n sets the number of mutated bundles (default 300); counts are printed. */
import { createHash } from "node:crypto";
import fc from "fast-check";
import { beforeAll, describe, expect, test } from "vitest";
import { buildBundle } from "../../cli/build.ts";
import { GraphBuilder } from "../../src/api/builder.ts";
import { GpuError, KilnError } from "../../src/ir/errors.ts";
import { integrityFiles, integrityInput, type Manifest } from "../../formats/bundle-manifest.ts";
import { Bundle, fromDirectory, type BundleFiles } from "../../runtime/bundle-runtime.ts";
import { acquireGpu } from "../../runtime/device.ts";
import { useGpu } from "../helpers/gpu.ts";

useGpu();
const RUNS = Number(process.env.KILN_FUZZ ?? 300);

const g = new GraphBuilder();
const x = g.input("x", "f32", ["B", 4]);
const w = g.input("w", "f32", [4, 3]);
const b = g.input("b", "f32", [3]);
const graph = g.build({ out: x.matmul(w).add(b).relu() });
const WEIGHTS = { w: Float32Array.from({ length: 12 }, (_, i) => (i % 5) - 2), b: Float32Array.from([0.5, -1, 2]) };
const FILES = buildBundle({ graph, state: { w: null, b: null }, weights: WEIGHTS, dims: { B: 2 } }, { name: "tiny" });
const enc = (f: string | Uint8Array) => (typeof f === "string" ? new TextEncoder().encode(f) : f);
const MANIFEST: Manifest = JSON.parse(FILES.get("manifest.json") as string);
const X = Float32Array.from({ length: 8 }, (_, i) => i / 4 - 1);
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

type Files = Map<string, Uint8Array>;
const original = (): Files => new Map([...FILES].map(([k, v]) => [k, enc(v)]));
const serve = (files: Files): BundleFiles & { asked: string[] } => {
  const asked: string[] = [];
  const get = async (n: string) => {
    asked.push(n);
    const f = files.get(n);
    if (!f) throw new KilnError(`kiln bundle: no file ${n}`);
    return f;
  };
  return { asked, bytes: get, text: async (n) => new TextDecoder().decode(await get(n)) };
};

/** The integrity hash of `files` (as the build takes it; "" when the manifest is too broken to say). */
function integrity(files: Files): string {
  try {
    const m = JSON.parse(new TextDecoder().decode(files.get("manifest.json")));
    return sha(integrityInput(integrityFiles(m).map((f) => [f, files.get(f) ?? new Uint8Array()] as const)));
  } catch {
    return "";
  }
}
const BUILT = integrity(original());
/** What the generated loader checks every manifest against (it cannot be forged with the files). */
const SIGNATURE = {
  name: MANIFEST.name,
  mode: MANIFEST.mode,
  inputs: MANIFEST.inputs.map(({ name, dtype, shape }) => ({ name, dtype, shape })),
  outputs: MANIFEST.outputs.map(({ name, dtype, shape }) => ({ name, dtype, shape })),
};

/** A device that records every use and does nothing: a refusal must leave `touched` empty. Its
 *  limits and features (read-only facts the validator checks a manifest against) are the real
 *  device's. */
let limits: GPUSupportedLimits;
let features: GPUSupportedFeatures;
function recorder(): { device: GPUDevice; touched: string[] } {
  const touched: string[] = [];
  const device = new Proxy({} as GPUDevice, {
    get: (_, k) => {
      if (k === "limits") return limits;
      if (k === "features") return features;
      if (k === "then") return undefined;
      touched.push(String(k));
      return () => {
        throw new Error(`device.${String(k)} used`);
      };
    },
  });
  return { device, touched };
}

type Outcome = "refused" | "reached the device";
/** Open on the recorder: a KilnError before any device use, or it got to the device. */
async function open(files: Files, opts: { integrity: string }, what: string): Promise<Outcome> {
  const { device, touched } = recorder();
  const src = serve(files);
  const err = await Bundle.open(device, src, { integrity: opts.integrity, signature: SIGNATURE }).then(
    () => undefined,
    (e: unknown) => e,
  );
  // Only names inside the bundle's folder are ever asked for.
  for (const n of src.asked) {
    expect(n, `${what}: asked for ${n}`).toMatch(/^(kernels\/)?\w[\w.-]*$/);
    expect(n, `${what}: asked for ${n}`).not.toContain("..");
  }
  if (touched.length) return "reached the device";
  if (!(err instanceof KilnError)) throw new Error(`${what}: not a KilnError: ${err}`);
  expect((err as Error).message).toMatch(/^kiln bundle: /);
  return "refused";
}

const WEIRD_NUMBERS = (n: number) => [n + 1, n - 1, 0, -1, n * 2, n + 256, 2 ** 32, 2 ** 31, 1e300, 0.5, Number.MAX_SAFE_INTEGER];
const WEIRD_STRINGS = [
  "../weights.safetensors",
  "/etc/passwd",
  "kernels/../../outside.wgsl",
  "kernels/sub/k.wgsl",
  "kernels\\k0.wgsl",
  "read",
  "read_write",
  "f32",
  "bool",
  "B",
  "linear",
  "grid",
  "",
];

type Edit = { path: (string | number)[]; kind: "set" | "delete" | "dup" | "swap"; value?: unknown; other?: number };
const leaves: (string | number)[][] = [];
const containers: (string | number)[][] = [];
(function walk(v: unknown, path: (string | number)[]) {
  if (Array.isArray(v) || (typeof v === "object" && v !== null)) {
    containers.push(path);
    for (const [k, x] of Object.entries(v)) walk(x, [...path, Array.isArray(v) ? Number(k) : k]);
  } else leaves.push(path);
})(MANIFEST, []);
const at = (o: unknown, path: (string | number)[]) => path.reduce<unknown>((a, k) => (a as Record<string, unknown>)[k], o);

const edit: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({ path: fc.constantFrom(...leaves), pick: fc.nat() }).map(({ path, pick }) => {
    const old = at(MANIFEST, path);
    const pool: unknown[] = typeof old === "number" ? WEIRD_NUMBERS(old) : typeof old === "string" ? WEIRD_STRINGS : [0, "x", true];
    return { path, kind: "set" as const, value: [...pool, null][pick % (pool.length + 1)] };
  }),
  fc.record({ path: fc.constantFrom(...containers.filter((p) => p.length)), kind: fc.constantFrom("delete" as const) }),
  fc.record({
    path: fc.constantFrom(...containers.filter((p) => Array.isArray(at(MANIFEST, p)) && (at(MANIFEST, p) as unknown[]).length)),
    kind: fc.constantFrom("dup" as const, "swap" as const),
    other: fc.nat(),
  }),
);

function apply(e: Edit): Manifest {
  const m = structuredClone(MANIFEST) as unknown as Record<string, unknown>;
  const parent = at(m, e.path.slice(0, -1)) as Record<string | number, unknown>;
  const key = e.path[e.path.length - 1];
  if (e.kind === "set") parent[key] = e.value;
  else if (e.kind === "delete") {
    if (Array.isArray(parent)) parent.splice(key as number, 1);
    else delete parent[key];
  } else {
    const a = at(m, e.path) as unknown[];
    const j = e.other! % a.length;
    if (e.kind === "dup") a.push(structuredClone(a[j]));
    else [a[0], a[j]] = [a[j], a[0]];
  }
  return m as unknown as Manifest;
}

/** `m` as an attacker would ship it: weights checksum and integrity hash recomputed. */
function forged(m: Manifest, over: Record<string, Uint8Array> = {}): { files: Files; integrity: string } {
  const files = original();
  for (const [k, v] of Object.entries(over)) files.set(k, v);
  const wt = files.get("weights.safetensors")!;
  if (typeof m.weights === "object" && m.weights !== null && (m.weights as { sha256?: unknown }).sha256 === MANIFEST.weights.sha256)
    (m.weights as { sha256: string }).sha256 = sha(wt);
  files.set("manifest.json", enc(JSON.stringify(m)));
  return { files, integrity: integrity(files) };
}

let device: GPUDevice;
let expected: Float32Array;
beforeAll(async () => {
  device = (await acquireGpu()).device;
  limits = device.limits;
  features = device.features;
  const b = await Bundle.open(device, serve(original()), { integrity: BUILT });
  expected = (await b.call({ x: X })).out as Float32Array;
  b.dispose();
});

describe("bundles with changed files", () => {
  test(`${RUNS} bundles with one changed byte or edit, built integrity kept: all refused before the device`, async () => {
    const counts: Record<string, number> = {};
    const names = [...FILES.keys()].filter((f) => !f.startsWith("loader"));
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...names), fc.nat(), fc.integer({ min: 1, max: 255 }), edit, async (name, pos, flip, e) => {
        const files = original();
        if (name === "manifest.json" && pos % 2) files.set(name, enc(JSON.stringify(apply(e))));
        else {
          const bytes = files.get(name)!.slice();
          bytes[pos % bytes.length] ^= flip;
          files.set(name, bytes);
        }
        if (integrity(files) === BUILT) return; // the edit changed nothing (e.g. a value set to itself)
        const o = await open(files, { integrity: BUILT }, `${name} @ ${pos}`);
        expect(o).toBe("refused");
        counts[name.startsWith("kernels/") ? "kernel" : name] = (counts[name.startsWith("kernels/") ? "kernel" : name] ?? 0) + 1;
      }),
      { numRuns: RUNS, seed: 5 },
    );
    console.info(`changed files refused (${RUNS}):`, JSON.stringify(counts));
  });

  test(`${RUNS} forged manifests (checksums recomputed): refused with a KilnError before the device, or run on it without a crash`, async () => {
    const counts = { refused: 0, "ran equal": 0, "ran other": 0, "refused on the device": 0, "GPU error": 0 };
    const odd: string[] = [];
    const reached: { m: Manifest; what: string }[] = [];
    await fc.assert(
      fc.asyncProperty(edit, async (e) => {
        const m = apply(e);
        const f = forged(m);
        const what = `${e.kind} ${e.path.join(".")} ${JSON.stringify(e.value)}`;
        if ((await open(f.files, f, what)) === "refused") counts.refused++;
        else reached.push({ m, what });
      }),
      { numRuns: RUNS, seed: 9 },
    );
    for (const { m, what } of reached) {
      const f = forged(m);
      try {
        const bundle = await Bundle.open(device, serve(f.files), { ...f, signature: SIGNATURE });
        try {
          const out = (await bundle.call({ x: X })).out;
          const same = out && out.join() === expected.join();
          counts[same ? "ran equal" : "ran other"]++;
          if (!same) odd.push(`ran other: ${what}`);
        } finally {
          bundle.dispose();
        }
      } catch (err) {
        if (!(err instanceof KilnError)) throw new Error(`${what}: not a KilnError: ${err}`);
        const gpu = err instanceof GpuError;
        counts[gpu ? "GPU error" : "refused on the device"]++;
        odd.push(`${gpu ? "GPU error" : "refused"}: ${what}: ${(err as Error).message.slice(0, 160)}`);
      }
    }
    console.info(`forged manifests (${RUNS}):`, JSON.stringify(counts), [...new Set(odd)].slice(0, 12));
    expect(counts.refused).toBeGreaterThan(RUNS / 2);
  });
});

describe("hostile bundles are refused before the device, naming what is wrong", () => {
  const k0 = MANIFEST.kernels[0];
  const out = MANIFEST.outputs[0].value;
  // biome-ignore lint/suspicious/noExplicitAny: manifests edited at will
  const cases: [string, (m: any) => void, RegExp][] = [
    [
      "a kernel file outside the bundle (../)",
      (m) => (m.kernels[0].file = "kernels/../../../etc/passwd"),
      /is not a file in the bundle's kernels\/ folder/,
    ],
    ["a kernel file by absolute path", (m) => (m.kernels[0].file = "/etc/passwd"), /kernels\[0\]\.file "\/etc\/passwd" is not a file/],
    [
      "weights outside the bundle",
      (m) => (m.weights.file = "../weights.safetensors"),
      /weights\.file "\.\.\/weights\.safetensors" is not a file in the bundle's folder/,
    ],
    ["a value past the end of its buffer", (m) => (m.values[0].offset = m.buffers[m.values[0].buffer].bytes), /runs past buffers\[\d+\]/],
    ["an offset off the device's alignment", (m) => (m.values[0].offset = 4), /(is not a multiple of|runs past)/],
    [
      "a 2³²-thread dispatch",
      (m) => (m.kernels[0].dispatch = { kind: "linear", total: { k: 2 ** 32, syms: [] }, perGroup: 64 }),
      /67108864 workgroups at \{"B":2\}, more than its largest binding has elements \(12\)/,
    ],
    [
      "a grid of more workgroups than the device allows",
      (m) => (m.kernels[0].dispatch = { ...m.kernels[0].dispatch, x: { size: { k: 2 ** 20, syms: [] }, per: 1 } }),
      /1048576×1×16 workgroups at \{"B":2\} exceed the device's \d+ per dimension/,
    ],
    [
      "a kernel that writes nothing (output bound read-only)",
      (m) => k0.bindings.forEach((_, j) => (m.kernels[0].bindings[j].access = "read")),
      /writes nothing/,
    ],
    [
      "one buffer bound read-only and writable in one dispatch",
      (m) => (m.kernels[0].bindings[0].access = "read"),
      /binds buffers\[0\] both read-only and read_write/,
    ],
    ["aliased bindings", (m) => (m.kernels[0].bindings = [...m.kernels[0].bindings, { value: out, access: "read_write" }]), /overlap/],
    [
      "more bindings than the device allows",
      (m) =>
        (m.kernels[0].bindings = Array.from({ length: limits.maxStorageBuffersPerShaderStage + 1 }, () => ({
          value: out,
          access: "read_write",
        }))),
      /binds \d+ storage buffers; the device allows/,
    ],
    ["an output of another type than its value", (m) => (m.outputs[0].dtype = "i32"), /output "out" is i32\[B,3\] but its value/],
    [
      "a state buffer of the wrong size",
      (m) => (m.buffers[m.state[0].buffer].bytes += 4),
      /state "\w+" f32\[[\d,]+\] is not in a state buffer of its size/,
    ],
  ];
  test.each(cases)("%s", async (_what, mutate, message) => {
    const m = structuredClone(MANIFEST) as any;
    mutate(m);
    const f = forged(m);
    const { device: rec, touched } = recorder();
    await expect(Bundle.open(rec, serve(f.files), f)).rejects.toThrow(message);
    expect(touched).toEqual([]);
  });

  test("fromDirectory reads nothing outside its folder", async () => {
    const files = fromDirectory("/tmp/some-bundle");
    for (const name of ["../etc/passwd", "/etc/passwd", "kernels/../../x", "a/b/c.wgsl"])
      await expect(files.bytes(name)).rejects.toThrow(/is not a file of the bundle/);
  });
});
