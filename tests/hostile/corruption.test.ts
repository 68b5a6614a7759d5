/**
 * Issue #17's corruption suite: hundreds of hostile GGUF files, HF safetensors directories,
 * tokenizer.json files and PEFT adapters made from the shared real files
 * (tests/hostile/corruption/variants.ts), each loaded in a child process capped in time and
 * memory (tests/hostile/corruption/child.ts). Every variant must end in a PeftError whose
 * one-line message names the file (and the key or tensor where the variant says which), or load
 * with exactly the outputs of the unmodified file. Crashes, hangs, out-of-memory, exceptions that
 * are not PeftErrors, unnamed refusals, refusals of valid files and changed outputs all fail.
 * Variants run in groups, one child per group; a group whose child dies is re-run one variant
 * per child to find the culprit.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KINDS, type Kind, type Variant, variants } from "./corruption/variants.ts";

const CHILD = new URL("./corruption/child.ts", import.meta.url).pathname;
const MIN: Record<Kind, number> = { gguf: 200, hf: 100, tokenizer: 50, adapter: 50 };
const GROUPS: Record<Kind, number> = { gguf: 4, hf: 3, tokenizer: 2, adapter: 2 };
const HEAP_MB = 1024; // V8 old space of a child
const RSS_CAP = 2 * 2 ** 30; // whole-process memory of a child (typed arrays live outside the V8 heap)
const GROUP_MS = 120_000;
const SINGLE_MS = 30_000;

interface Line {
  id: string;
  outcome: "refused" | "loaded" | "error";
  code?: string;
  name?: string;
  message?: string;
  same?: boolean;
  path: string;
}

interface Run {
  lines: Line[];
  /** Why the child did not finish its list: crash (exit code/signal), hang or oom. */
  died?: string;
}

async function rssOf(pid: number): Promise<number> {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

async function runChild(kind: Kind, ids: string[], dir: string, timeoutMs: number): Promise<Run> {
  const list = join(dir, `${kind}-${crypto.randomUUID()}.json`);
  await writeFile(list, JSON.stringify(ids));
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", `--v8-flags=--max-old-space-size=${HEAP_MB}`, CHILD, kind, list],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let killed: string | undefined;
  const kill = (why: string) => {
    if (killed) return;
    killed = why;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  };
  const timer = setTimeout(() => kill(`hang (no result within ${timeoutMs / 1000} s)`), timeoutMs);
  const watch = setInterval(async () => {
    const rss = await rssOf(child.pid);
    if (rss > RSS_CAP) kill(`oom (resident memory ${(rss / 2 ** 20).toFixed(0)} MiB over ${RSS_CAP / 2 ** 20} MiB)`);
  }, 100);
  const [out, err, status] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.status]);
  clearTimeout(timer);
  clearInterval(watch);
  const lines = out.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Line);
  if (killed) return { lines, died: killed };
  if (!status.success) {
    const oom = /out of memory|Allocation failed/i.test(err);
    const tail = err.trim().split("\n").slice(-3).join(" | ");
    return { lines, died: `${oom ? "oom" : "crash"} (exit ${status.code}${status.signal ? `, ${status.signal}` : ""}): ${tail.slice(0, 300)}` };
  }
  return { lines };
}

/** Runs `jobs` with at most `n` at once. */
async function pool<T>(jobs: (() => Promise<T>)[], n: number): Promise<T[]> {
  const out: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < jobs.length) {
      const i = next++;
      out[i] = await jobs[i]();
    }
  }));
  return out;
}

type Verdict = "refused" | "same" | "crash" | "hang" | "oom" | "exception" | "unnamed" | "refused valid file" | "changed outputs";

