/**
 * The only place that knows how a GPUDevice is obtained on each runtime:
 *  - Deno: built-in `navigator.gpu` (Vulkan; lavapipe on machines without a GPU);
 *  - Bun: `bun-webgpu` (Dawn through bun:ffi), OpenGL backend over surfaceless EGL;
 *  - Node: `webgpu` (Dawn N-API), OpenGL backend;
 *  - a web page (window or worker): the browser's own `navigator.gpu`.
 * Requests the adapter's real limits so big models can bind as much as the hardware allows.
 */
import { env, platform, tmpdir } from "../util/host.ts";
import { PeftError } from "../errors.ts";

export type Runtime = "deno" | "bun" | "node" | "browser";

export function detectRuntime(): Runtime {
  const g = globalThis as Record<string, unknown> & { process?: { versions?: { node?: string } } };
  if (g.Deno) return "deno";
  if (g.Bun) return "bun";
  if (g.process?.versions?.node) return "node";
  return "browser";
}

export interface DeviceInfo {
  runtime: Runtime;
  description: string;
  features: { f16: boolean; timestamp: boolean };
  limits: {
    maxStorageBufferBindingSize: number;
    maxBufferSize: number;
    maxComputeInvocationsPerWorkgroup: number;
    maxComputeWorkgroupSizeX: number;
    maxComputeWorkgroupStorageSize: number;
    maxComputeWorkgroupsPerDimension: number;
    maxStorageBuffersPerShaderStage: number;
  };
  /** What the adapter offers (the device may have got less: see deviceWithLimits). */
  adapterLimits: Record<string, number>;
}

export interface DeviceOptions {
  powerPreference?: "low-power" | "high-performance";
  /** Ask for shader-f16 when the adapter has it (default true). */
  f16?: boolean;
  /**
   * "adapter" (default): the adapter's own limits for what our kernels use. "default": WebGPU's
   * default limits (what a device gets when the request for more fails; tests use it).
   */
  limits?: "adapter" | "default";
}

const INSTALL_HINT =
  "No WebGPU adapter was found. On a machine without a GPU install Mesa's software Vulkan driver " +
  "(Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`; for Bun/Node also `libegl1 libegl-mesa0 libgl1-mesa-dri`), " +
  "or install your GPU's Vulkan driver.";

/** What a page says when the browser has no WebGPU: which browsers have it, and the flags where it is off by default. */
export const BROWSER_WEBGPU_HINT =
  "WebGPU is on by default in Chrome and Edge 113+ (Windows, macOS, ChromeOS, Android), " +
  "Safari 26+ and Firefox 141+ on Windows. On Linux start Chrome/Chromium with --enable-unsafe-webgpu --enable-features=Vulkan " +
  "(without a GPU also --use-angle=vulkan --enable-features=Vulkan,VulkanFromANGLE for the SwiftShader software adapter), " +
  "or enable chrome://flags/#enable-unsafe-webgpu; in Firefox set dom.webgpu.enabled in about:config. " +
  "WebGPU also needs a secure page (https or http://localhost) and a GPU the browser has not blocklisted (see chrome://gpu).";

// deno-lint-ignore no-explicit-any
type AnyGpu = any;
let nodeInstance: AnyGpu = null;

async function gpuForRuntime(runtime: Runtime): Promise<{ gpu: AnyGpu; adapterOptions: Record<string, unknown> }> {
  if (runtime === "browser") {
    const g = (globalThis as AnyGpu).navigator?.gpu;
    if (!g) throw new PeftError("GPU_UNAVAILABLE", `This browser has no WebGPU (navigator.gpu is missing). ${BROWSER_WEBGPU_HINT}`);
    return { gpu: g, adapterOptions: {} };
  }
  // Mesa's Vulkan/EGL loaders complain on stderr when XDG_RUNTIME_DIR is unset (no display
  // session, e.g. CI); they need no real directory for compute.
  if (!env.XDG_RUNTIME_DIR) env.XDG_RUNTIME_DIR = tmpdir();
  if (runtime === "deno") {
    const g = (globalThis as AnyGpu).navigator?.gpu;
    if (!g) throw new PeftError("GPU_UNAVAILABLE", "navigator.gpu is missing in this Deno; use Deno >= 2 (WebGPU is built in).");
    return { gpu: g, adapterOptions: {} };
  }
  // Dawn's OpenGL backend over EGL needs no display with the surfaceless platform.
  if (env && !env.EGL_PLATFORM) env.EGL_PLATFORM = "surfaceless";
  if (runtime === "bun") {
    // Bun's process.env does not reach native getenv(), and Mesa's EGL reads EGL_PLATFORM there.
    if (env.EGL_PLATFORM === "surfaceless") await setNativeEnv("EGL_PLATFORM", "surfaceless");
    const mod = "bun-webgpu";
    const bw = await import(mod).catch((e) => {
      throw new PeftError("GPU_UNAVAILABLE", `Bun needs the npm package bun-webgpu (npm i bun-webgpu): ${e.message}`);
    });
    bw.setupGlobals();
    // Without backendType Dawn may pick its null backend, which computes nothing.
    return { gpu: (globalThis as AnyGpu).navigator.gpu, adapterOptions: { featureLevel: "compatibility", backendType: "OpenGL" } };
  }
  const mod = "webgpu";
  const wg = await import(mod).catch((e) => {
    throw new PeftError("GPU_UNAVAILABLE", `Node needs the npm package webgpu (npm i webgpu): ${e.message}`);
  });
  const create = wg.create ?? wg.default?.create;
  const globals = wg.globals ?? wg.default?.globals;
  if (globals) Object.assign(globalThis, globals);
  const backend = env?.WEBGPU_BACKEND ?? "opengl";
  // The Dawn instance must outlive every device made from it: if the GC collects it, Dawn tears
  // down under the device and the process crashes (mutex/futex errors, segfaults).
  nodeInstance ??= create([`backend=${backend}`]);
  return { gpu: nodeInstance, adapterOptions: { featureLevel: "compatibility" } };
}

