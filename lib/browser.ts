/** kiln-nn/browser: everything that runs without Node — build graphs and models, differentiate,
 *  interpret in float64, compile to WGSL kernels, read and write the text IR. (Running kernels
 *  needs a WebGPU device: in a browser, ship a bundle built with `kiln build`, whose loader
 *  takes `navigator.gpu`'s device.) test/lib/entries.test.ts checks that nothing this entry
 *  imports, however deep, is a Node module or `webgpu`.
 *
 *  Names clash across groups (the `mse` composite and the loss, the `maxout` composite and
 *  layer, the `constant` initializer and learning-rate schedule): the flat names are the layers,
 *  losses and optimizers a model is written with; every group is also a namespace. */

// ---- graphs ----
export { concat, GraphBuilder, Tensor, where, type CustomVjp, type Operand } from "../src/api/builder.ts";
export {
  batchNormalization,
  leakyRelu,
  logSoftmax,
  logsumexp,
  sigmoidBinaryCrossEntropy,
  softmax,
  softmaxCrossEntropy,
  sparseSoftmaxCrossEntropy,
} from "../src/api/composites.ts";
export * as composites from "../src/api/composites.ts";
export { customGradient, grad } from "../src/api/grad.ts";
export { oneHot } from "../src/api/one-hot.ts";

// ---- models, Keras-style ----
export * from "../src/api/layers.ts";
export * as layers from "../src/api/layers.ts";
export * from "../src/api/recurrent.ts";
export * from "../src/api/model.ts";
export { scaledGradients, type LossScaling } from "../src/api/loss-scaling.ts";
export * from "../src/api/losses.ts";
export * as losses from "../src/api/losses.ts";
export {
  adadelta,
  adagrad,
  adam,
  inverseTimeDecay,
  optimizerByName,
  rmsprop,
  sgd,
  stepDecay,
  type AdadeltaOptions,
  type AdagradOptions,
  type AdamOptions,
  type LearningRate,
  type OptimizerName,
  type RmspropOptions,
  type Schedule,
  type SgdOptions,
} from "../src/api/optimizers.ts";
export * as optimizers from "../src/api/optimizers.ts";
export type { Optimizer, SlotSpec, StepInfo } from "../src/api/optimizer.ts";
export * as initializers from "../src/api/initializers.ts";
export { mulberry32, type Initializer } from "../src/api/initializers.ts";

// ---- the IR ----
export type { Attrs, DType, Dim, Graph, Node, OpAttrs, OpKind, Output, Shape, TensorType, ValueId } from "../src/ir/types.ts";
export type { HostTensor } from "../src/ir/host.ts";
export { GpuError, KilnError, ShapeError, VerifyError } from "../src/ir/errors.ts";
export { ParseError, parseGraph } from "../src/ir/parse.ts";
export { printGraph, printNode } from "../src/ir/print.ts";
export { verify } from "../src/ir/verify.ts";
export { toDot } from "../src/ir/dot.ts";
export { interpret } from "../src/interpret.ts";
export type { Tensor64 } from "../src/ops/tensor64.ts";

// ---- the compiler ----
export { compile, fixpoint, insertBefore, PASSES, PIPELINE, type CompileOptions, type PassStat } from "../compiler/pipeline.ts";
export type { Lowered, Pass, PassContext, Stage, StageContext, Step } from "../compiler/pass.ts";
export type { Binding, BufferSpec, Dispatch, Kernel, Program, StateUpdate } from "../compiler/program.ts";
export { requiredFeatures } from "../compiler/program.ts";
export {
  CPU_TARGET,
  GPU_TARGET,
  KERNEL_FEATURES,
  targetForAdapter,
  withFeatures,
  type KernelFeature,
  type Target,
} from "../compiler/target.ts";
export { F16_FEATURE, resolvePrecision, type Precision } from "../compiler/precision.ts";
export { rewrite, type Rebuilder, type Rule } from "../compiler/rewrite.ts";
// The standard graph passes, to rearrange into a pipeline of your own (PIPELINE, insertBefore).
export { cse } from "../compiler/cse.ts";
export { dce } from "../compiler/dce.ts";
export { foldConstants } from "../compiler/fold-constants.ts";
export { inferShapes } from "../compiler/infer-shapes.ts";
export { legalize } from "../compiler/legalize.ts";
export { simplify } from "../compiler/simplify.ts";
