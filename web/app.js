// The page: reads the form, talks to the worker (worker.js owns the GPU and the model), shows
// progress, the loss chart (drawn by the library's own lossCurveSvg, as loss.svg is), outputs,
// downloads and errors. State for people and tests: document.body.dataset.{gpu,model,train,generate,
// adapter,adapterLoad,downloads}.
import { formatDuration, formatThousands, lossCurveSvg } from "./dist/edge-peft.browser.js";

const $ = (id) => document.getElementById(id);
const state = document.body.dataset;

// ------------------------------------------------------------------ worker calls

const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
const pending = new Map();
let nextId = 0;
let onStep = () => {};

worker.onmessage = ({ data }) => {
  if (data.event === "step") return onStep(data);
  const p = pending.get(data.id);
  pending.delete(data.id);
  if (data.ok) p.resolve(data.result);
  else p.reject(Object.assign(new Error(data.error.message), { code: data.error.code }));
};
worker.onerror = (e) => showError("The worker failed", { code: "WORKER", message: e.message || "the worker script could not run" });

function call(op, args = {}, transfer = []) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    worker.postMessage({ id, op, ...args }, transfer);
  });
}

// ------------------------------------------------------------------ errors

const HEADINGS = {
  GPU_UNAVAILABLE: "WebGPU is not available",
  GGUF_BAD_MAGIC: "This file is not a GGUF model",
  GPU_BUDGET_EXCEEDED: "This run does not fit the GPU memory budget",
};

function showError(context, e) {
  const code = e.code ?? "ERROR";
  const heading = HEADINGS[code] ?? (code.startsWith("GGUF_") ? "This GGUF file cannot be used" : context);
  const box = $("error");
  box.textContent = `${heading}. ${e.message}`;
  box.dataset.code = code;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

// ------------------------------------------------------------------ drop zones

// A file dropped outside a zone must not navigate away from the page.
for (const ev of ["dragover", "drop"]) document.addEventListener(ev, (e) => e.preventDefault());

function dropZone(zone, onFiles) {
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer?.files.length) onFiles([...e.dataTransfer.files]);
  });
}

// ------------------------------------------------------------------ model

let modelName = "";

async function loadModelFrom(args) {
  clearError();
  state.model = "loading";
  setBusy(true);
  $("model-info").textContent = `Loading ${args.file?.name ?? args.name}…`;
  try {
    const m = await call("loadModel", args);
    modelName = m.name;
    $("model-info").textContent = `${m.name}: ${formatThousands(m.parameters)} parameters, ${m.layers} layers, dim ${m.dim}, ` +
      `${m.heads} heads, vocabulary ${formatThousands(m.vocab)}, context ${m.context} (${(m.bytes / 2 ** 20).toFixed(1)} MiB)`;
    state.model = "loaded";
    state.adapter = "none";
    $("adapter-info").textContent = "No adapter yet.";
    $("downloads").textContent = "train or load an adapter first";
  } catch (e) {
    state.model = "failed";
    $("model-info").textContent = modelName ? `Still using ${modelName}.` : "No model loaded.";
    showError("Could not load the model", e);
  } finally {
    setBusy(false);
  }
}

$("model-file").addEventListener("change", (e) => e.target.files[0] && loadModelFrom({ file: e.target.files[0] }));
dropZone($("model-drop"), (files) => loadModelFrom({ file: files[0] }));
$("model-default").addEventListener("click", () => loadModelFrom({ url: "models/stories260K.gguf", name: "stories260K.gguf" }));

// ------------------------------------------------------------------ data

let dataName = "";

function setData(text, name) {
  $("data").value = text;
  dataName = name;
  $("data-info").textContent = `${name}: ${formatThousands(text.length)} characters`;
}

async function readDataFile(file) {
  try {
    setData(await file.text(), file.name);
  } catch (e) {
    showError(`Could not read ${file.name}`, e);
  }
}

$("data-file").addEventListener("change", (e) => e.target.files[0] && readDataFile(e.target.files[0]));
dropZone($("data-drop"), (files) => readDataFile(files[0]));
$("data").addEventListener("input", () => {
  dataName = "";
  $("data-info").textContent = "";
});
$("data-sample").addEventListener("click", async () => {
  const res = await fetch("data/tinyshakespeare.txt");
  if (!res.ok) return showError("Could not fetch the sample", { code: "FETCH_FAILED", message: `HTTP ${res.status}` });
  setData((await res.text()).slice(0, 6000), "tinyshakespeare.txt (first 6,000 characters)");
});

/** The data as train() takes it: the name decides the format when "auto" (a .jsonl name means JSONL). */
function trainingData() {
  const format = $("format").value;
  const text = $("data").value;
  const looksJsonl = text.trimStart().startsWith("{");
  const name = format === "jsonl" || (format === "auto" && looksJsonl && !dataName) ? "pasted.jsonl" : (dataName || "pasted text");
  return { data: { text, name }, format: format === "auto" ? "auto" : format };
}

