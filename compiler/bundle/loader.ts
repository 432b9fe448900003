/** The bundle's TypeScript loader, generated with ts-morph, and its JavaScript.
 *
 *    loader.ts = header
 *              + src/ir/kiln-error.ts          (KilnError, GpuError)                          ┐
 *              + formats/safetensors-codec.ts  (the one safetensors decoder)                  │ copied as
 *              + formats/bundle-manifest.ts    (manifest types, FORMAT, validateManifest)     │ text, imports
 *              + runtime/executor.ts           (the executor core Kiln's Executable runs on)  │ removed
 *              + runtime/bundle-runtime.ts     (file access, checks, Bundle)                  ┘
 *              + generated        Inputs / Outputs / Weights interfaces typed from the graph,
 *                                 Model, load(device, files) checking the manifest's signature
 *                                 and the bundle's integrity hash (SHA-256 over manifest.json,
 *                                 the kernels and the weights, taken at build time)
 *  The copied parts are ordinary checked source in this repo (tsc and the tests cover them);
 *  only the typed surface is generated, from ts-morph structures. loader.js is loader.ts
 *  transpiled by the TypeScript that ts-morph bundles (types erased, ES2022 module). */
import { existsSync, readFileSync } from "node:fs";
import {
  Project,
  StructureKind,
  ts,
  VariableDeclarationKind,
  type InterfaceDeclarationStructure,
  type OptionalKind,
  type PropertySignatureStructure,
} from "ts-morph";
import type { Manifest, TensorData } from "../../formats/bundle-manifest.ts";

/** The sources every loader.ts copies as text, relative to Kiln's root — or, in the installed
 *  package, to dist/shipped/, where `npm run build` (scripts/build.mjs) copies them (beside the
 *  declarations they would shadow: tsc prefers a .ts to a .d.ts of the same name). */
export const SHIPPED_SOURCES = [
  "src/ir/kiln-error.ts",
  "formats/safetensors-codec.ts",
  "formats/bundle-manifest.ts",
  "runtime/executor.ts",
  "runtime/bundle-runtime.ts",
] as const;

const ARRAY_TYPE = { f32: "Float32Array", i32: "Int32Array", u32: "Uint32Array", bool: "Uint8Array" } as const;
const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** Source of a module of this repo less its import declarations (it may import only the shipped
 *  files before it), and the names it declares at top level. */
const ROOT = new URL("../../", import.meta.url);
const SOURCES = existsSync(new URL("shipped/", ROOT)) ? new URL("shipped/", ROOT) : ROOT;

function withoutImports(project: Project, url: URL): { text: string; names: string[] } {
  const name = url.pathname.slice(url.pathname.lastIndexOf("/") + 1);
  const sf = project.createSourceFile(`/src/${name}`, readFileSync(url, "utf8"), { overwrite: true });
  for (const d of sf.getImportDeclarations()) {
    // Only the shipped files before it are in the loader: any other import would be undefined there.
    const from = new URL(d.getModuleSpecifierValue(), url).href.slice(SOURCES.href.length);
    if (!SHIPPED_SOURCES.slice(0, SHIPPED_SOURCES.indexOf(url.href.slice(SOURCES.href.length) as never)).includes(from as never))
      throw new Error(`bundle loader: ${url.pathname} imports ${d.getModuleSpecifierValue()}, which is not shipped before it`);
    d.remove();
  }
  if (sf.getExportDeclarations().length) throw new Error(`bundle loader: ${url.pathname} re-exports; a shipped file may not`);
  const names = [
    ...sf.getVariableDeclarations().map((d) => d.getName()),
    ...[...sf.getFunctions(), ...sf.getClasses(), ...sf.getInterfaces(), ...sf.getTypeAliases()].map((d) => d.getName() ?? ""),
  ];
  return { text: sf.getFullText().trim(), names };
}

function properties(tensors: readonly TensorData[], what: string): OptionalKind<PropertySignatureStructure>[] {
  return tensors.map((t) => ({
    name: IDENT.test(t.name) ? t.name : JSON.stringify(t.name),
    type: ARRAY_TYPE[t.dtype],
    isReadonly: true,
    docs: [`${what} ${t.dtype}[${t.shape.join(", ")}], row-major${t.dtype === "bool" ? " (0 or 1)" : ""}.`],
  }));
}

function iface(name: string, docs: string, props: OptionalKind<PropertySignatureStructure>[]): InterfaceDeclarationStructure {
  return { kind: StructureKind.Interface, name, isExported: true, docs: [docs], properties: props };
}

