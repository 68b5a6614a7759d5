/**
 * The `serve` command as users start it: from source under Deno, and as the single Bun binary
 * (node scripts/compile.mjs bun) run from an empty directory, over real HTTP on 127.0.0.1.
 * Each answers greedy requests (base and an adapter from --adapters) exactly as the in-process
 * model does, streams, enforces the API key, and exits 0 after finishing an in-flight stream on SIGTERM.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { assertTrainingLearns } from "../runtimes/train_check.ts";
import { STORIES } from "../helpers.ts";
import { fixture, MAX_TOKENS, PROMPTS, sseData } from "./fixture.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const KEY = "cli-test-key-123";
const opts = { sanitizeOps: false, sanitizeResources: false };

interface Proc {
  child: Deno.ChildProcess;
  url: string;
  stderr: () => string;
  exit: Promise<string>;
}

async function startServe(cmd: string, args: string[], cwd: string): Promise<Proc> {
  const child = new Deno.Command(cmd, {
    args,
    cwd,
    env: { ...process.env, EGL_PLATFORM: "surfaceless", EDGE_PEFT_API_KEY: KEY },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let err = "";
  const exit = child.status.then((s) => `code ${s.code} signal ${s.signal}`);
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let url: string | undefined;
  const deadline = Date.now() + 120_000;
  while (!url && Date.now() < deadline) {
    const { done, value } = await reader.read();
    if (done) break;
    err += value;
    url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(err)?.[1];
  }
  if (!url) {
    child.kill("SIGKILL");
    throw new Error(`server did not start: ${err}`);
  }
  (async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      err += value;
    }
  })();
  return { child, url, stderr: () => err, exit };
}

async function exercise(p: Proc) {
  const f = await fixture();
  const auth = { authorization: `Bearer ${KEY}`, "content-type": "application/json" };
  assert.equal((await fetch(`${p.url}/health`)).status, 200);
  assert.equal((await fetch(`${p.url}/v1/models`)).status, 401);
  const models = await (await fetch(`${p.url}/v1/models`, { headers: auth })).json();
  assert.deepEqual(models.data.map((m: { id: string }) => m.id), ["stories260K", "stories260K:alpha", "stories260K:beta"]);
  const jobs = PROMPTS.slice(0, 3).flatMap((prompt) => ["base", "alpha", "beta"].map((m) => ({ prompt, m })));
  const got = await Promise.all(jobs.map(async ({ prompt, m }) => {
    const r = await fetch(`${p.url}/v1/completions`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ model: m === "base" ? "stories260K" : `stories260K:${m}`, prompt, max_tokens: MAX_TOKENS, temperature: 0 }),
    });
    assert.equal(r.status, 200);
    return (await r.json()).choices[0].text;
  }));
  jobs.forEach((j, i) => assert.equal(got[i], f.expected[j.m][j.prompt], `${j.m} ${j.prompt}`));
  // SIGTERM while a stream is in flight: it still completes, then the process exits 0.
  const r = await fetch(`${p.url}/v1/completions`, {
    method: "POST",
    headers: auth,
    body: JSON.stringify({ model: "stories260K:beta", prompt: PROMPTS[0], max_tokens: MAX_TOKENS, temperature: 0, stream: true }),
  });
  const reader = r.body!.getReader();
  let text = new TextDecoder().decode((await reader.read()).value);
  p.child.kill("SIGTERM");
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  const data = sseData(text);
  assert.equal(data.at(-1), "[DONE]");
  assert.equal(data.slice(0, -1).map((d) => JSON.parse(d).choices[0].text).join(""), f.expected.beta[PROMPTS[0]]);
  assert.equal(await p.exit, "code 0 signal null", p.stderr());
  assert.match(p.stderr(), /stopped/);
}

Deno.test("serve from source under Deno: greedy answers, auth, graceful SIGTERM", opts, async () => {
  const f = await fixture();
  const deno = join(root, "node_modules/.bin/deno");
  const p = await startServe(deno, ["run", "-A", "src/cli/bin.ts", "serve", "--model", STORIES, "--adapters", f.adaptersDir, "--port", "0"], root);
  await exercise(p);
});

Deno.test("single Bun binary (Dawn embedded) run from an empty directory serves the same answers", opts, async () => {
  const f = await fixture();
  // Built straight into a temporary directory (and removed), so tests leave no 130 MB dist/edge-peft.
  const dir = await mkdtemp(join(tmpdir(), "serve-bin-"));
  try {
    const bin = join(dir, "edge-peft");
    execFileSync("node", ["scripts/compile.mjs", "bun", "--out", bin], { cwd: root, stdio: "inherit" });
    const p = await startServe(bin, ["serve", "--model", STORIES, "--adapters", f.adaptersDir, "--port", "0"], dir);
    await exercise(p);
    await assertTrainingLearns("bun-binary", bin, [], dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
    (await fixture()).model.close();
  }
});
