/**
 * Slow request bodies time out: a client that sends its body in a trickle (or stops halfway)
 * would otherwise hold a connection and a handler for ever. The body is passed through as it
 * arrives; when no byte comes for `idleMs`, or the whole body takes longer than `totalMs`, the
 * stream fails and the request is answered 408. Header timeouts are the server's job
 * (src/serve/server.ts): the app only sees a request once its headers are in.
 */
import type { Context, MiddlewareHandler } from "hono";

export interface BodyTimeoutOptions {
  /** Longest wait for the next chunk of the body, in ms. */
  idleMs: number;
  /** Longest time for the whole body, in ms. */
  totalMs: number;
  /** The 408 response. */
  onTimeout(c: Context, message: string): Response;
}

export class BodyTimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BodyTimeoutError";
  }
}

export function bodyTimeout(o: BodyTimeoutOptions): MiddlewareHandler {
  return async (c, next) => {
    const raw = c.req.raw;
    if (!raw.body) return await next();
    const reader = raw.body.getReader();
    const started = Date.now();
    let timedOut: string | undefined;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const wait = Math.min(o.idleMs, o.totalMs - (Date.now() - started));
        let timer: ReturnType<typeof setTimeout> | undefined;
        const expired = new Promise<"timeout">((resolve) => timer = setTimeout(() => resolve("timeout"), Math.max(0, wait)));
        const r = await Promise.race([reader.read(), expired]);
        clearTimeout(timer);
        if (r === "timeout") {
          timedOut = wait < o.idleMs
            ? `the request body took longer than ${o.totalMs} ms`
            : `no part of the request body arrived for ${o.idleMs} ms`;
          controller.error(new BodyTimeoutError(timedOut));
          reader.cancel().catch(() => {});
          return;
        }
        if (r.done) controller.close();
        else controller.enqueue(r.value);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    });
    c.req.raw = new Request(raw, { body, duplex: "half" } as RequestInit);
    await next();
    // Whatever the handler made of the failed read (often a 400), the answer is a timeout.
    if (timedOut) c.res = o.onTimeout(c, timedOut);
  };
}
