/** Run a page in headless Chromium and get back what it reports: the browser half of the tests
 *  that check a Kiln bundle gives the same results in a page as in Node.
 *
 *  `dir` is served on 127.0.0.1 at a free port; the page POSTs its result (JSON) to /result,
 *  which ends the run. The page's console and Chromium's stderr come back as `log`.
 *
 *  WebGPU without a GPU: Chromium 156 (Debian bookworm) exposes WebGPU through its bundled
 *  SwiftShader Vulkan (adapter.info: vendor "google", architecture "swiftshader",
 *  isFallbackAdapter) once `--enable-unsafe-webgpu` lifts its CPU-adapter blocklist
 *  (crbug.com/40057808). Mesa's lavapipe is enumerated by Dawn only with
 *  `--ignore-gpu-blocklist --enable-features=Vulkan --use-vulkan=native --use-angle=vulkan`, and
 *  even then `requestAdapter()` returns SwiftShader (or null with a forced power preference), so
 *  the flags below ask for no more than what works. */
import { spawn } from "node:child_process";
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, extname, join, resolve, sep } from "node:path";

export interface BrowserRunOptions {
  /** Folder served as the site root. */
  readonly dir: string;
  /** Page to open, relative to `dir`, e.g. "index.html". */
  readonly page: string;
  readonly timeoutMs: number;
  /** Extra Chromium switches, after the defaults. */
  readonly flags?: readonly string[];
}

export type BrowserRun =
  | { readonly ok: true; readonly result: unknown; readonly log: string; readonly ms: number }
  | { readonly ok: false; readonly error: string; readonly log: string; readonly ms: number };

/** Why these: headless (new mode, the only one left in current Chromium); WebGPU on a CPU
 *  adapter; no sandbox because CI runs as root, where Chromium refuses to start sandboxed, and
 *  the page is our own; console messages on stderr so failures show what the page said. */
export const CHROMIUM_FLAGS: readonly string[] = [
  "--headless=new",
  "--enable-unsafe-webgpu",
  "--no-sandbox",
  "--no-first-run",
  "--no-default-browser-check",
  "--disable-extensions",
  "--disable-background-networking",
  "--enable-logging=stderr",
  "--v=0",
];

const BINARIES = ["chromium", "chromium-browser", "google-chrome-stable", "google-chrome"];

/** The Chromium executable: $KILN_CHROMIUM, else the first of BINARIES on PATH. */
export function findChromium(): string | undefined {
  const fromEnv = process.env.KILN_CHROMIUM;
  if (fromEnv) return fromEnv;
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    for (const name of BINARIES) {
      const p = join(dir, name);
      try {
        accessSync(p, constants.X_OK);
        return p;
      } catch {
        // not here
      }
    }
  }
  return undefined;
}

const TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript",
  ".mjs": "text/javascript",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".wgsl": "text/plain; charset=utf-8",
};

function serveFile(root: string, req: IncomingMessage, res: ServerResponse): void {
  const path = resolve(root, "." + decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname));
  if (path !== root && !path.startsWith(root + sep)) {
    res.writeHead(403).end();
    return;
  }
  try {
    const file = statSync(path).isDirectory() ? join(path, "index.html") : path;
    const body = readFileSync(file);
    res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream", "cache-control": "no-store" }).end(body);
  } catch {
    res.writeHead(404).end();
  }
}

