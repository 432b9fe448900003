/** kiln-nn: the one entry point. `import { sequential, dense, compileModel } from "kiln-nn"`.
 *  Everything of ./browser.ts (graphs, models, the IR, the compiler), and what needs Node: the
 *  WebGPU runtime on Dawn, Keras-style training, bundles, files. */
export * from "./browser.ts";

// ---- running on the GPU (Dawn through the `webgpu` package) ----
export { Executable, type OutputTensor } from "../runtime/execute.ts";
export { acquireGpu, releaseGpu, type Gpu } from "../runtime/device.ts";

// ---- training, Keras-style ----
export {
  compileModel,
  loadPredictor,
  TrainedModel,
  type CompileConfig,
  type EarlyStopping,
  type EpochLogs,
  type Evaluation,
  type FitOptions,
  type History,
} from "../training/compile-model.ts";
export { historyPlot, historySvg, imageGrid, imageGridPng, type GridOptions } from "../training/plot.ts";

// ---- files ----
export {
  decodeSafetensors,
  encodeSafetensors,
  readSafetensors,
  writeSafetensors,
  type SafeTensor,
  type SafetensorsFile,
} from "../formats/safetensors.ts";

// ---- standalone bundles (`kiln build`) ----
export { buildBundle, writeBundle, type BuildInput, type BuildOptions } from "../cli/build.ts";
export type { BundleFiles } from "../compiler/bundle/emit.ts";

// ---- ONNX ----
export { exportOnnx, onnxModel, OPSET, writeOnnx, type OnnxExportOptions } from "../formats/onnx/export.ts";
export {
  importOnnx,
  OnnxImportError,
  SUPPORTED_OPS as ONNX_IMPORT_OPS,
  type ImportedOnnx,
  type OnnxImportOptions,
  type OnnxTensor,
} from "../formats/onnx/import.ts";
export { fineTuneGraph, type FineTuneGraph, type FineTuneOptions, type ImportedGraph } from "../src/api/fine-tune.ts";
export { fineTune, FineTuner, type FineTuneRunOptions } from "../training/fine-tune.ts";
