/// <reference lib="dom" />
/**
 * Drives the page (web/index.html) in a real headless Chromium through puppeteer-core, for the
 * browser test (tests/web/browser.test.ts) and bench/browser.ts. Uses Debian's `chromium`
 * (apt-get install chromium) or $CHROMIUM; never downloads a browser.
 */
import { existsSync } from "node:fs";
import puppeteer, { type Browser, type Page } from "puppeteer-core";

/**
 * Chromium's WebGPU on a machine without a GPU: ANGLE over Vulkan gives the SwiftShader adapter
 * (without the ANGLE flags requestAdapter() finds none). --no-sandbox: CI runs as root.
 */
export const WEBGPU_FLAGS = ["--enable-unsafe-webgpu", "--use-angle=vulkan", "--enable-features=Vulkan,VulkanFromANGLE"];

export function chromiumPath(): string {
  const path = Deno.env.get("CHROMIUM") ?? ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p));
  if (!path || !existsSync(path)) throw new Error("no Chromium found: apt-get install chromium (or set CHROMIUM to its path)");
  return path;
}

export async function launchChromium(o: { webgpu: boolean }): Promise<Browser> {
  return await puppeteer.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: ["--headless=new", "--no-sandbox", ...(o.webgpu ? WEBGPU_FLAGS : [])],
  });
}

/** The page's state flags: document.body.dataset.{gpu,model,train,generate,adapter,downloads}. */
type Flag = "gpu" | "model" | "train" | "generate" | "adapter" | "adapterLoad" | "downloads";

export class PageDriver {
  /** Console errors and uncaught page errors, for failure messages. */
  readonly log: string[] = [];

  private constructor(readonly page: Page) {
    page.on("console", (m) => m.type() === "error" && this.log.push(`console: ${m.text()}`));
    page.on("pageerror", (e) => this.log.push(`pageerror: ${(e as Error).message}`));
  }

  /** Opens the page and waits until WebGPU started (or failed) and the default model loaded (or failed). */
  static async open(browser: Browser, url: string): Promise<PageDriver> {
    const page = await browser.newPage();
    await page.setViewport({ width: 1200, height: 900 });
    const d = new PageDriver(page);
    await page.goto(url);
    await d.waitFor("gpu", ["ready", "unavailable"]);
    if (await d.flag("gpu") === "ready") await d.waitFor("model", ["loaded", "failed"]);
    return d;
  }

  async flag(name: Flag): Promise<string | undefined> {
    return await this.page.evaluate((n) => document.body.dataset[n], name);
  }

  /** Waits until a state flag takes one of `values`; returns it. */
  async waitFor(name: Flag, values: string[], timeoutMs = 240_000): Promise<string> {
    try {
      await this.page.waitForFunction((n, v) => v.includes(document.body.dataset[n] ?? ""), { timeout: timeoutMs, polling: 100 }, name, values);
    } catch (e) {
      throw new Error(`page: ${name} never became ${values.join("/")} (now ${await this.flag(name)}); error box: ${await this.text("error")}; ${this.log.join("; ")}`, { cause: e });
    }
    return (await this.flag(name))!;
  }

  async text(id: string): Promise<string> {
    return await this.page.$eval(`#${id}`, (e) => e.textContent ?? "");
  }

  /** The error box's text when shown, else "". */
  async error(): Promise<string> {
    return await this.page.$eval("#error", (e) => (e as HTMLElement).hidden ? "" : e.textContent ?? "");
  }

  /** Sets form fields by id (inputs, selects, the data textarea) and fires their change events. */
  async set(fields: Record<string, string>): Promise<void> {
    for (const [id, value] of Object.entries(fields)) {
      await this.page.$eval(`#${id}`, (e, v) => {
        const el = e as HTMLInputElement;
        el.value = v;
        el.dispatchEvent(new Event("input", { bubbles: true }));
        el.dispatchEvent(new Event("change", { bubbles: true }));
      }, value);
    }
  }

  /** Clicks a button once it is enabled (the page disables buttons while a job runs). */
  async click(id: string): Promise<void> {
    await this.page.waitForFunction((i) => !(document.getElementById(i) as HTMLButtonElement).disabled, { timeout: 240_000, polling: 100 }, id);
    await this.page.click(`#${id}`);
  }