/** Serve `dir`, open `page` in headless Chromium, resolve with what the page POSTs to /result. */
export async function runInChromium(opts: BrowserRunOptions): Promise<BrowserRun> {
  const start = performance.now();
  const binary = findChromium();
  if (!binary) return { ok: false, error: `no Chromium found (tried $KILN_CHROMIUM, ${BINARIES.join(", ")} on PATH)`, log: "", ms: 0 };
  const root = resolve(opts.dir);
  const profile = mkdtempSync(join(tmpdir(), "kiln-chromium-"));
  let log = "";
  let settle!: (r: { result?: unknown; error?: string }) => void;
  const outcome = new Promise<{ result?: unknown; error?: string }>((r) => (settle = r));

  const server = createServer((req, res) => {
    if (req.method === "POST" && req.url === "/result") {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        res.writeHead(204).end();
        const text = Buffer.concat(chunks).toString("utf8");
        try {
          settle({ result: JSON.parse(text) });
        } catch {
          settle({ error: `page posted a result that is not JSON: ${text.slice(0, 200)}` });
        }
      });
      return;
    }
    serveFile(root, req, res);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/${opts.page}`;

  // Its own process group, so the GPU, renderer and zygote processes go with it at the end.
  const child = spawn(binary, [...CHROMIUM_FLAGS, `--user-data-dir=${profile}`, ...(opts.flags ?? []), url], {
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  child.stdout.on("data", (d: Buffer) => (log += d));
  child.stderr.on("data", (d: Buffer) => (log += d));
  child.on("error", (e) => settle({ error: `could not start ${binary}: ${e.message}` }));
  child.on("exit", (code, signal) => settle({ error: `${binary} exited (${signal ?? `code ${code}`}) before the page posted /result` }));
  const timer = setTimeout(() => settle({ error: `no result from ${url} within ${opts.timeoutMs} ms` }), opts.timeoutMs);

  try {
    const { result, error } = await outcome;
    const ms = performance.now() - start;
    return error === undefined ? { ok: true, result, log, ms } : { ok: false, error, log, ms };
  } finally {
    clearTimeout(timer);
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      const exited = new Promise((r) => child.once("exit", r));
      try {
        process.kill(-child.pid, "SIGKILL");
        await exited;
      } catch {
        // already gone
      }
    }
    await new Promise((r) => server.close(r));
    rmSync(profile, { recursive: true, force: true });
  }
}

/** Page body that reports navigator.gpu and the adapter Chromium hands out. */
const PROBE_PAGE = `<!doctype html><meta charset="utf-8"><script type="module">
const r = { hasGpu: "gpu" in navigator, adapter: null };
try {
  const a = navigator.gpu && await navigator.gpu.requestAdapter();
  if (a) r.adapter = { vendor: a.info.vendor, architecture: a.info.architecture, description: a.info.description, isFallbackAdapter: a.info.isFallbackAdapter };
} catch (e) { r.error = String(e); }
await fetch("/result", { method: "POST", body: JSON.stringify(r) });
</script>`;

export interface ChromiumAdapter {
  readonly vendor: string;
  readonly architecture: string;
  readonly description: string;
  readonly isFallbackAdapter: boolean;
}

export type ChromiumStatus =
  | { readonly ok: true; readonly binary: string; readonly version: string; readonly adapter: ChromiumAdapter }
  | { readonly ok: false; readonly reason: string };

let status: Promise<ChromiumStatus> | undefined;

/** Whether a page in headless Chromium gets a WebGPU adapter here, and if not, why not
 *  (no binary, no navigator.gpu, requestAdapter() null). Probed once per process. */
export function chromiumAvailable(timeoutMs = 60_000): Promise<ChromiumStatus> {
  status ??= probe(timeoutMs);
  return status;
}

async function probe(timeoutMs: number): Promise<ChromiumStatus> {
  const binary = findChromium();
  if (!binary)
    return {
      ok: false,
      reason: `no Chromium binary (set KILN_CHROMIUM or install one of: ${BINARIES.join(", ")}; runtime/setup.sh installs Debian's chromium)`,
    };
  const version = await new Promise<string>((r) => {
    const p = spawn(binary, ["--version"], { stdio: ["ignore", "pipe", "ignore"] });
    let out = "";
    p.stdout.on("data", (d: Buffer) => (out += d));
    p.on("error", () => r("unknown version"));
    p.on("exit", () => r(out.trim() || "unknown version"));
  });
  const dir = mkdtempSync(join(tmpdir(), "kiln-probe-"));
  try {
    writeFileSync(join(dir, "index.html"), PROBE_PAGE);
    const run = await runInChromium({ dir, page: "index.html", timeoutMs });
    if (!run.ok) return { ok: false, reason: `${version}: ${run.error}\n${run.log.slice(-2000)}` };
    const r = run.result as { hasGpu: boolean; adapter: ChromiumAdapter | null; error?: string };
    if (!r.hasGpu) return { ok: false, reason: `${version}: navigator.gpu is missing (flags: ${CHROMIUM_FLAGS.join(" ")})` };
    if (!r.adapter)
      return {
        ok: false,
        reason: `${version}: navigator.gpu.requestAdapter() gave no adapter${r.error ? ` (${r.error})` : ""}; chrome://gpu says why`,
      };
    return { ok: true, binary, version, adapter: r.adapter };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
