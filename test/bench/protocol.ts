/** The runner protocol: how the orchestrator (run.ts) drives one runner child process.
 *
 *  A runner is one library on one backend (Kiln, "tfjs-webgpu", "jax-wasm", …) in its own Node
 *  process, so a crash or hang costs only its own row. It reads one JSON request per line on
 *  stdin and answers each with one JSON line on stdout, in order:
 *
 *    → {"cmd":"info"}                                   ← {"ok":true,"info":{…RunnerInfo}}
 *    → {"cmd":"setup","workload":"W1","batch":128}       ← {"ok":true,"setupMs":…,"firstStepMs":…,"loss":…}
 *      (batch and, for W6, examples override the workload's sizes; both optional)
 *    → {"cmd":"steps","n":5}                             ← {"ok":true,"ms":[…5 numbers],"loss":…}
 *    → {"cmd":"quit"}                                    ← {"ok":true}, then the process exits
 *    any failure                                         ← {"ok":false,"error":"…"}
 *    a setup that needs a part not built yet (NotBuilt)   ← {"ok":false,"error":"…","notBuilt":true}
 *
 *  setup builds the workload's tensors from workloads.ts (same seeds everywhere) and then runs
 *  ONE step: setupMs is the time to build weights/data/graph, firstStepMs that first step, which
 *  includes compiling shaders or JIT traces (bench figure W4). A runner serves one workload per
 *  process: the orchestrator starts a fresh process per (runner, workload), so the first step is
 *  cold with respect to the library's own caches.
 *
 *  A step is the whole workload step AND its read-back: for training, forward + backward + SGD
 *  update with weights resident on the device, and the scalar loss awaited on the host; for W2
 *  and W5 the whole output read back and reduced with checksum(); for W6 (kind "fit") one epoch
 *  of the library's own fit over the workload's examples, in order, and its mean loss. The
 *  step's timing includes whatever that fit does per epoch (batching, callbacks, metrics), as
 *  a Keras user would see it. Each entry of ms is one such
 *  step, measured with performance.now() around step(). loss is the last step's value.
 *
 *  Only protocol lines may reach stdout. serveRunner() sends console.log/info/debug/warn to
 *  stderr, since libraries greet the user there; the orchestrator also ignores any stdout line
 *  that is not a JSON reply (native code may still write there) and keeps stderr's tail for the
 *  report when a runner dies. */
import { createInterface } from "node:readline";
import type { Ceilings } from "./runners/ceilings.ts";
import { WORKLOADS, withBatch, type WorkloadId, type WorkloadSpec } from "./workloads.ts";

export interface RunnerInfo {
  /** Library and version, e.g. "@tensorflow/tfjs 4.22.0". */
  readonly library: string;
  readonly backend: string;
  /** The GPU adapter, for runners on WebGPU (only their rows get a "% of FMA ceiling"). */
  readonly adapter?: string;
  /** Anything a reader of the table should know: threads, SIMD, fallbacks. */
  readonly notes?: readonly string[];
}

export type Request =
  | { readonly cmd: "info" }
  | { readonly cmd: "setup"; readonly workload: WorkloadId; readonly batch?: number; readonly examples?: number }
  | { readonly cmd: "steps"; readonly n: number }
  | { readonly cmd: "quit" };

export type Reply =
  | { readonly ok: true; readonly info: RunnerInfo }
  | { readonly ok: true; readonly setupMs: number; readonly firstStepMs: number; readonly loss: number }
  | { readonly ok: true; readonly ms: readonly number[]; readonly loss: number }
  | { readonly ok: true }
  | { readonly ok: false; readonly error: string; readonly notBuilt?: true }
  /** Sent unasked by the one-shot ceilings.ts, which serves no requests. */
  | { readonly ok: true; readonly ceilings: Ceilings };

/** What a runner implements; serveRunner does the protocol, the timing and the errors. */
export interface Runner {
  info(): RunnerInfo | Promise<RunnerInfo>;
  /** Build the workload (weights and data on the device, graph/jit function ready). Throw with
   *  a clear message for a workload this library cannot run. */
  setup(spec: WorkloadSpec): Promise<Session>;
}

export interface Session {
  /** One full step, resolved only once its loss (or checksum) is on the host. */
  step(): Promise<number>;
  dispose?(): void | Promise<void>;
}

/** Thrown by a runner's setup when the workload needs a capability this checkout lacks (Kiln's
 *  ONNX importer for W7, say): the report says "not built", as for a runner module not written. */
export class NotBuilt extends Error {
  override name = "NotBuilt";
}

const errorText = (e: unknown) => (e instanceof Error ? `${e.name === "Error" ? "" : `${e.name}: `}${e.message}` : String(e));

/** Serve the protocol on stdin/stdout until "quit" or stdin closes, then exit the process
 *  (libraries keep handles open; stdout to a pipe is synchronous on Linux, so nothing is lost). */
export async function serveRunner(runner: Runner): Promise<never> {
  const out = process.stdout.write.bind(process.stdout);
  const toStderr = (...args: unknown[]) => console.error(...args);
  console.log = console.info = console.debug = console.warn = toStderr;
  const send = (reply: Reply) => out(`${JSON.stringify(reply)}\n`);
  let session: Session | undefined;

  async function handle(req: Request): Promise<Reply> {
    switch (req.cmd) {
      case "info":
        return { ok: true, info: await runner.info() };
      case "setup": {
        const spec = WORKLOADS[req.workload];
        if (!spec) throw new Error(`setup: unknown workload ${JSON.stringify(req.workload)}`);
        await session?.dispose?.();
        session = undefined;
        const t0 = performance.now();
        const s = await runner.setup(withBatch(spec, req.batch, req.examples));
        const t1 = performance.now();
        const loss = await s.step();
        const t2 = performance.now();
        session = s;
        return { ok: true, setupMs: t1 - t0, firstStepMs: t2 - t1, loss };
      }
      case "steps": {
        if (!session) throw new Error("steps: no workload set up (send setup first, and it must succeed)");
        const ms: number[] = [];
        let loss = NaN;
        for (let i = 0; i < req.n; i++) {
          const t = performance.now();
          loss = await session.step();
          ms.push(performance.now() - t);
        }
        return { ok: true, ms, loss };
      }
      case "quit":
        await session?.dispose?.();
        return { ok: true };
      default:
        throw new Error(`unknown command ${JSON.stringify((req as { cmd?: unknown }).cmd)}`);
    }
  }

  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.trim()) continue;
    let req: Request;
    try {
      req = JSON.parse(line) as Request;
    } catch {
      send({ ok: false, error: `not a JSON request: ${line.slice(0, 80)}` });
      continue;
    }
    try {
      send(await handle(req));
    } catch (e) {
      // The reply carries the message; the stack goes to stderr, which the orchestrator keeps.
      if (e instanceof NotBuilt) send({ ok: false, error: e.message, notBuilt: true });
      else {
        console.error(e instanceof Error ? e.stack : e);
        send({ ok: false, error: errorText(e) });
      }
    }
    if (req.cmd === "quit") break;
  }
  lines.close();
  process.exit(0);
}
