/**
 * Child process of hostile.test.ts: uploads an adapter whose weights file is `mib` MiB (one
 * lora_A far too large for stories260K, so the server must read and validate all of it before
 * refusing it) to `url`, and prints {status, ms, message} as one JSON line.
 */
import { encodeSafetensors } from "../../src/io/safetensors.ts";

const [url, mibText, id] = Deno.args;
const floats = Math.floor((Number(mibText) * (1 << 20) - 4096) / 4 / 64) * 64;
const parts = encodeSafetensors([
  { name: "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", dtype: "F32", shape: [floats / 64, 64], data: new Float32Array(floats) },
], { format: "pt" });
const form = new FormData();
form.set("id", id);
form.set("adapter_config.json", JSON.stringify({ peft_type: "LORA", r: 4, lora_alpha: 8, target_modules: ["q_proj"] }));
form.set("adapter_model.safetensors", new Blob(parts as BlobPart[]), "adapter_model.safetensors");
const t0 = performance.now();
const r = await fetch(`${url}/v1/adapters`, { method: "POST", body: form });
const j = await r.json();
console.log(JSON.stringify({ status: r.status, ms: performance.now() - t0, message: j.error?.message ?? "" }));
