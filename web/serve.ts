/**
 * `deno task web`: serves the fine-tuning page on localhost (WebGPU needs a secure context, and
 * http://localhost is one). A fixed set of routes, nothing else on disk is reachable:
 *   /                          web/index.html
 *   /<name>.js|.css            web/<name> (the page's own scripts)
 *   /dist/edge-peft.browser.js the library bundle (scripts/bundle.mjs --browser builds it)
 *   /models/stories260K.gguf   the shared example model (the page's default)
 *   /data/tinyshakespeare.txt  the shared example text (the page's sample data)
 * Usage: deno run --allow-net --allow-read web/serve.ts [--port 8790] [--hostname 127.0.0.1]
 */
import { parseArgs } from "node:util";

const HERE = new URL("./", import.meta.url);
const ROOT = new URL("../", import.meta.url);
const SHARED = new URL("../../shared/", import.meta.url);

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".gguf": "application/octet-stream",
};

const FIXED: Record<string, URL> = {
  "/": new URL("index.html", HERE),
  "/dist/edge-peft.browser.js": new URL("dist/edge-peft.browser.js", ROOT),
  "/models/stories260K.gguf": new URL("models/stories260K/stories260K.gguf", SHARED),
  "/data/tinyshakespeare.txt": new URL("data/tinyshakespeare.txt", SHARED),
};

function fileFor(pathname: string): URL | null {
  if (FIXED[pathname]) return FIXED[pathname];
  const m = /^\/([\w-]+\.(?:js|css))$/.exec(pathname);
  return m ? new URL(m[1], HERE) : null;
}

async function respond(req: Request): Promise<Response> {
  if (req.method !== "GET" && req.method !== "HEAD") return new Response("method not allowed\n", { status: 405 });
  const url = fileFor(new URL(req.url).pathname);
  if (!url) return new Response("not found\n", { status: 404 });
  let file: Deno.FsFile;
  try {
    file = await Deno.open(url, { read: true });
  } catch {
    const hint = url.pathname.endsWith("edge-peft.browser.js") ? " (build it: node scripts/bundle.mjs --browser)" : "";
    return new Response(`not found: ${url.pathname}${hint}\n`, { status: 404 });
  }
  const { size } = await file.stat();
  const ext = url.pathname.slice(url.pathname.lastIndexOf("."));
  const headers = { "content-type": TYPES[ext] ?? "application/octet-stream", "content-length": String(size), "cache-control": "no-cache" };
  if (req.method === "HEAD") {
    file.close();
    return new Response(null, { headers });
  }
  return new Response(file.readable, { headers });
}

export interface WebServer {
  url: string;
  shutdown(): Promise<void>;
}

/** Starts the page's server; port 0 picks a free port (tests). */
export function serveWeb(o: { port?: number; hostname?: string } = {}): Promise<WebServer> {
  return new Promise((resolve) => {
    const server = Deno.serve({
      port: o.port ?? 8790,
      hostname: o.hostname ?? "127.0.0.1",
      onListen: ({ hostname, port }) => resolve({ url: `http://${hostname}:${port}/`, shutdown: () => server.shutdown() }),
    }, respond);
  });
}

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: { port: { type: "string", default: "8790" }, hostname: { type: "string", default: "127.0.0.1" } } });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`--port must be an integer in 0..65535, got ${values.port}`);
    Deno.exit(2);
  }
  const { url } = await serveWeb({ port, hostname: values.hostname });
  console.log(`[web] fine-tune in the browser: open ${url} (Chrome/Edge with WebGPU; Ctrl-C stops)`);
}
