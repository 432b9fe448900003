/** The one error importOnnx throws: a file it cannot read, or a model it will not compute as
 *  written. Where a node is at fault the message starts with it —
 *      onnx import: Resize "up_1" (opset 19): mode "cubic" is not supported
 *  and the fields say the same for callers that sort refusals (the conformance test does). */
import { KilnError } from "../../src/ir/errors.ts";

export interface OnnxNodeRef {
  readonly op: string;
  readonly name: string;
  readonly opset: number;
}

export class OnnxImportError extends KilnError {
  override name = "OnnxImportError";
  constructor(
    message: string,
    /** The node at fault, if one is. */
    readonly node?: OnnxNodeRef,
    /** Set when the model is valid but Kiln does not support what it asks (an op, attribute,
     *  dtype or opset), as opposed to a file that is malformed or inconsistent. */
    readonly unsupported = false,
    /** A graph input whose value the node needs statically (a shape, axes, pads): importing
     *  with `options.constants[name]` set makes the node importable. */
    readonly needsConstant?: string,
    /** Set when no check of the importer's caught the problem and a raw error (a TypeError, say)
     *  was wrapped: a gap in the checks, which the fuzz test looks for. */
    readonly internal = false,
  ) {
    super(`onnx import: ${node ? `${node.op} "${node.name}" (opset ${node.opset}): ` : ""}${message}`);
  }
}