function verdict(v: Variant, l: Line): { verdict: Verdict; detail: string } {
  if (l.outcome === "loaded") return l.same ? { verdict: "same", detail: "" } : { verdict: "changed outputs", detail: "loaded, but its outputs differ from the original's" };
  if (l.outcome === "error") return { verdict: "exception", detail: `${l.name}: ${l.message}` };
  const msg = l.message ?? "";
  const named = msg.includes(l.path) && (v.names.length === 0 || v.names.some((x) => msg.includes(x))) && !msg.includes("\n");
  if (!named) return { verdict: "unnamed", detail: `${l.code}: ${msg} (should name ${l.path}${v.names.length ? ` and one of ${v.names.join(" | ")}` : ""})` };
  if (v.intent === "neutral") return { verdict: "refused valid file", detail: `${l.code}: ${msg}` };
  return { verdict: "refused", detail: "" };
}

Deno.test({
  name: "corruption suite: every hostile GGUF, safetensors, tokenizer.json and adapter variant is refused by name or loads unchanged",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await mkdtemp(join(tmpdir(), "corruption-suite-"));
    const t0 = performance.now();
    try {
      const byKind = new Map(KINDS.map((k) => [k, variants(k)]));
      const jobs: { kind: Kind; ids: string[] }[] = [];
      for (const [kind, list] of byKind) {
        const size = Math.ceil(list.length / GROUPS[kind]);
        for (let i = 0; i < list.length; i += size) jobs.push({ kind, ids: list.slice(i, i + size).map((v) => v.id) });
      }
      const results = new Map<string, { line?: Line; died?: string }>();
      const runs = await pool(jobs.map((j) => () => runChild(j.kind, j.ids, dir, GROUP_MS)), 2);
      const retry: { kind: Kind; id: string }[] = [];
      runs.forEach((r, i) => {
        for (const l of r.lines) results.set(l.id, { line: l });
        if (r.died) for (const id of jobs[i].ids) if (!results.has(id)) retry.push({ kind: jobs[i].kind, id });
      });
      // A dead group: each variant it did not report, alone, to find which one kills a child.
      const singles = await pool(retry.map((x) => () => runChild(x.kind, [x.id], dir, SINGLE_MS)), 2);
      singles.forEach((r, i) => results.set(retry[i].id, r.lines[0] ? { line: r.lines[0] } : { died: r.died ?? "crash (no result)" }));

      const failures: string[] = [];
      const report: string[] = [];
      for (const [kind, list] of byKind) {
        const counts: Record<string, number> = {};
        for (const v of list) {
          const r = results.get(v.id);
          let out: { verdict: Verdict; detail: string };
          if (r?.line) out = verdict(v, r.line);
          else {
            const died = r?.died ?? "crash (never reported)";
            out = { verdict: died.startsWith("hang") ? "hang" : died.startsWith("oom") ? "oom" : "crash", detail: died };
          }
          counts[out.verdict] = (counts[out.verdict] ?? 0) + 1;
          if (out.verdict !== "refused" && out.verdict !== "same") failures.push(`${v.id}: ${out.verdict}: ${out.detail}`);
        }
        const bad = list.length - (counts.refused ?? 0) - (counts.same ?? 0);
        report.push(
          `${kind.padEnd(9)} ${String(list.length).padStart(4)} variants: ${counts.refused ?? 0} refused naming file and key/tensor, ` +
            `${counts.same ?? 0} loaded with identical outputs; ${bad} failed` +
            (bad ? ` (${Object.entries(counts).filter(([k]) => k !== "refused" && k !== "same").map(([k, n]) => `${n} ${k}`).join(", ")})` : ""),
        );
        assert.ok(list.length >= MIN[kind], `${kind}: ${list.length} variants, at least ${MIN[kind]} wanted`);
      }
      const total = [...byKind.values()].reduce((n, l) => n + l.length, 0);
      console.log(`[corruption] ${total} variants in ${((performance.now() - t0) / 1000).toFixed(1)} s (${jobs.length} child processes${retry.length ? `, ${retry.length} re-run alone` : ""}):`);
      for (const line of report) console.log(`[corruption]   ${line}`);
      console.log(`[corruption]   crashes, hangs, out-of-memory, changed outputs, unnamed errors: ${failures.length}`);
      assert.deepEqual(failures, [], failures.slice(0, 20).join("\n"));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
});
