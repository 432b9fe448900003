/** importOnnx on files built here with the exporter's writer: what becomes a weight, a symbolic
 *  dim or a static shape; Softmax's two meanings; the refusals, each an OnnxImportError naming
 *  the node; and mutated or truncated files, which give that error and nothing else. */
import fc from "fast-check";
import { toBinary } from "@bufbuild/protobuf";
import { fromBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema, type ModelProto, type TypeProto_Tensor } from "onnx-buf";
import { squeezeNetOnnx } from "../bench/onnx-models.ts";
import { describe, expect, test } from "vitest";
import { interpret } from "../../src/interpret.ts";
import { Elem, OnnxWriter } from "../../formats/onnx/export-writer.ts";
import { importOnnx, OnnxImportError } from "../../formats/onnx/import.ts";
import type { DType, Dim } from "../../src/ir/types.ts";
import { floats } from "../helpers/data.ts";

type Io = [string, DType, Dim[]][];

function modelOf(build: (w: OnnxWriter) => void, inputs: Io, outputs: Io, opset = 17, patch?: (m: ModelProto) => void): Uint8Array {
  const w = new OnnxWriter([], new Map());
  build(w);
  const io = (l: Io) => l.map(([name, dtype, shape]) => ({ name, type: { dtype, shape } }));
  const m = w.model({ name: "t", inputs: io(inputs), outputs: io(outputs), opset: 17, producer: { name: "kiln-test", version: "1" } });
  m.opsetImport[0].version = BigInt(opset);
  patch?.(m);
  return toBinary(ModelProtoSchema, m);
}

/** The error importing `bytes` throws (the test fails if it imports). */
function refusal(bytes: Uint8Array): OnnxImportError {
  try {
    importOnnx(bytes);
  } catch (e) {
    expect(e).toBeInstanceOf(OnnxImportError);
    return e as OnnxImportError;
  }
  throw new Error("imported, but a refusal was expected");
}

const mlpBytes = () =>
  modelOf(
    (w) => {
      w.weight("fc.weight", Elem.FLOAT, [4, 3], floats(12, 1));
      w.weight("fc.bias", Elem.FLOAT, [4], floats(4, 2));
      const shape = w.ints([0, 2, 2]);
      const h = w.node("Gemm", ["x", "fc.weight", "fc.bias"], { transB: 1 });
      w.node("Reshape", [w.node("Relu", [h]), shape], {}, { out: "y" });
    },
    [["x", "f32", ["batch size", 3]]],
    [["y", "f32", ["N", 2, 2]]],
  );

