/**
 * A shared adapter store on S3-compatible storage (S3, R2, MinIO), so several stateless server
 * replicas serve the same adapters: upload through one, use at once through another.
 *
 * Layout under s3://bucket/prefix/: <id>/adapter_config.json, <id>/adapter_model.safetensors and,
 * written last, <id>/manifest.json with both files' sizes and SHA-256. The manifest is the atomic
 * publish: an adapter without one (an upload in progress, or one that failed half-way) is never
 * listed or served, and a file whose bytes do not match the manifest (a corrupt or tampered
 * object) is refused with ADAPTER_STORE_CORRUPT. Fetched adapters live in a local cache directory
 * within a byte budget (least recently used ones are removed); the server validates every one
 * against the base model before use, exactly as an upload.
 *
 * Requests are signed by aws4fetch (SigV4); credentials and endpoint come from the usual
 * variables: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION (default
 * us-east-1), AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (path-style URLs then, as MinIO and R2 need).
 */
import { AwsClient } from "aws4fetch";
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PeftError } from "../errors.ts";

export const STORE_FILES = ["adapter_config.json", "adapter_model.safetensors"] as const;

export interface StoreManifest {
  id: string;
  files: Record<string, { bytes: number; sha256: string }>;
  created: string;
}

export interface S3StoreOptions {
  /** "s3://bucket/prefix". */
  url: string;
  /** Local cache of fetched adapters. */
  cacheDir: string;
  /** Bytes the cache may hold (default 1 GiB). */
  cacheBytes?: number;
  /** Environment to read AWS_* from (default the process's). */
  env?: Record<string, string | undefined>;
  /** Milliseconds before a store request is abandoned (default 10000). */
  timeoutMs?: number;
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", bytes as BufferSource);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

const unavailable = (what: string, e: unknown) =>
  new PeftError("ADAPTER_STORE_UNAVAILABLE", `the adapter store cannot be reached (${what}: ${e instanceof Error ? e.message : String(e)})`, { cause: e });

export class S3AdapterStore {
  readonly bucket: string;
  readonly prefix: string;
  private readonly client: AwsClient;
  private readonly endpoint: string;
  private readonly pathStyle: boolean;
  private readonly cacheBytes: number;
  private readonly timeoutMs: number;
  /** Cached adapter directories by id, most recently used last. */
  private readonly cache = new Map<string, { dir: string; bytes: number; sha: string }>();