// ------------------------------------------------------------------ settings

const METHOD_TARGETS = {
  LORA: "q_proj,v_proj", DORA: "q_proj,v_proj", IA3: "k_proj,v_proj,down_proj", LN_TUNING: "", BITFIT: "all-linear", PARTIAL: "",
};
/** Methods that adapt every layer (no target modules); the first four learn virtual tokens. */
const VIRTUAL_TOKEN_METHODS = ["PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "MAM"];

$("method").addEventListener("change", () => {
  const m = $("method").value;
  const targeted = m in METHOD_TARGETS;
  $("targets").value = targeted ? METHOD_TARGETS[m] : "";
  $("targets").placeholder = targeted ? "the method's default" : "every layer";
  $("targets").disabled = !targeted;
  for (const id of ["r", "alpha"]) $(id).disabled = m !== "LORA" && m !== "DORA";
  $("virtual-tokens").disabled = !VIRTUAL_TOKEN_METHODS.includes(m);
});

const num = (id) => ($(id).value.trim() === "" ? undefined : Number($(id).value));

/** The adapter config, with PEFT's keys, for the chosen method. */
function adapterConfig() {
  const method = $("method").value;
  const list = $("targets").value.split(",").map((s) => s.trim()).filter(Boolean);
  const targets = list.length === 1 && (list[0] === "all-linear" || list[0] === "all") ? list[0] : list.length ? list : undefined;
  const withTargets = (c) => (targets === undefined ? c : { ...c, target_modules: targets });
  switch (method) {
    case "LORA":
    case "DORA":
      return withTargets({ peft_type: "LORA", r: num("r"), lora_alpha: num("alpha"), lora_dropout: 0, use_dora: method === "DORA" });
    case "IA3":
      // PEFT's (IA)³ scales the input of feed-forward modules (down_proj for llama), the output of the others.
      return withTargets({ peft_type: "IA3", ...(Array.isArray(targets) ? { feedforward_modules: targets.filter((t) => t === "down_proj") } : {}) });
    case "PROMPT_TUNING":
    case "P_TUNING":
    case "PREFIX_TUNING":
      return { peft_type: method, num_virtual_tokens: num("virtual-tokens") };
    case "BOTTLENECK":
      return { peft_type: "BOTTLENECK", config: "seq_bn" };
    case "MAM":
      // He et al.'s mix-and-match adapter, as the CLI's --peft-type mam: prefix tuning + a parallel bottleneck adapter.
      return {
        peft_type: "HYBRID",
        components: { prefix: { peft_type: "PREFIX_TUNING", num_virtual_tokens: num("virtual-tokens") }, adapter: { peft_type: "BOTTLENECK", config: "par_bn" } },
      };
    default:
      return withTargets({ peft_type: method });
  }
}

// ------------------------------------------------------------------ training

let losses = [];
let lastStep = null;

function drawChart(title) {
  $("chart").innerHTML = lossCurveSvg(losses.map((loss, i) => ({ step: i + 1, loss })), { title, width: 760, height: 300 });
}

function lossReadout(done, total) {
  if (!losses.length) return "";
  const first = losses[0], last = losses[losses.length - 1];
  const change = ((last - first) / first) * 100;
  return `Loss ${first.toFixed(4)} → ${last.toFixed(4)} (${change <= 0 ? "−" : "+"}${Math.abs(change).toFixed(1)}%) after ${done} of ${total} steps`;
}

$("train").addEventListener("click", async () => {
  clearError();
  const { data, format } = trainingData();
  const budget = num("budget");
  const options = {
    maxSteps: num("steps"), learningRate: num("lr"), seqLen: num("seq-len"), batchSize: num("batch-size"), seed: num("seed") ?? 0, format,
    ...(budget !== undefined ? { gpuMemoryBudget: Math.round(budget * 2 ** 20) } : {}),
  };
  const config = adapterConfig();
  const title = `${$("method").selectedOptions[0].textContent} fine-tune of ${modelName}`;
  losses = [];
  lastStep = null;
  $("chart").innerHTML = "";
  $("loss-readout").textContent = "";
  $("progress").textContent = "Preparing (tokenizing, planning GPU memory, compiling kernels)…";
  state.train = "running";
  setBusy(true, { training: true });
  onStep = (s) => {
    losses.push(s.loss);
    lastStep = s;
    $("progress").textContent = `Step ${s.step}/${s.totalSteps} · loss ${s.loss.toFixed(4)} · ` +
      `${formatThousands(s.tokensPerSecond)} tokens/s · ETA ${formatDuration(s.etaSeconds)}`;
    $("loss-readout").textContent = lossReadout(s.step, s.totalSteps);
    drawChart(title);
  };
  try {
    const r = await call("train", { config, data, options });
    state.train = r.stoppedEarly ? "stopped" : "done";
    const speed = lastStep ? `, ${formatThousands(lastStep.tokensPerSecond)} tokens/s` : "";
    $("progress").textContent = r.stoppedEarly
      ? `Stopped at step ${r.steps} of ${r.totalSteps} after ${formatDuration(r.seconds)}${speed}; the adapter keeps step ${r.steps}'s weights.`
      : `Done: ${r.steps} steps in ${formatDuration(r.seconds)}${speed}.`;
    await adapterReady(r.adapter, "trained here");
  } catch (e) {
    state.train = "failed";
    $("progress").textContent = "Training did not run.";
    showError("Training failed", e);
  } finally {
    onStep = () => {};
    setBusy(false);
  }
});

$("stop").addEventListener("click", () => {
  $("progress").textContent += " · stopping after this step…";
  call("stop");
});

// ------------------------------------------------------------------ adapter files

/** Shows the active adapter and its download links; the adapter flag turns "ready" once both are there. */
async function adapterReady(info, how) {
  $("adapter-info").textContent = `Active adapter: ${info.label}; ${formatThousands(info.trainableParameters)} parameters (${how}).`;
  const { files } = await call("saveAdapter");
  const links = $("downloads");
  for (const a of links.querySelectorAll("a")) URL.revokeObjectURL(a.href);
  links.textContent = "";
  for (const [name, bytes] of Object.entries(files)) {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([bytes], { type: name.endsWith(".json") ? "application/json" : "application/octet-stream" }));
    a.download = name;
    a.textContent = `${name} (${formatThousands(bytes.byteLength)} bytes)`;
    links.append(a);
  }
  state.downloads = "ready";
  state.adapter = "ready";
}

