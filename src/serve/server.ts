/**
 * Runtime entry points for the app: Deno.serve, Bun.serve, or @hono/node-server under Node.
 * This (with src/gpu/device.ts) is the only place that branches on the runtime.
 * `shutdown()` is graceful: stop accepting connections, let in-flight requests (streams
 * included) finish, then resolve.
 */
import type { Hono } from "hono";
import { detectRuntime, type Runtime } from "../gpu/device.ts";

export interface ServeOptions {
  /** Port (0 = any free port). Default 8080. */
  port?: number;
  /** Interface to bind. Default 127.0.0.1 (loopback only). */
  hostname?: string;
  /** Awaited during shutdown after the listener closes (e.g. the engine's idle()). */
  drain?: () => Promise<void>;
  /**
   * Under Node, a client must send its request headers within this many ms (default 30000),
   * else the connection is closed (headersTimeout). Bun closes such connections after ~10 s on
   * its own; Deno.serve has no setting for it (its hyper has no header read timer). Slow bodies
   * are timed out by the app on every runtime (AppOptions.bodyIdleTimeoutMs).
   */
  headersTimeoutMs?: number;
}

export interface RunningServer {
  runtime: Runtime;
  hostname: string;
  port: number;
  /** http://host:port */
  url: string;
  /** Stops accepting, waits for in-flight requests, then resolves (idempotent). */
  shutdown(): Promise<void>;
}

// deno-lint-ignore no-explicit-any
type Any = any;

export async function startServer(app: Hono, o: ServeOptions = {}): Promise<RunningServer> {
  const hostname = o.hostname ?? "127.0.0.1";
  const wantPort = o.port ?? 8080;
  const runtime = detectRuntime();
  const headersTimeoutMs = o.headersTimeoutMs ?? 30_000;
  let stop: () => Promise<void>;
  let port: number;
  if (runtime === "deno") {
    const D = (globalThis as Any).Deno;
    const server = D.serve({ port: wantPort, hostname, onListen() {} }, app.fetch);
    port = server.addr.port;
    stop = () => server.shutdown();
  } else if (runtime === "bun") {
    const B = (globalThis as Any).Bun;
    // idleTimeout 0: a long generation may send nothing for a while before its first token.
    // (Bun's HTTP parser closes a connection whose headers are incomplete after ~10 s by itself.)
    const server = B.serve({ port: wantPort, hostname, fetch: app.fetch, idleTimeout: 0 });
    port = server.port;
    stop = async () => {
      await server.stop(false);
    };
  } else {
    const { serve } = await import("@hono/node-server");
    const server: Any = await new Promise((res, rej) => {
      const s: Any = serve({ fetch: app.fetch, port: wantPort, hostname, serverOptions: {
        headersTimeout: headersTimeoutMs,
        // Node checks for expired headers at this interval (default 30 s).
        connectionsCheckingInterval: Math.min(30_000, Math.max(100, headersTimeoutMs / 2)),
      } }, () => res(s));
      s.once("error", rej);
    });
    port = server.address().port;
    stop = () =>
      new Promise<void>((res) => {
        server.close(() => res());
        server.closeIdleConnections?.();
      });
  }
  let done: Promise<void> | undefined;
  const url = `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
  return {
    runtime,
    hostname,
    port,
    url,
    shutdown: () =>
      done ??= (async () => {
        const closing = stop();
        await o.drain?.();
        await closing;
      })(),
  };
}

/** Calls `fn` once on SIGINT or SIGTERM (Deno: Deno.addSignalListener; Bun/Node: process.on). */
export async function onShutdownSignal(fn: (signal: string) => void): Promise<() => void> {
  let fired = false;
  const once = (s: string) => {
    if (fired) return;
    fired = true;
    fn(s);
  };
  const signals = ["SIGINT", "SIGTERM"] as const;
  if (detectRuntime() === "deno") {
    const D = (globalThis as Any).Deno;
    const handlers = signals.map((s) => [s, () => once(s)] as const);
    for (const [s, h] of handlers) D.addSignalListener(s, h);
    return () => {
      for (const [s, h] of handlers) D.removeSignalListener(s, h);
    };
  }
  const { default: process } = await import("node:process");
  const handlers = signals.map((s) => [s, () => once(s)] as const);
  for (const [s, h] of handlers) process.on(s, h);
  return () => {
    for (const [s, h] of handlers) process.off(s, h);
  };
}
