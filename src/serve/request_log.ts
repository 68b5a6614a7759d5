/**
 * One log line per request, as llama-server and vLLM write them, when the request ends (a
 * stream when its last byte is sent or the client goes away):
 *
 *   POST /v1/completions 200 adapter=shakespeare tokens=5+32 stream 412ms
 *
 * Method, path (never the query), status, the adapter (- for the base or when none was
 * resolved), prompt+completion tokens of a generation, and wall milliseconds. Prompt and
 * completion text are never logged.
 */
import type { Context, MiddlewareHandler } from "hono";

interface Entry {
  adapter?: string;
  promptTokens?: number;
  completionTokens?: number;
}

const KEY = "requestLogEntry" as never;

/** Called by a handler once a generation finished, so the request's line carries its adapter and tokens. */
export function noteGeneration(c: Context, adapter: string | undefined, usage: { promptTokens: number; completionTokens: number }): void {
  const e = c.get(KEY) as Entry | undefined;
  if (!e) return;
  e.adapter = adapter;
  e.promptTokens = usage.promptTokens;
  e.completionTokens = usage.completionTokens;
}

export function formatRequestLine(o: { method: string; path: string; status: number | string; ms: number; stream: boolean } & Entry): string {
  const tokens = o.promptTokens === undefined ? "-" : `${o.promptTokens}+${o.completionTokens}`;
  return `${o.method} ${o.path} ${o.status} adapter=${o.adapter ?? "-"} tokens=${tokens}${o.stream ? " stream" : ""} ${Math.round(o.ms)}ms`;
}

/** Middleware writing one line per request through `write` (e.g. to stderr). */
export function requestLog(write: (line: string) => void): MiddlewareHandler {
  return async (c, next) => {
    const t0 = performance.now();
    const entry: Entry = {};
    c.set(KEY, entry as never);
    await next();
    const res = c.res;
    const line = (status: number | string, stream: boolean) =>
      write(formatRequestLine({ method: c.req.method, path: c.req.path, status, ms: performance.now() - t0, stream, ...entry }));
    const body = res.body;
    if (!body || !(res.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
      line(res.status, false);
      return;
    }
    // A stream's line is written when it ends: pass its chunks through and watch for the end.
    const reader = body.getReader();
    let logged = false;
    const once = (status: number | string) => {
      if (!logged) line(status, true);
      logged = true;
    };
    const piped = new ReadableStream<Uint8Array>({
      async pull(ctrl) {
        try {
          const { done, value } = await reader.read();
          if (done) {
            ctrl.close();
            once(res.status);
          } else ctrl.enqueue(value);
        } catch (e) {
          once(`${res.status}(error)`);
          ctrl.error(e);
        }
      },
      cancel(reason) {
        once("499(client closed)");
        return reader.cancel(reason);
      },
    });
    c.res = new Response(piped, { status: res.status, headers: res.headers });
  };
}
