/** One runner child process seen from the orchestrator: requests with a deadline, replies
 *  matched in order, and a death (exit, signal, spawn failure) or a missed deadline turned into
 *  a RunnerDown error that says which and shows the tail of the child's stderr. A timed-out
 *  child is killed: it may be stuck in native code, and it must not keep loading the machine
 *  while the others are timed. */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import type { Reply, Request } from "./protocol.ts";

export class RunnerDown extends Error {
  constructor(
    readonly kind: "crashed" | "timeout",
    message: string,
  ) {
    super(message);
    this.name = "RunnerDown";
  }
}

const TAIL = 8000;

interface Pending {
  resolve(r: Reply): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

export class RunnerProcess {
  private readonly proc: ChildProcess;
  private readonly queue: Pending[] = [];
  private stderr = "";
  /** Stdout lines that were not replies (a library or native code printing). */
  readonly noise: string[] = [];
  private down: RunnerDown | undefined;
  private readonly exited: Promise<void>;

  constructor(command: string, args: readonly string[], opts: { cwd: string; env: NodeJS.ProcessEnv }) {
    this.proc = spawn(command, args, { cwd: opts.cwd, env: opts.env, stdio: ["pipe", "pipe", "pipe"] });
    this.proc.stderr!.on("data", (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-TAIL);
    });
    createInterface({ input: this.proc.stdout! }).on("line", (line) => this.onLine(line));
    // A child that dies mid-request makes writes fail with EPIPE; the exit handler reports it.
    this.proc.stdin!.on("error", () => {});
    this.exited = new Promise((resolve) => {
      this.proc.on("error", (e) => {
        this.fail(new RunnerDown("crashed", `could not start: ${e.message}`));
        resolve();
      });
      // "close", not "exit": by then stderr has been read to the end, so the tail is complete.
      this.proc.on("close", (code, signal) => {
        this.fail(new RunnerDown("crashed", this.withTail(`exited (${signal ?? `code ${code}`})`)));
        resolve();
      });
    });
  }

  /** The last `lines` lines of stderr, without Dawn's start-up warnings. */
  stderrTail(lines = 6): string {
    return this.stderr
      .split("\n")
      .filter((l) => l.trim() && !/^Warning: max\w+ artificially reduced/.test(l))
      .slice(-lines)
      .join("\n");
  }

  private withTail(message: string): string {
    const t = this.stderrTail();
    return t ? `${message}; stderr: ${t}` : message;
  }

  private onLine(line: string): void {
    let reply: Reply | undefined;
    try {
      const v = JSON.parse(line) as unknown;
      if (v && typeof v === "object" && typeof (v as { ok?: unknown }).ok === "boolean") reply = v as Reply;
    } catch {
      // not a reply
    }
    if (!reply) {
      this.noise.push(line.slice(0, 200));
      return;
    }
    const p = this.queue.shift();
    if (!p) {
      this.noise.push(`unrequested reply: ${line.slice(0, 200)}`);
      return;
    }
    clearTimeout(p.timer);
    p.resolve(reply);
  }

  private fail(e: RunnerDown): void {
    this.down ??= e;
    for (const p of this.queue.splice(0)) {
      clearTimeout(p.timer);
      p.reject(this.down);
    }
  }

  /** Send a request; resolves with its reply (ok or not), rejects with RunnerDown. */
  request(req: Request, timeoutMs: number): Promise<Reply> {
    return this.awaitReply(timeoutMs, `${req.cmd}${req.cmd === "steps" ? ` ×${req.n}` : ""}`, () =>
      this.proc.stdin!.write(`${JSON.stringify(req)}\n`),
    );
  }

  /** Wait for a reply the child sends unasked (one-shot children such as ceilings.ts). */
  reply(timeoutMs: number, what: string): Promise<Reply> {
    return this.awaitReply(timeoutMs, what, () => {});
  }

  private awaitReply(timeoutMs: number, what: string, send: () => void): Promise<Reply> {
    if (this.down) return Promise.reject(this.down);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(new RunnerDown("timeout", this.withTail(`no reply to ${what} within ${(timeoutMs / 1000).toFixed(1)} s`)));
        this.proc.kill("SIGKILL");
      }, timeoutMs);
      this.queue.push({ resolve, reject, timer });
      send();
    });
  }

  /** Ask the child to quit; kill it if it has not exited within graceMs. */
  async close(graceMs = 10_000): Promise<void> {
    if (!this.down) {
      await this.request({ cmd: "quit" }, graceMs).catch(() => undefined);
      this.proc.stdin!.end();
    }
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}
