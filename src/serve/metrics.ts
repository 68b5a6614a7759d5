/**
 * Server metrics in the Prometheus text exposition format (version 0.0.4): request counters by
 * route and status, token counters, a request latency histogram, and engine gauges (queue,
 * adapters resident, GPU bytes our allocator holds).
 */
import type { EngineStats } from "./engine.ts";

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

const esc = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');

export class Metrics {
  private requests = new Map<string, number>();
  private latency = new Map<string, { buckets: number[]; sum: number; count: number }>();
  promptTokens = 0;
  completionTokens = 0;
  private byModel = new Map<string, number>();
  rejectedQueueFull = 0;
  aborted = 0;
  readonly started = Date.now();

  observeRequest(route: string, method: string, status: number, seconds: number) {
    const key = `route="${esc(route)}",method="${method}",status="${status}"`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
    const lk = `route="${esc(route)}"`;
    let h = this.latency.get(lk);
    if (!h) this.latency.set(lk, h = { buckets: BUCKETS.map(() => 0), sum: 0, count: 0 });
    for (let i = 0; i < BUCKETS.length; i++) if (seconds <= BUCKETS[i]) h.buckets[i]++;
    h.sum += seconds;
    h.count++;
  }

  observeGeneration(model: string, prompt: number, completion: number) {
    this.promptTokens += prompt;
    this.completionTokens += completion;
    this.byModel.set(model, (this.byModel.get(model) ?? 0) + completion);
  }

  render(s: EngineStats): string {
    const out: string[] = [];
    const metric = (name: string, type: string, help: string, lines: string[]) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...lines);
    };
    metric("edgepeft_http_requests_total", "counter", "HTTP requests by route, method and status.", [...this.requests].map(([k, v]) => `edgepeft_http_requests_total{${k}} ${v}`));
    const hl: string[] = [];
    for (const [k, h] of this.latency) {
      BUCKETS.forEach((b, i) => hl.push(`edgepeft_http_request_duration_seconds_bucket{${k},le="${b}"} ${h.buckets[i]}`));
      hl.push(`edgepeft_http_request_duration_seconds_bucket{${k},le="+Inf"} ${h.count}`);
      hl.push(`edgepeft_http_request_duration_seconds_sum{${k}} ${h.sum}`);
      hl.push(`edgepeft_http_request_duration_seconds_count{${k}} ${h.count}`);
    }
    metric("edgepeft_http_request_duration_seconds", "histogram", "Request latency (to the last byte for streams).", hl);
    metric("edgepeft_prompt_tokens_total", "counter", "Prompt tokens processed.", [`edgepeft_prompt_tokens_total ${this.promptTokens}`]);
    metric("edgepeft_completion_tokens_total", "counter", "Tokens generated.", [`edgepeft_completion_tokens_total ${this.completionTokens}`]);
    metric(
      "edgepeft_model_completion_tokens_total",
      "counter",
      "Tokens generated per model (base or base:adapter).",
      [...this.byModel].map(([m, v]) => `edgepeft_model_completion_tokens_total{model="${esc(m)}"} ${v}`),
    );
    metric("edgepeft_queue_rejections_total", "counter", "Requests refused with 429 because the queue was full.", [`edgepeft_queue_rejections_total ${this.rejectedQueueFull}`]);
    metric("edgepeft_generations_aborted_total", "counter", "Generations stopped because the client went away.", [`edgepeft_generations_aborted_total ${this.aborted}`]);
    metric("edgepeft_requests_running", "gauge", "Generations running.", [`edgepeft_requests_running ${s.running}`]);
    metric("edgepeft_requests_queued", "gauge", "Generations waiting for a slot.", [`edgepeft_requests_queued ${s.queued}`]);
    metric("edgepeft_adapters_known", "gauge", "Adapters the server can serve.", [`edgepeft_adapters_known ${s.adaptersKnown}`]);
    metric("edgepeft_adapters_loaded", "gauge", "Adapters resident on the GPU.", [`edgepeft_adapters_loaded ${s.adaptersResident}`]);
    metric("edgepeft_adapter_bytes", "gauge", "GPU bytes of resident adapters.", [`edgepeft_adapter_bytes ${s.adapterBytes}`]);
    metric("edgepeft_adapter_loads_total", "counter", "Adapter loads from disk.", [`edgepeft_adapter_loads_total ${s.adapterLoads}`]);
    metric("edgepeft_adapter_evictions_total", "counter", "Adapters evicted from the GPU (LRU, byte budget).", [`edgepeft_adapter_evictions_total ${s.adapterEvictions}`]);
    metric("edgepeft_gpu_bytes", "gauge", "GPU bytes our allocator holds (pool slack included).", [`edgepeft_gpu_bytes ${s.gpuBytes}`]);
    metric(
      "edgepeft_gpu_bytes_by_category",
      "gauge",
      "GPU bytes in use by category.",
      Object.entries(s.gpuBytesByCategory).map(([k, v]) => `edgepeft_gpu_bytes_by_category{category="${esc(k)}"} ${v}`),
    );
    metric("edgepeft_uptime_seconds", "gauge", "Seconds since the server started.", [`edgepeft_uptime_seconds ${(Date.now() - this.started) / 1000}`]);
    return out.join("\n") + "\n";
  }
}