describe("importOnnx", () => {
  test("initializers become weight inputs, a dim_param a symbolic dim, an int64 shape initializer is read statically", () => {
    const m = importOnnx(mlpBytes());
    const inputs = m.graph.nodes.filter((n) => n.op === "input");
    expect(inputs.map((n) => [(n.attrs as { name: string }).name, n.type.shape])).toEqual([
      ["x", ["batch_size", 3]],
      ["fc.weight", [4, 3]],
      ["fc.bias", [4]],
    ]);
    expect(Object.keys(m.weights)).toEqual(["fc.weight", "fc.bias"]);
    expect(m.state).toEqual({ "fc.weight": null, "fc.bias": null });
    expect(m.graph.nodes.some((n) => n.op === "const" && (n.attrs as { shape: Dim[] }).shape.length > 0)).toBe(false);
    const out = m.graph.nodes[m.graph.outputs[0].id];
    expect(out.type.shape).toEqual(["batch_size", 2, 2]);
    expect(m.inputs).toEqual([{ name: "x", onnx: "x" }]);
  });

  test("Shape → Gather → Concat → Reshape over a symbolic batch folds into a static reshape", () => {
    const bytes = modelOf(
      (w) => {
        const n = w.node("Gather", [w.node("Shape", ["x"]), w.scalar(0, Elem.INT64)], { axis: 0 });
        const target = w.node("Concat", [w.node("Unsqueeze", [n, w.ints([0])]), w.ints([-1])], { axis: 0 });
        w.node("Reshape", ["x", target], {}, { out: "y" });
      },
      [["x", "f32", ["N", 2, 3]]],
      [["y", "f32", ["N", 6]]],
    );
    const m = importOnnx(bytes);
    expect(m.graph.nodes.map((n) => n.op)).toEqual(["input", "reshape"]);
    expect(m.graph.nodes[1].type.shape).toEqual(["N", 6]);
  });

  test("Softmax before opset 13 normalizes over the flattened axes [axis, rank), since 13 over one axis", () => {
    const x = { shape: [2, 3, 4], data: floats(24, 3) };
    const bytes = (opset: number) =>
      modelOf((w) => w.node("Softmax", ["x"], { axis: 1 }, { out: "y" }), [["x", "f32", [2, 3, 4]]], [["y", "f32", [2, 3, 4]]], opset);
    const old = interpret(importOnnx(bytes(11)).graph, { x }).y.data;
    const now = interpret(importOnnx(bytes(13)).graph, { x }).y.data;
    const sum = (d: ArrayLike<number>, idx: number[]) => idx.reduce((a, i) => a + d[i], 0);
    expect(sum(old, [...Array(12).keys()])).toBeCloseTo(1, 12); // one row of 3·4
    expect(sum(now, [0, 4, 8])).toBeCloseTo(1, 12); // axis 1 at [0, :, 0]
  });

  /** One op in its attribute form (old opset) and its input form (new opset): same result. */
  const FORMS: [string, number, (w: OnnxWriter) => void, number, (w: OnnxWriter) => void, number[]][] = [
    [
      "Squeeze",
      11,
      (w) => w.node("Squeeze", ["x"], { axes: [1] }, { out: "y" }),
      13,
      (w) => w.node("Squeeze", ["x", w.ints([1])], {}, { out: "y" }),
      [2, 3],
    ],
    [
      "Unsqueeze",
      11,
      (w) => w.node("Unsqueeze", ["x"], { axes: [0, -1] }, { out: "y" }),
      13,
      (w) => w.node("Unsqueeze", ["x", w.ints([0, -1])], {}, { out: "y" }),
      [1, 2, 1, 3, 1],
    ],
    [
      "ReduceSum",
      11,
      (w) => w.node("ReduceSum", ["x"], { axes: [2], keepdims: 0 }, { out: "y" }),
      13,
      (w) => w.node("ReduceSum", ["x", w.ints([2])], { keepdims: 0 }, { out: "y" }),
      [2, 1],
    ],
    [
      "ReduceMean",
      17,
      (w) => w.node("ReduceMean", ["x"], { axes: [0, 2] }, { out: "y" }),
      18,
      (w) => w.node("ReduceMean", ["x", w.ints([0, 2])], {}, { out: "y" }),
      [1, 1, 1],
    ],
    [
      "Split",
      11,
      (w) => w.nodeOutputs("Split", ["x"], { axis: 2, split: [1, 2] }, { outputs: 2, out: "y" }),
      13,
      (w) => w.nodeOutputs("Split", ["x", w.ints([1, 2])], { axis: 2 }, { outputs: 2, out: "y" }),
      [2, 1, 1],
    ],
    [
      "Split num_outputs",
      13,
      (w) => w.nodeOutputs("Split", ["x"], { axis: 0 }, { outputs: 2, out: "y" }),
      18,
      (w) => w.nodeOutputs("Split", ["x"], { axis: 0, num_outputs: 2 }, { outputs: 2, out: "y" }),
      [1, 1, 3],
    ],
    [
      "Slice",
      9,
      (w) => w.node("Slice", ["x"], { starts: [1], ends: [3], axes: [2] }, { out: "y" }),
      10,
      (w) => w.node("Slice", ["x", w.ints([1]), w.ints([3]), w.ints([2])], {}, { out: "y" }),
      [2, 1, 2],
    ],
    [
      "Pad",
      10,
      (w) => w.node("Pad", ["x"], { pads: [0, 0, 1, 0, 0, 2], mode: "edge" }, { out: "y" }),
      11,
      (w) => w.node("Pad", ["x", w.ints([0, 0, 1, 0, 0, 2])], { mode: "edge" }, { out: "y" }),
      [2, 1, 6],
    ],
    [
      "Clip",
      10,
      (w) => w.node("Clip", ["x"], { min: { float: -0.25 }, max: { float: 0.5 } }, { out: "y" }),
      11,
      (w) => w.node("Clip", ["x", w.scalar(-0.25, Elem.FLOAT), w.scalar(0.5, Elem.FLOAT)], {}, { out: "y" }),
      [2, 1, 3],
    ],
  ];

  test.each(FORMS)(
    "%s: the attribute form (opset %i) and the input form (opset %i) agree",
    (_, oldOpset, oldForm, newOpset, newForm, shape) => {
      const x = { shape: [2, 1, 3], data: floats(6, 7) };
      const run = (opset: number, f: (w: OnnxWriter) => void) => {
        const m = importOnnx(modelOf(f, [["x", "f32", [2, 1, 3]]], [["y", "f32", shape]], opset));
        const y = interpret(m.graph, {
          x,
          ...Object.fromEntries(Object.entries(m.weights).map(([k, v]) => [k, { shape: [], data: v }])),
        }).y;
        expect(y.shape).toEqual(shape);
        return Array.from(y.data);
      };
      const old = run(oldOpset, oldForm);
      expect(old).toEqual(run(newOpset, newForm));
      // What the ops mean, on x = [[[a, b, c]], [[d, e, f]]]:
      const [a, b, c, d, e, f] = x.data;
      const want: Record<string, number[]> = {
        Slice: [b, c, e, f],
        Pad: [a, a, b, c, c, c, d, d, e, f, f, f],
        ReduceSum: [a + b + c, d + e + f],
        Clip: x.data.map((v) => Math.min(Math.max(v, -0.25), 0.5)),
      };
      if (want[_]) old.forEach((v, i) => expect(v).toBeCloseTo(want[_][i], 6));
    },
  );

  test("an opset-7 BatchNormalization (spatial=1, as the model zoo's ImageNet CNNs have it) computes what version 15 does; spatial=0 is refused", () => {
    const x = { shape: [2, 3, 2], data: floats(12, 4) };
    const bn = (opset: number, attrs: Record<string, number>) =>
      modelOf(
        (w) => {
          const p = (name: string, seed: number) =>
            w.weight(
              name,
              Elem.FLOAT,
              [3],
              floats(3, seed).map((v) => 1 + 0.5 * v),
            );
          w.node("BatchNormalization", ["x", p("s", 1), p("b", 2), p("m", 3), p("v", 4)], attrs, { out: "y" });
        },
        [["x", "f32", [2, 3, 2]]],
        [["y", "f32", [2, 3, 2]]],
        opset,
      );
    const run = (bytes: Uint8Array) => {
      const m = importOnnx(bytes);
      return Array.from(
        interpret(m.graph, { x, ...Object.fromEntries(Object.entries(m.weights).map(([k, v]) => [k, { shape: [3], data: v }])) }).y.data,
      );
    };
    expect(run(bn(7, { spatial: 1 }))).toEqual(run(bn(15, {})));
    expect(refusal(bn(7, { spatial: 0 })).message).toMatch(/BatchNormalization .*\(opset 7\): spatial=0/);
  });

  test("refusals name the op, the node, the opset and what is missing", () => {
    const unknown = refusal(
      modelOf((w) => w.node("Einsum", ["x"], { equation: "ii->i" }, { out: "y" }), [["x", "f32", [2, 2]]], [["y", "f32", [2]]]),
    );
    expect(unknown.node?.op).toBe("Einsum");
    expect(unknown.message).toMatch(/Einsum "Einsum_0" \(opset 17\): Kiln has no import for the op Einsum/);
    expect(unknown.unsupported).toBe(true);

    const attr = refusal(modelOf((w) => w.node("Relu", ["x"], { bogus: 1 }, { out: "y" }), [["x", "f32", [2]]], [["y", "f32", [2]]]));
    expect(attr.message).toMatch(/Relu "Relu_0" \(opset 17\): attribute bogus is not supported/);

    const mode = refusal(
      modelOf((w) => w.node("Pad", ["x", w.ints([1, 1])], { mode: "mirror" }, { out: "y" }), [["x", "f32", [2]]], [["y", "f32", [4]]]),
    );
    expect(mode.message).toMatch(/Pad "Pad_0" \(opset 17\): mode "mirror"/);

    const opset = refusal(modelOf((w) => w.node("Relu", ["x"], {}, { out: "y" }), [["x", "f32", [2]]], [["y", "f32", [2]]], 40));
    expect(opset.message).toMatch(/opset 40 of the default domain is outside/);

    const missing = refusal(modelOf((w) => w.node("Add", ["x", "w"], {}, { out: "y" }), [["x", "f32", [2]]], [["y", "f32", [2]]]));
    expect(missing.message).toMatch(/Add "Add_0" \(opset 17\): input "w" is not a graph input, an initializer or an earlier node's output/);

    const shapes = refusal(
      modelOf(
        (w) => w.node("MatMul", ["x", w.weight("w", Elem.FLOAT, [3, 2], floats(6, 1))], {}, { out: "y" }),
        [["x", "f32", [2, 4]]],
        [["y", "f32", [2, 2]]],
      ),
    );
    expect(shapes.message).toMatch(/MatMul "MatMul_0" \(opset 17\): .*inner dims differ/);

    const wide = refusal(
      modelOf(
        (w) => w.node("Add", ["x", w.weight("big", Elem.INT64, [1], [2 ** 40])], {}, { out: "y" }),
        [["x", "i32", [2]]],
        [["y", "i32", [2]]],
      ),
    );
    expect(wide.message).toMatch(/int64 value 1099511627776 .* does not fit Kiln's i32/);

    const f64 = refusal(
      modelOf(
        (w) => w.node("Relu", ["x"], {}, { out: "y" }),
        [["x", "f32", [2]]],
        [["y", "f32", [2]]],
        17,
        (m) => void ((m.graph!.input[0].type!.value.value as TypeProto_Tensor).elemType = Elem.DOUBLE),
      ),
    );
    expect(f64.message).toMatch(/graph input "x": Kiln does not support float64 tensors/);
  });

  test("structurally mutated models (inputs, attributes, ops, initializers, dims) are refused by a check, never by a raw error", () => {
    const shapes = modelOf(
      (w) => {
        const n = w.node("Gather", [w.node("Shape", ["x"]), w.scalar(0, Elem.INT64)], { axis: 0 });
        const r = w.node("Reshape", ["x", w.node("Concat", [w.node("Unsqueeze", [n, w.ints([0])]), w.ints([-1])], { axis: 0 })]);
        const s = w.node("Slice", [r, w.ints([1]), w.ints([5]), w.ints([1]), w.ints([2])]);
        const p = w.node("Pad", [s, w.ints([0, 1, 0, 1])], { mode: "reflect" });
        const [a, b] = w.nodeOutputs("Split", [p, w.ints([2, 2])], { axis: 1 }, { outputs: 2 });
        const t = w.node("Transpose", [w.node("Add", [a, b])], { perm: [1, 0] });
        w.node("Softmax", [w.node("ReduceSum", [t, w.ints([0])], { keepdims: 1 })], { axis: -1 }, { out: "y" });
      },
      [["x", "f32", ["N", 2, 3]]],
      [["y", "f32", [1, "N"]]],
    );
    const bases = [mlpBytes(), shapes, squeezeNetOnnx(3)].map((b) => fromBinary(ModelProtoSchema, b));
    for (const b of bases) importOnnx(toBinary(ModelProtoSchema, b)); // each imports as built
    const OPS = ["Relu", "Add", "Reshape", "Concat", "Gemm", "Slice", "Conv", "MaxPool", "Softmax", "Split", "Transpose", "Gather"];
    fc.assert(
      fc.property(
        fc.nat(bases.length - 1),
        fc.array(fc.tuple(fc.nat(6), fc.nat(), fc.integer({ min: -3, max: 9 })), { minLength: 1, maxLength: 3 }),
        (k, edits) => {
          const m = fromBinary(ModelProtoSchema, toBinary(ModelProtoSchema, bases[k]));
          const g = m.graph!;
          for (const [kind, at, v] of edits) {
            const node = g.node[at % g.node.length];
            const values = [...g.input.map((i) => i.name), ...g.initializer.map((t) => t.name), ...g.node.flatMap((n) => n.output)];
            if (kind === 0 && node.input.length) node.input.splice(at % node.input.length, 1);
            if (kind === 1 && node.input.length) node.input[at % node.input.length] = values[(at + v + 3) % values.length];
            if (kind === 2 && node.attribute.length) {
              const a = node.attribute[at % node.attribute.length];
              a.i = BigInt(v);
              a.ints = a.ints.map((x, j) => (j === at % Math.max(1, a.ints.length) ? BigInt(v) : x));
            }
            if (kind === 3) node.opType = OPS[(at + v + 3) % OPS.length];
            if (kind === 4 && g.initializer.length) {
              const t = g.initializer[at % g.initializer.length];
              if (v % 2) t.dims = t.dims.map((d, j) => (j === 0 ? BigInt(Math.abs(v)) : d));
              else g.initializer.splice(at % g.initializer.length, 1);
            }
            if (kind === 5) {
              const t = g.input[0].type!.value.value as TypeProto_Tensor;
              const d = t.shape!.dim[at % t.shape!.dim.length];
              d.value = { case: "dimValue", value: BigInt(Math.abs(v)) };
            }
            if (kind === 6 && node.output.length) node.output[0] = values[(at + v) % values.length];
          }
          try {
            importOnnx(toBinary(ModelProtoSchema, m));
          } catch (e) {
            if (!(e instanceof OnnxImportError) || e.internal) throw e;
          }
        },
      ),
      { seed: 2207, numRuns: 300 },
    );
  });

  test("mutated and truncated files give an OnnxImportError, never another error", () => {
    const seeds = [mlpBytes()];
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: seeds[0].length }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
        (cut, flips) => {
          const b = seeds[0].slice(0, cut);
          for (const [at, v] of flips) if (b.length) b[at % b.length] = v;
          try {
            importOnnx(b);
          } catch (e) {
            if (!(e instanceof OnnxImportError) || e.internal) throw e;
          }
        },
      ),
      { seed: 1307, numRuns: 400 },
    );
  });
});
