/**
 * Server metrics in the Prometheus text format through prom-client (the library scrapers are
 * used to): request counters by route and status, a request latency histogram, token counters
 * (per model and per adapter request), generated tokens/s over the last 10 s, and the engine's
 * gauges (queue depth, running requests, batch size, KV cache blocks, adapters resident, adapter
 * cache hits and misses, GPU bytes our allocator holds).
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { EngineStats } from "./engine.ts";

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
/** Seconds over which edgepeft_generated_tokens_per_second averages. */
const RATE_WINDOW_S = 10;

export class Metrics {
  readonly registry = new Registry();
  readonly started = Date.now();
  private readonly requests: Counter<"route" | "method" | "status">;
  private readonly latency: Histogram<"route">;
  private readonly prompt: Counter;
  private readonly completion: Counter;
  private readonly byModel: Counter<"model">;
  private readonly adapterRequests: Counter<"adapter">;
  private readonly rejected: Counter;
  private readonly abortedTotal: Counter;
  private readonly gauges: Record<string, Gauge<string>>;
  /** (time, completion tokens so far) samples for the tokens/s gauge. */
  private readonly samples: [number, number][] = [];
  promptTokens = 0;
  completionTokens = 0;

  constructor() {
    const registers = [this.registry];
    this.requests = new Counter({ name: "edgepeft_http_requests_total", help: "HTTP requests by route, method and status.", labelNames: ["route", "method", "status"], registers });
    this.latency = new Histogram({ name: "edgepeft_http_request_duration_seconds", help: "Request latency (to the last byte for streams).", labelNames: ["route"], buckets: BUCKETS, registers });
    this.prompt = new Counter({ name: "edgepeft_prompt_tokens_total", help: "Prompt tokens processed.", registers });
    this.completion = new Counter({ name: "edgepeft_completion_tokens_total", help: "Tokens generated.", registers });
    this.byModel = new Counter({ name: "edgepeft_model_completion_tokens_total", help: "Tokens generated per model (base or base:adapter).", labelNames: ["model"], registers });
    this.adapterRequests = new Counter({ name: "edgepeft_adapter_requests_total", help: "Generation requests per adapter (\"\" for the base model).", labelNames: ["adapter"], registers });
    this.rejected = new Counter({ name: "edgepeft_queue_rejections_total", help: "Requests refused with 429 because the queue was full.", registers });
    this.abortedTotal = new Counter({ name: "edgepeft_generations_aborted_total", help: "Generations stopped because the client went away.", registers });
    const gauge = (name: string, help: string, labelNames: string[] = []) => new Gauge({ name, help, labelNames, registers });
    this.gauges = {
      running: gauge("edgepeft_requests_running", "Generations running (in the batch)."),
      queued: gauge("edgepeft_requests_queued", "Generations waiting to join (queue depth)."),
      batch: gauge("edgepeft_batch_size", "Token rows of the last batched step (0 with batching off)."),
      steps: gauge("edgepeft_batch_steps", "Batched steps run so far."),
      tps: gauge("edgepeft_generated_tokens_per_second", `Tokens generated per second over the last ${RATE_WINDOW_S} s.`),
      kvUsed: gauge("edgepeft_kv_blocks_used", "Paged KV cache blocks held by running requests."),
      kvTotal: gauge("edgepeft_kv_blocks_total", "Paged KV cache blocks in the pool."),
      known: gauge("edgepeft_adapters_known", "Adapters the server can serve."),
      loaded: gauge("edgepeft_adapters_loaded", "Adapters resident on the GPU."),
      bytes: gauge("edgepeft_adapter_bytes", "GPU bytes of resident adapters."),
      loads: gauge("edgepeft_adapter_loads_total", "Adapter loads (from the store or disk): adapter cache misses."),
      hits: gauge("edgepeft_adapter_cache_hits_total", "Adapter uses that found it resident: adapter cache hits."),
      evictions: gauge("edgepeft_adapter_evictions_total", "Adapters evicted from the GPU (LRU, byte budget)."),
      gpu: gauge("edgepeft_gpu_bytes", "GPU bytes our allocator holds (pool slack included)."),
      gpuBy: gauge("edgepeft_gpu_bytes_by_category", "GPU bytes in use by category.", ["category"]),
      uptime: gauge("edgepeft_uptime_seconds", "Seconds since the server started."),
    };
  }

  countQueueFull() {
    this.rejected.inc();
  }

  countAborted() {
    this.abortedTotal.inc();
  }

  observeRequest(route: string, method: string, status: number, seconds: number) {
    this.requests.inc({ route, method, status: String(status) });
    this.latency.observe({ route }, seconds);
  }

  observeGeneration(model: string, prompt: number, completion: number, adapter?: string) {
    this.promptTokens += prompt;
    this.completionTokens += completion;
    this.prompt.inc(prompt);
    this.completion.inc(completion);
    this.byModel.inc({ model }, completion);
    this.adapterRequests.inc({ adapter: adapter ?? "" });
  }

  private tokensPerSecond(now: number): number {
    this.samples.push([now, this.completionTokens]);
    while (this.samples.length > 2 && now - this.samples[1][0] >= RATE_WINDOW_S * 1000) this.samples.shift();
    const [t0, n0] = this.samples[0];
    return now > t0 ? ((this.completionTokens - n0) * 1000) / (now - t0) : 0;
  }

  /** The exposition text for the engine's current figures. */
  async render(s: EngineStats): Promise<string> {
    const g = this.gauges, now = Date.now();
    g.running.set(s.running);
    g.queued.set(s.queued);
    g.batch.set(s.batch?.lastBatchRows ?? 0);
    g.steps.set(s.batch?.steps ?? 0);
    g.tps.set(this.tokensPerSecond(now));
    g.kvUsed.set(s.batch?.kvBlocksUsed ?? 0);
    g.kvTotal.set(s.batch?.kvBlocksTotal ?? 0);
    g.known.set(s.adaptersKnown);
    g.loaded.set(s.adaptersResident);
    g.bytes.set(s.adapterBytes);
    g.loads.set(s.adapterLoads);
    g.hits.set(s.adapterHits);
    g.evictions.set(s.adapterEvictions);
    g.gpu.set(s.gpuBytes);
    for (const [k, v] of Object.entries(s.gpuBytesByCategory)) g.gpuBy.set({ category: k }, v);
    g.uptime.set((now - this.started) / 1000);
    // One metric per block, without the blank lines between them.
    return (await this.registry.metrics()).split("\n").filter((l) => l.length).join("\n") + "\n";
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