  constructor(readonly o: S3StoreOptions) {
    const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(o.url);
    if (!m) throw new PeftError("BAD_PARAMETER", `adapter store ${JSON.stringify(o.url)}: expected s3://bucket/prefix`);
    this.bucket = m[1];
    this.prefix = (m[2] ?? "").replace(/\/+$/, "");
    const env = o.env ?? (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {};
    const accessKeyId = env.AWS_ACCESS_KEY_ID, secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
    if (!accessKeyId || !secretAccessKey) throw new PeftError("BAD_PARAMETER", `adapter store ${o.url}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`);
    const region = env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? "us-east-1";
    const custom = env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
    this.pathStyle = !!custom;
    this.endpoint = (custom ?? `https://s3.${region}.amazonaws.com`).replace(/\/+$/, "");
    this.client = new AwsClient({ accessKeyId, secretAccessKey, sessionToken: env.AWS_SESSION_TOKEN, region, service: "s3" });
    this.cacheBytes = o.cacheBytes ?? 2 ** 30;
    this.timeoutMs = o.timeoutMs ?? 10_000;
  }

  get description(): string {
    return `s3://${this.bucket}/${this.prefix}`;
  }

  private url(key: string, query = ""): string {
    const path = key.split("/").map(encodeURIComponent).join("/");
    const base = this.pathStyle ? `${this.endpoint}/${this.bucket}` : this.endpoint.replace("://", `://${this.bucket}.`);
    return `${base}/${path}${query}`;
  }

  private key(id: string, file: string): string {
    return `${this.prefix ? this.prefix + "/" : ""}${id}/${file}`;
  }

  private async request(method: string, url: string, body?: Uint8Array | string): Promise<Response> {
    try {
      return await this.client.fetch(url, { method, body: body as BodyInit | undefined, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (e) {
      throw unavailable(`${method} ${url}`, e);
    }
  }

  private async ok(r: Response, what: string): Promise<Response> {
    if (r.ok) return r;
    const text = (await r.text().catch(() => "")).slice(0, 300);
    if (r.status >= 500 || r.status === 403 || r.status === 401) throw unavailable(what, new Error(`HTTP ${r.status} ${text}`));
    throw new PeftError("ADAPTER_STORE_ERROR", `adapter store: ${what} failed: HTTP ${r.status} ${text}`);
  }

  /** Throws ADAPTER_STORE_UNAVAILABLE unless the bucket answers. */
  async ping(): Promise<void> {
    const r = await this.request("HEAD", this.url(""));
    if (r.status === 404) throw new PeftError("ADAPTER_STORE_UNAVAILABLE", `the adapter store's bucket ${this.bucket} does not exist`);
    await this.ok(r, "head bucket");
  }

  /** Published adapter ids (those with a manifest). */
  async list(): Promise<string[]> {
    const ids: string[] = [];
    let token = "";
    const prefix = this.prefix ? this.prefix + "/" : "";
    do {
      const q = `?list-type=2&prefix=${encodeURIComponent(prefix)}${token ? `&continuation-token=${encodeURIComponent(token)}` : ""}`;
      const xml = await (await this.ok(await this.request("GET", this.url("", q)), "list")).text();
      for (const m of xml.matchAll(/<Key>([^<]*)<\/Key>/g)) {
        const key = decodeXml(m[1]).slice(prefix.length);
        const parts = key.split("/");
        if (parts.length === 2 && parts[1] === "manifest.json") ids.push(parts[0]);
      }
      token = /<IsTruncated>true<\/IsTruncated>/.test(xml) ? decodeXml(/<NextContinuationToken>([^<]*)<\/NextContinuationToken>/.exec(xml)?.[1] ?? "") : "";
    } while (token);
    return ids.sort();
  }

  /** The manifest of a published adapter, or null when there is none. */
  async manifest(id: string): Promise<StoreManifest | null> {
    const r = await this.request("GET", this.url(this.key(id, "manifest.json")));
    if (r.status === 404) return null;
    const text = await (await this.ok(r, `get ${id}/manifest.json`)).text();
    try {
      const m = JSON.parse(text) as StoreManifest;
      if (m.id !== id || !STORE_FILES.every((f) => typeof m.files?.[f]?.sha256 === "string")) throw new Error("fields missing");
      return m;
    } catch (e) {
      throw new PeftError("ADAPTER_STORE_CORRUPT", `adapter store: ${this.description}/${id}/manifest.json is not a valid manifest (${(e as Error).message})`);
    }
  }

  /**
   * Publishes an adapter directory's files under `id`: the files first, the manifest last (a
   * reader never sees a half-written adapter). Refuses an id that is already published.
   */
  async put(id: string, dir: string): Promise<StoreManifest> {
    if (await this.manifest(id)) throw new PeftError("ADAPTER_EXISTS", `an adapter named ${id} already exists in the store`);
    const files: StoreManifest["files"] = {};
    for (const f of STORE_FILES) {
      const bytes = await readFile(join(dir, f));
      await this.ok(await this.request("PUT", this.url(this.key(id, f)), bytes), `put ${id}/${f}`);
      files[f] = { bytes: bytes.byteLength, sha256: await sha256(bytes) };
    }
    const m: StoreManifest = { id, files, created: new Date().toISOString() };
    await this.ok(await this.request("PUT", this.url(this.key(id, "manifest.json")), JSON.stringify(m)), `put ${id}/manifest.json`);
    return m;
  }

  /** Unpublishes (the manifest first) and removes the files. */
  async delete(id: string): Promise<void> {
    for (const f of ["manifest.json", ...STORE_FILES]) {
      const r = await this.request("DELETE", this.url(this.key(id, f)));
      if (r.status !== 404) await this.ok(r, `delete ${id}/${f}`);
    }
    await this.evict(id);
  }

  /**
   * A local directory holding adapter `id` as published: from the cache when its manifest's
   * hashes still match, else downloaded, every file checked against the manifest.
   */
  async fetch(id: string): Promise<string> {
    let m: StoreManifest | null;
    try {
      m = await this.manifest(id);
    } catch (e) {
      // The store is down: an adapter already in the local cache keeps serving.
      const hit = this.cache.get(id);
      if (hit && e instanceof PeftError && e.code === "ADAPTER_STORE_UNAVAILABLE") return hit.dir;
      throw e;
    }
    if (!m) throw new PeftError("UNKNOWN_ADAPTER", `no adapter named ${id} in the store ${this.description}`);
    const sha = STORE_FILES.map((f) => m.files[f].sha256).join("");
    const hit = this.cache.get(id);
    if (hit && hit.sha === sha) {
      this.cache.delete(id);
      this.cache.set(id, hit);
      return hit.dir;
    }
    const dir = join(this.o.cacheDir, `${id}-${sha.slice(0, 16)}`);
    const staging = `${dir}.partial-${crypto.randomUUID().slice(0, 8)}`;
    await mkdir(staging, { recursive: true });
    let bytes = 0;
    try {
      for (const f of STORE_FILES) {
        const r = await this.ok(await this.request("GET", this.url(this.key(id, f))), `get ${id}/${f}`);
        const data = new Uint8Array(await r.arrayBuffer());
        const want = m.files[f];
        if (data.byteLength !== want.bytes || (await sha256(data)) !== want.sha256) {
          throw new PeftError(
            "ADAPTER_STORE_CORRUPT",
            `adapter store: ${this.description}/${id}/${f} does not match its manifest (${data.byteLength} bytes, expected ${want.bytes} with SHA-256 ${want.sha256.slice(0, 12)}…); the adapter is not served`,
          );
        }
        await writeFile(join(staging, f), data);
        bytes += data.byteLength;
      }
      await rm(dir, { recursive: true, force: true });
      await rename(staging, dir);
    } catch (e) {
      await rm(staging, { recursive: true, force: true });
      throw e;
    }
    if (hit) await rm(hit.dir, { recursive: true, force: true });
    this.cache.delete(id);
    this.cache.set(id, { dir, bytes, sha });
    await this.trim(id);
    return dir;
  }

  /** Bytes of the cached adapters. */
  cachedBytes(): number {
    let n = 0;
    for (const c of this.cache.values()) n += c.bytes;
    return n;
  }

  isCached(id: string): boolean {
    return this.cache.has(id);
  }

  private async evict(id: string) {
    const c = this.cache.get(id);
    if (!c) return;
    this.cache.delete(id);
    await rm(c.dir, { recursive: true, force: true });
  }

  /** Removes least recently used cache entries (never `keep`) while over the byte budget. */
  private async trim(keep: string) {
    for (const id of [...this.cache.keys()]) {
      if (this.cachedBytes() <= this.cacheBytes) return;
      if (id !== keep) await this.evict(id);
    }
  }

  /** Drops leftovers of interrupted downloads in the cache directory. */
  async cleanCache(): Promise<void> {
    await mkdir(this.o.cacheDir, { recursive: true });
    for (const name of await readdir(this.o.cacheDir)) {
      if (name.includes(".partial-") && (await stat(join(this.o.cacheDir, name))).isDirectory()) await rm(join(this.o.cacheDir, name), { recursive: true, force: true });
    }
  }
}

function decodeXml(s: string): string {
  return s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, "&");
}