/** setenv(3) through bun:ffi, so native libraries loaded later see the variable. */
async function setNativeEnv(name: string, value: string): Promise<void> {
  const ffiName = "bun:ffi";
  try {
    const ffi = await import(ffiName);
    const libc = ffi.dlopen(platform === "darwin" ? "libc.dylib" : "libc.so.6", {
      setenv: { args: [ffi.FFIType.ptr, ffi.FFIType.ptr, ffi.FFIType.i32], returns: ffi.FFIType.i32 },
    });
    const c = (s: string) => new TextEncoder().encode(s + "\0");
    libc.symbols.setenv(c(name), c(value), 0);
    libc.close();
  } catch {
    // Without it Dawn may fail to initialise EGL; the adapter error below then says what to install.
  }
}

/**
 * Limits our kernels depend on: we ask for the adapter's own values, since WebGPU's defaults are
 * lower (128 MiB bindings, 256 invocations, 8 storage buffers per stage where attention's
 * backward binds 10). A kernel that needs more than the device got fails at pipeline creation
 * with a PeftError naming it (src/gpu/gpu.ts), never silently.
 */
const LIMITS_WE_USE = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupStorageSize",
  "maxStorageBuffersPerShaderStage",
] as const;

/** Every numeric limit the adapter reports, under its own name. */
function adapterLimits(adapter: GPUAdapter): Record<string, number> {
  const out: Record<string, number> = {};
  const al = adapter.limits as unknown as Record<string, unknown>;
  for (const k in al) if (k !== "nextInChain" && typeof al[k] === "number") out[k] = al[k] as number;
  return out;
}

async function deviceWithLimits(adapter: GPUAdapter, requiredFeatures: GPUFeatureName[], limits: "adapter" | "default"): Promise<GPUDevice> {
  if (limits === "default") return await adapter.requestDevice({ requiredFeatures });
  const al = adapterLimits(adapter);
  const wanted: Record<string, number> = {};
  for (const k of LIMITS_WE_USE) if (al[k] !== undefined) wanted[k] = al[k];
  try {
    return await adapter.requestDevice({ requiredLimits: wanted, requiredFeatures });
  } catch (first) {
    try {
      // bun-webgpu 0.1.x fills every limit left out with WebGPU's default and validates it
      // against the adapter: a compatibility-mode adapter offers 0 storage buffers in vertex
      // stages, under the default 8, so any partial request fails. Asking for every limit at
      // the adapter's own value passes.
      return await adapter.requestDevice({ requiredLimits: al, requiredFeatures });
    } catch {
      // Default limits still run most kernels; those that need more fail at pipeline creation
      // with a PeftError naming the kernel and the limit.
      console.warn(`[gpu] could not request the adapter's limits (${(first as Error).message}); using WebGPU's defaults`);
      return await adapter.requestDevice({ requiredFeatures });
    }
  }
}

export async function requestDevice(options: DeviceOptions = {}): Promise<{ device: GPUDevice; info: DeviceInfo }> {
  const runtime = detectRuntime();
  const { gpu, adapterOptions } = await gpuForRuntime(runtime);
  let adapter: GPUAdapter | null = null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? "high-performance", ...adapterOptions });
  } catch (e) {
    throw new PeftError("GPU_UNAVAILABLE", `${runtime === "browser" ? BROWSER_WEBGPU_HINT : INSTALL_HINT} (${(e as Error).message})`);
  }
  if (!adapter) {
    throw new PeftError(
      "GPU_UNAVAILABLE",
      runtime === "browser" ? `WebGPU found no usable GPU (navigator.gpu.requestAdapter() returned none). ${BROWSER_WEBGPU_HINT}` : INSTALL_HINT,
    );
  }
  const features: GPUFeatureName[] = [];
  const hasF16 = adapter.features.has("shader-f16") && options.f16 !== false;
  if (hasF16) features.push("shader-f16");
  const hasTs = adapter.features.has("timestamp-query");
  if (hasTs) features.push("timestamp-query");
  const device = await deviceWithLimits(adapter, features, options.limits ?? "adapter");
  const dl = device.limits;
  const ainfo = (adapter as AnyGpu).info ?? {};
  const info: DeviceInfo = {
    runtime,
    // Browsers leave description and device empty (fingerprinting); vendor + architecture say
    // e.g. "google swiftshader".
    description: String(ainfo.description || ainfo.device || [ainfo.vendor, ainfo.architecture].filter(Boolean).join(" ") || "unknown adapter"),
    features: { f16: device.features.has("shader-f16"), timestamp: device.features.has("timestamp-query") },
    limits: {
      maxStorageBufferBindingSize: dl.maxStorageBufferBindingSize,
      maxBufferSize: dl.maxBufferSize,
      maxComputeInvocationsPerWorkgroup: dl.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: dl.maxComputeWorkgroupSizeX,
      maxComputeWorkgroupStorageSize: dl.maxComputeWorkgroupStorageSize,
      maxComputeWorkgroupsPerDimension: dl.maxComputeWorkgroupsPerDimension,
      maxStorageBuffersPerShaderStage: dl.maxStorageBuffersPerShaderStage,
    },
    adapterLimits: adapterLimits(adapter),
  };
  return { device, info };
}