/** loader.ts and loader.js for a bundle with this manifest. */
export function generateLoader(m: Manifest, integrity: string): { ts: string; js: string } {
  const project = new Project({ useInMemoryFileSystem: true });
  const shipped = SHIPPED_SOURCES.map((f) => withoutImports(project, new URL(f, SOURCES)));
  // One module scope: a name declared in two shipped files would break every loader.
  const seen = new Map<string, string>();
  shipped.forEach((s, i) => {
    for (const n of s.names) {
      if (seen.has(n)) throw new Error(`bundle loader: ${SHIPPED_SOURCES[i]} and ${seen.get(n)} both declare ${n}`);
      seen.set(n, SHIPPED_SOURCES[i]);
    }
  });
  const dims =
    Object.entries(m.dims)
      .map(([d, b]) => `${d} ≤ ${b}`)
      .join(", ") || "none";
  const header = [
    `// Generated by \`kiln build\` for "${m.name}" (${m.mode === "train" ? "training step" : "inference"}). Do not edit: rebuild.`,
    `// Needs only WebGPU: pass a GPUDevice (Node: the \`webgpu\` package; browsers: navigator.gpu).`,
    `//   const model = await load(device, fromDirectory("path/to/bundle"));   // or fromUrl(base)`,
    `//   ${m.mode === "train" ? "const { loss } = await model.step({ x, y });" : "const out = await model.run({ x });"}`,
    `// Symbolic dims (bound per call from the input lengths): ${dims}.`,
    ...(m.features?.length
      ? [`// Needs the WebGPU features ${m.features.join(", ")}: adapter.requestDevice({ requiredFeatures: REQUIRED_FEATURES }).`]
      : []),
    "",
  ].join("\n");
  const sf = project.createSourceFile("/out/loader.ts", `${header}\n${shipped.map((s) => s.text).join("\n\n")}\n`, {
    overwrite: true,
  });

  const signature = {
    name: m.name,
    mode: m.mode,
    inputs: m.inputs.map(({ name, dtype, shape }) => ({ name, dtype, shape })),
    outputs: m.outputs.map(({ name, dtype, shape }) => ({ name, dtype, shape })),
  };
  const call = m.mode === "train" ? "step" : "run";
  sf.addStatements([
    "\n// ---- generated from the model ----",
    iface(
      m.mode === "train" ? "Batch" : "Inputs",
      m.mode === "train" ? "One training batch." : "The model's inputs.",
      properties(m.inputs, "Input"),
    ),
    iface(
      "Outputs",
      m.mode === "train" ? "What a step returns (state updates stay on the GPU)." : "The model's outputs.",
      properties(m.outputs, "Output"),
    ),
    iface("Weights", "Resident state: parameters (and, for a training step, optimizer state).", properties(m.state, "Resident")),
    iface(
      "Dims",
      "Symbolic dims, solved from the input lengths unless given.",
      Object.keys(m.dims).map((d) => ({
        name: d,
        type: "number",
        hasQuestionToken: true,
        isReadonly: true,
        docs: [`At most ${m.dims[d]}.`],
      })),
    ),
    {
      kind: StructureKind.Interface,
      name: "Model",
      isExported: true,
      docs: ["A loaded bundle: buffers, pipelines and bind groups made once."],
      methods: [
        {
          name: call,
          parameters: [
            { name: m.mode === "train" ? "batch" : "inputs", type: m.mode === "train" ? "Batch" : "Inputs" },
            { name: "dims", type: "Dims", hasQuestionToken: true },
          ],
          returnType: "Promise<Outputs>",
          docs: [
            m.mode === "train"
              ? "One training step: one compute pass; the weights are updated in place on the GPU."
              : "One forward pass: one compute pass, one submission; only the outputs are read back.",
          ],
        },
        { name: "weights", returnType: "Promise<Weights>", docs: ["Read the resident state back."] },
        { name: "dispose", returnType: "void", docs: ["Free the GPU buffers."] },
      ],
      properties: [{ name: "manifest", type: "Manifest", isReadonly: true }],
    },
    {
      kind: StructureKind.VariableStatement,
      declarationKind: VariableDeclarationKind.Const,
      docs: ["What this module was generated for: a manifest of another model is refused."],
      declarations: [{ name: "SIGNATURE", initializer: JSON.stringify(signature) }],
    },
    {
      kind: StructureKind.VariableStatement,
      declarationKind: VariableDeclarationKind.Const,
      isExported: true,
      docs: [
        "The optional WebGPU features the kernels enable (shader-f16 for mixed precision, subgroups): create the device with `adapter.requestDevice({ requiredFeatures: REQUIRED_FEATURES })`; load refuses a device without one.",
      ],
      declarations: [{ name: "REQUIRED_FEATURES", type: "readonly GPUFeatureName[]", initializer: JSON.stringify(m.features ?? []) }],
    },
    {
      kind: StructureKind.VariableStatement,
      declarationKind: VariableDeclarationKind.Const,
      docs: ["SHA-256 over the whole bundle as built (manifest.json, kernels, weights): any other file is refused."],
      declarations: [{ name: "INTEGRITY", initializer: JSON.stringify(integrity) }],
    },
    {
      kind: StructureKind.Function,
      name: "load",
      isExported: true,
      isAsync: true,
      docs: [
        "Check and load the bundle: manifest (structure, consistency, device limits), signature, weights (size, SHA-256, names, shapes) and the integrity hash, all before the device sees anything; pipelines compile asynchronously.",
      ],
      parameters: [
        { name: "device", type: "GPUDevice" },
        { name: "files", type: "BundleFiles" },
      ],
      returnType: "Promise<Model>",
      statements: [
        "const b = await Bundle.open(device, files, { signature: SIGNATURE, integrity: INTEGRITY });",
        "return {",
        "  manifest: b.manifest,",
        `  ${call}: async (inputs, dims) => (await b.call(inputs as unknown as Record<string, HostArray>, (dims ?? {}) as Record<string, number>)) as unknown as Outputs,`,
        "  weights: async () => (await b.readState()) as unknown as Weights,",
        "  dispose: () => b.dispose(),",
        "};",
      ],
    },
  ]);
  const text = sf.getFullText();
  const js = ts.transpileModule(text, {
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ES2022 },
    fileName: "loader.ts",
  }).outputText;
  return { ts: text, js };
}
