// The page's Web Worker: owns the GPU device, the model and its adapters, so training and
// generation never block the page. Messages in: {id, op, ...args}; out: {id, ok, result} or
// {id, ok: false, error: {code, message}} per request, and {event: "step", ...} while training.
import { Gpu, loadModel, train } from "./dist/edge-peft.browser.js";

/** @type {Gpu | null} */
let gpu = null;
/** @type {import("../browser.ts").Model | null} */
let model = null;
/** The adapter generation applies ("trained" after training, "loaded-N" after loading files). */
let active = null;
let loadedCount = 0;
/** @type {AbortController | null} */
let stopper = null;

const TRAINED = "trained";

async function device() {
  gpu ??= await Gpu.create();
  return gpu;
}

function adapterInfo(name) {
  const a = model.adapter(name);
  const c = a.config;
  return { name, peftType: a.peftType, label: a.method.describe(c), trainableParameters: a.trainableParameters };
}

const ops = {
  /** Creates the GPU device: fails here, at page load, when the browser has no WebGPU. */
  async init() {
    const g = await device();
    return { description: g.info.description, f16: g.info.features.f16, maxBufferSize: g.info.limits.maxBufferSize };
  },

  /** A GGUF file: a File / Blob the user picked, or a URL (the default model) fetched into a Blob. */
  async loadModel({ file, url, name }) {
    const g = await device();
    let blob = file;
    if (!blob) {
      const res = await fetch(url);
      if (!res.ok) throw Object.assign(new Error(`${url}: HTTP ${res.status} ${res.statusText}`), { code: "FETCH_FAILED" });
      blob = await res.blob();
    }
    const next = await loadModel(blob, { gpu: g, name });
    model?.close();
    model = next;
    active = null;
    const c = model.config;
    return {
      name: model.source, layers: c.nLayers, dim: c.dim, heads: c.nHeads, vocab: c.vocabSize, context: c.contextLength,
      parameters: model.baseParameters(), bytes: blob.size,
    };
  },

  /** Trains a fresh adapter ("trained") with `config` (PEFT keys) on `data` ({text, name}). */
  async train({ config, data, options }) {
    if (!model) throw Object.assign(new Error("load a model first"), { code: "NO_MODEL" });
    if (model.adapters.has(TRAINED)) {
      if (active === TRAINED) active = null;
      model.deleteAdapter(TRAINED);
    }
    model.addAdapter(TRAINED, config, options.seed ?? 0);
    stopper = new AbortController();
    const started = performance.now();
    try {
      const r = await train(model, {
        ...options,
        adapter: TRAINED,
        data,
        progress: false,
        signal: stopper.signal,
        onStep: (s) => postMessage({ event: "step", ...s, seconds: (performance.now() - started) / 1000 }),
      });
      active = TRAINED;
      return {
        steps: r.steps, totalSteps: r.totalSteps, losses: r.losses, stoppedEarly: r.stoppedEarly, seconds: (performance.now() - started) / 1000,
        peakGpuBytes: r.peakGpuBytes, adapter: adapterInfo(TRAINED),
      };
    } catch (e) {
      model.deleteAdapter(TRAINED);
      throw e;
    } finally {
      stopper = null;
    }
  },

  /** Stops training after the current step; the adapter keeps that step's weights. */
  stop() {
    stopper?.abort();
    return { stopping: stopper !== null };
  },

  /** Greedy (temperature 0) or sampled text, with the active adapter or the base model. */
  async generate({ prompt, maxTokens, temperature, withAdapter }) {
    if (!model) throw Object.assign(new Error("load a model first"), { code: "NO_MODEL" });
    if (withAdapter && !active) throw Object.assign(new Error("train or load an adapter first"), { code: "NO_ADAPTER" });
    const it = model.generateStream(prompt, { maxTokens, temperature, ...(withAdapter ? { adapter: active } : { adapters: [] }) });
    let text = "";
    for (;;) {
      const r = await it.next();
      if (r.done) {
        const s = r.value;
        return { text, tokens: s.completionTokens, decodeMs: s.decodeMs, prefillMs: s.prefillMs, adapter: withAdapter ? active : null };
      }
      text += r.value.text;
    }
  },

  /** The active adapter's PEFT files as bytes (transferred, not copied), and llama.cpp's LoRA GGUF where it has one. */
  async saveAdapter() {
    if (!active) throw Object.assign(new Error("train or load an adapter first"), { code: "NO_ADAPTER" });
    const files = await model.saveAdapter(active);
    try {
      files["adapter.gguf"] = await model.saveAdapterGguf(active);
    } catch (e) {
      if (e?.code !== "UNSUPPORTED") throw e; // DoRA and the non-LoRA methods: llama.cpp has no runtime form for them
    }
    return { files, transfer: Object.values(files).map((b) => b.buffer) };
  },

  /** Loads {"adapter_config.json": File, "adapter_model.safetensors": File} and makes it the active adapter. */
  async loadAdapter({ files }) {
    if (!model) throw Object.assign(new Error("load a model first"), { code: "NO_MODEL" });
    const name = `loaded-${++loadedCount}`;
    await model.loadAdapter(name, files);
    active = name;
    return adapterInfo(name);
  },
};

self.onmessage = async ({ data }) => {
  const { id, op, ...args } = data;
  try {
    if (!ops[op]) throw Object.assign(new Error(`unknown operation ${op}`), { code: "BAD_MESSAGE" });
    const result = await ops[op](args);
    const transfer = result?.transfer ?? [];
    if (result) delete result.transfer;
    postMessage({ id, ok: true, result }, transfer);
  } catch (e) {
    postMessage({ id, ok: false, error: { code: e?.code ?? "ERROR", message: e?.message ?? String(e) } });
  }
};