async function loadAdapterFiles(list) {
  clearError();
  const config = list.find((f) => f.name.endsWith(".json"));
  const weights = list.find((f) => f.name.endsWith(".safetensors"));
  if (!config || !weights) {
    state.adapterLoad = "failed";
    return showError("Could not load the adapter", {
      code: "ADAPTER_NOT_FOUND",
      message: `pick both adapter_config.json and adapter_model.safetensors (a bottleneck adapter: adapter.safetensors) (got ${list.map((f) => f.name).join(", ") || "nothing"})`,
    });
  }
  setBusy(true);
  state.adapterLoad = "loading";
  try {
    const info = await call("loadAdapter", { files: { "adapter_config.json": config, "adapter_model.safetensors": weights } });
    await adapterReady(info, `loaded from ${config.name} + ${weights.name}`);
    state.adapterLoad = "loaded";
  } catch (e) {
    state.adapterLoad = "failed";
    showError("Could not load the adapter", e);
  } finally {
    setBusy(false);
  }
}

$("adapter-files").addEventListener("change", (e) => loadAdapterFiles([...e.target.files]));
dropZone($("adapter-drop"), loadAdapterFiles);

// ------------------------------------------------------------------ generation

async function generateInto(which, withAdapter) {
  const out = $(`out-${which}`), info = $(`out-${which}-info`);
  out.textContent = "…";
  info.textContent = "";
  const r = await call("generate", { prompt: $("prompt").value, maxTokens: num("max-tokens"), temperature: num("temperature") ?? 0, withAdapter });
  out.textContent = $("prompt").value + r.text;
  const tps = r.decodeMs > 0 ? (r.tokens / r.decodeMs) * 1000 : 0;
  info.textContent = `${r.tokens} tokens, ${tps.toFixed(1)} tokens/s decoding${r.adapter ? ` (adapter ${r.adapter})` : ""}`;
  out.dataset.tokensPerSecond = String(tps);
}

$("generate").addEventListener("click", async () => {
  clearError();
  state.generate = "running";
  setBusy(true);
  try {
    await generateInto("base", false);
    if (state.adapter === "ready") await generateInto("adapter", true);
    else $("out-adapter").textContent = "(train or load an adapter first)";
    state.generate = "done";
  } catch (e) {
    state.generate = "failed";
    showError("Generation failed", e);
  } finally {
    setBusy(false);
  }
});

// ------------------------------------------------------------------ start

/** Buttons that need a model wait for one and for the running job; Stop works only while training. */
function setBusy(busy, o = {}) {
  const ready = state.model === "loaded" && !busy;
  $("train").disabled = $("generate").disabled = $("adapter-files").disabled = !ready;
  $("model-default").disabled = $("model-file").disabled = busy;
  $("stop").disabled = !o.training;
}

async function start() {
  state.gpu = "starting";
  setBusy(true);
  try {
    const d = await call("init");
    state.gpu = "ready";
    $("device").textContent = `WebGPU: ${d.description}${d.f16 ? " (shader-f16)" : ""}`;
  } catch (e) {
    state.gpu = "unavailable";
    $("device").textContent = "WebGPU: not available";
    showError("WebGPU is not available", e);
    for (const el of document.querySelectorAll("button, input, select, textarea")) el.disabled = true;
    return;
  }
  await loadModelFrom({ url: "models/stories260K.gguf", name: "stories260K.gguf" });
}

start();