  /** Does `action`, which starts a job reported by flag `name`, and waits for one of `ends` (never a stale earlier end). */
  async until(name: Flag, ends: string[], action: () => Promise<void>, timeoutMs = 240_000): Promise<string> {
    await this.page.evaluate((n) => void (document.body.dataset[n] = "started"), name);
    await action();
    return await this.waitFor(name, ends, timeoutMs);
  }

  /** Picks a model file; "loaded" or "failed". */
  async loadModel(path: string): Promise<string> {
    return await this.until("model", ["loaded", "failed"], () => this.pick("model-file", [path]));
  }

  /** Picks adapter files; "loaded" or "failed". */
  async loadAdapter(paths: string[]): Promise<string> {
    return await this.until("adapterLoad", ["loaded", "failed"], () => this.pick("adapter-files", paths));
  }

  /** Picks files in a file input (as a user's file dialog would). */
  async pick(id: string, paths: string[]): Promise<void> {
    const input = await this.page.$(`#${id}`);
    if (!input) throw new Error(`no #${id}`);
    await (input as unknown as { uploadFile(...p: string[]): Promise<void> }).uploadFile(...paths);
  }

  /** Clicks Train and waits for the run to end; returns the final flag and the page's readouts. */
  async train(timeoutMs = 240_000): Promise<{ state: string; progress: string; readout: string }> {
    const state = await this.until("train", ["done", "stopped", "failed"], () => this.click("train"), timeoutMs);
    return { state, progress: await this.text("progress"), readout: await this.text("loss-readout") };
  }

  /** Clicks Generate and waits; returns both outputs (prompt included, as shown) and their info lines. */
  async generate(): Promise<{ base: string; adapter: string; baseInfo: string; adapterInfo: string }> {
    await this.until("generate", ["done", "failed"], () => this.click("generate"));
    return {
      base: await this.text("out-base"), adapter: await this.text("out-adapter"),
      baseInfo: await this.text("out-base-info"), adapterInfo: await this.text("out-adapter-info"),
    };
  }

  /** Clicks each download link; resolves when every file is in `dir` at the size the link states. */
  async download(dir: string): Promise<string[]> {
    const cdp = await this.page.createCDPSession();
    await cdp.send("Browser.setDownloadBehavior", { behavior: "allow", downloadPath: dir });
    const links = await this.page.$$eval("#downloads a", (as) => as.map((a) => ({ name: a.getAttribute("download")!, text: a.textContent ?? "" })));
    if (!links.length) throw new Error(`no download links: ${await this.text("downloads")}`);
    for (const l of links) await this.page.click(`#downloads a[download="${l.name}"]`);
    const deadline = Date.now() + 30_000;
    for (const l of links) {
      const size = Number(/\(([\d,]+) bytes\)/.exec(l.text)![1].replaceAll(",", ""));
      while (!(existsSync(`${dir}/${l.name}`) && Deno.statSync(`${dir}/${l.name}`).size === size)) {
        if (Date.now() > deadline) throw new Error(`download of ${l.name} (${size} bytes) did not arrive in ${dir}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    return links.map((l) => l.name);
  }

  async screenshot(path: string): Promise<void> {
    await this.page.screenshot({ path: path as `${string}.png`, fullPage: true });
  }
}

/** "Loss 4.1209 → 3.6785 (…)" -> [4.1209, 3.6785]. */
export function parseLossReadout(readout: string): [number, number] {
  const m = /Loss ([\d.]+) → ([\d.]+)/.exec(readout);
  if (!m) throw new Error(`no loss readout in ${JSON.stringify(readout)}`);
  return [Number(m[1]), Number(m[2])];
}

/** "Step 10/10 · … · 1,234 tokens/s", "…, 19.4 tokens/s decoding" -> 1234, 19.4. */
export function parseTokensPerSecond(text: string): number {
  const m = /([\d,.]+) tokens\/s/.exec(text);
  if (!m) throw new Error(`no tokens/s in ${JSON.stringify(text)}`);
  return Number(m[1].replaceAll(",", ""));
}
