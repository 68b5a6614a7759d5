/**
 * Run by slow_client.test.ts under Bun (and runnable under any runtime): starts startServer()
 * with a 1 s header timeout on a plain app, then (a) sends half a request's headers and waits
 * for the server to close the connection, (b) sends a whole request whose handler takes 2.5 s
 * (longer than the header timeout) and expects its answer. Prints one JSON line.
 */
import { connect } from "node:net";
import { Hono } from "hono";
import { startServer } from "../../src/serve/server.ts";

const app = new Hono();
app.get("/slow", async (c) => {
  await new Promise((r) => setTimeout(r, 2500));
  return c.text("done");
});
const server = await startServer(app, { port: 0, headersTimeoutMs: 1000 });

/** Writes `text`, then resolves with the seconds until the server closes and what it sent. */
function exchange(text: string, limitMs: number): Promise<{ seconds: number; reply: string; closed: boolean }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let reply = "";
    const sock = connect(server.port, "127.0.0.1", () => sock.write(text));
    const done = (closed: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ seconds: (performance.now() - t0) / 1000, reply: reply.split("\r\n")[0], closed });
    };
    const timer = setTimeout(() => done(false), limitMs);
    sock.on("data", (d) => {
      reply += d.toString();
      if (reply.includes("done")) done(false);
    });
    sock.on("close", () => done(true));
    sock.on("error", () => done(true));
  });
}

const [partial, slow] = await Promise.all([
  exchange("GET /slow HTTP/1.1\r\nHost: x\r\n", 20_000),
  exchange("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", 10_000),
]);
console.log(JSON.stringify({ runtime: server.runtime, partial, slow }));
await server.shutdown();
