/** jax-js runner: `tsx test/bench/runners/jax.ts <webgpu|wasm|cpu>`, speaking protocol.ts.
 *
 *  One `jit` function per workload. Training is jit(params, x, y ↦ valueAndGrad(loss) then the
 *  SGD update), so forward, backward and update are traced and fused together, as jax-js users
 *  write it. jax-js arrays are reference-counted and every call consumes its arguments: the step
 *  passes the old params (consumed, replaced by the returned ones) and x.ref / y.ref (kept).
 *  jax-js convolves NCHW × OIHW, so the LeNet step transposes the shared NHWC input and HWIO
 *  filters inside the jitted function and flattens in NHWC order, matching the other runners.
 *  W6 (one epoch of a Keras-style fit) is refused: jax-js has no layers/model/fit API, and a
 *  hand loop of grad + Adam would time something else. */
import { availableParallelism } from "node:os";
import { serveRunner, type Session } from "../protocol.ts";
import { packageVersion } from "../versions.ts";
import { LENET, batchFor, checksum, matmulOperands, paramsFor, type HostArray, type WorkloadSpec } from "../workloads.ts";

const backend = process.argv[2];
if (backend !== "webgpu" && backend !== "wasm" && backend !== "cpu") {
  console.error(`usage: jax.ts <webgpu|wasm|cpu>; got ${JSON.stringify(backend)}`);
  process.exit(2);
}

let adapter: string | undefined;
if (backend === "webgpu") {
  const { create, globals } = await import("webgpu");
  for (const [k, v] of Object.entries(globals)) if (!(k in globalThis)) Object.assign(globalThis, { [k]: v });
  process.env.XDG_RUNTIME_DIR ??= "/tmp";
  const gpu = create([]);
  // jax-js reads navigator.userAgent (kernel heuristics) and hardwareConcurrency besides gpu.
  const navigator = { gpu, userAgent: `Node.js/${process.version}`, hardwareConcurrency: availableParallelism() };
  Object.defineProperty(globalThis, "navigator", { value: navigator, configurable: true });
  const a = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!a) throw new Error("jax-webgpu: Dawn found no adapter");
  adapter = `${a.info.description || a.info.device} [${[a.info.vendor, a.info.architecture].filter(Boolean).join(" ")}]`;
}

const jax = await import("@jax-js/jax");
const { numpy: np, nn, lax, jit, valueAndGrad, tree } = jax;
type Arr = InstanceType<typeof np.Array>;
const ready = await jax.init(backend);
if (!ready.includes(backend)) throw new Error(`jax-js: backend ${backend} failed to initialise (init gave [${ready}])`);
jax.defaultDevice(backend);
const version = packageVersion("@jax-js/jax");
const notes =
  backend === "wasm"
    ? [
        `threads ${typeof (globalThis as { Worker?: unknown }).Worker === "undefined" ? "off (jax-js needs a Web Worker; Node has none)" : "on"}`,
      ]
    : [];

const toArray = (h: HostArray): Arr => np.array(h.data).reshape([...h.shape]);

type Params = Record<string, Arr>;
const dense = (p: Params, h: Arr, l: number) => np.matmul(h, p[`w${l}`]).add(p[`b${l}`]);

function mlp(p: Params, x: Arr): Arr {
  const h1 = nn.relu(dense(p, x, 1));
  const h2 = nn.relu(dense(p, h1, 2));
  return dense(p, h2, 3);
}

const pool2 = (x: Arr) => lax.reduceWindow(x, (w: Arr) => np.max(w), [2, 2], [2, 2]);
/** conv (NCHW input, HWIO filter) + bias, ReLU, 2×2 max-pool. */
const convBlock = (x: Arr, f: Arr, b: Arr, padding: "SAME" | "VALID") =>
  pool2(nn.relu(lax.conv(x, np.transpose(f, [3, 2, 0, 1]), [1, 1], padding).add(b.reshape([1, -1, 1, 1]))));

function lenet(p: Params, x: Arr): Arr {
  const c1 = convBlock(np.transpose(x, [0, 3, 1, 2]), p.c1, p.c1b, "SAME");
  const c2 = convBlock(c1, p.c2, p.c2b, "VALID");
  const f = np.transpose(c2, [0, 2, 3, 1]).reshape([-1, LENET.flat]);
  return dense(p, nn.relu(dense(p, nn.relu(dense(p, f, 1)), 2)), 3);
}

/** Mean softmax cross-entropy over the batch. */
const crossEntropy = (logits: Arr, onehot: Arr) => np.mean(np.sum(onehot.mul(nn.logSoftmax(logits, -1)), -1)).neg();

function train(spec: WorkloadSpec, forward: (p: Params, x: Arr) => Arr): Session {
  let params: Params = Object.fromEntries(paramsFor(spec).map(({ name, value }) => [name, toArray(value)]));
  const data = batchFor(spec);
  const x = toArray(data.x);
  const y = toArray(data.onehot);
  const lossFn = (p: Params, xb: Arr, yb: Arr) => crossEntropy(forward(p, xb), yb);
  const step = jit((p: Params, xb: Arr, yb: Arr) => {
    // p is used twice (by valueAndGrad and by the update): jax-js wants a .ref for the extra use.
    const kept = tree.ref(p);
    const [loss, grads] = valueAndGrad(lossFn)(p, xb, yb);
    return [loss, tree.map((w: Arr, g: Arr) => w.sub(g.mul(spec.lr)), kept, grads)] as [Arr, Params];
  });
  return {
    async step() {
      const [loss, next] = step(params, x.ref, y.ref);
      params = next;
      return (await loss.data())[0];
    },
    dispose() {
      tree.dispose([params, x, y]);
      step.dispose();
    },
  };
}

function readback(f: (...args: Arr[]) => Arr, args: Arr[]): Session {
  const g = jit(f);
  return {
    async step() {
      return checksum(await g(...args.map((a) => a.ref)).data());
    },
    dispose() {
      tree.dispose(args);
      g.dispose();
    },
  };
}

async function setup(spec: WorkloadSpec): Promise<Session> {
  switch (spec.id) {
    case "W1":
      return train(spec, mlp);
    case "W3":
      return train(spec, lenet);
    case "W2": {
      const params = paramsFor(spec);
      const forward = (x: Arr, ...ws: Arr[]) => mlp(Object.fromEntries(params.map(({ name }, i) => [name, ws[i]])), x);
      return readback(forward, [toArray(batchFor(spec).x), ...params.map(({ value }) => toArray(value))]);
    }
    case "W5": {
      const { a, b } = matmulOperands(spec);
      return readback((x, y) => np.matmul(x, y), [toArray(a), toArray(b)]);
    }
    case "W6":
      throw new Error(
        "jax-js has no Keras-style fit (no layers, compile or fit API); a hand-written grad + Adam loop would not be the same path",
      );
    case "W7":
      throw new Error("W7 is an ONNX file; jax-js has no ONNX importer here (onnxruntime and Kiln run it)");
  }
}

await serveRunner({
  info: () => ({ library: `@jax-js/jax ${version}`, backend, adapter, notes }),
  setup,
});
