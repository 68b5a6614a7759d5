/**
 * Runs every benchmark (bench/*.ts, this file excepted) in turn, each in its own Deno process,
 * matmul, generate and train first, then the others in name order. Arguments are passed on
 * (e.g. --quick). Exits non-zero when any benchmark fails, after running them all.
 *
 *   node scripts/prepare.mjs && deno run -A bench/run_all.ts [--quick] [--only=generate,train]
 */
const dir = new URL(".", import.meta.url).pathname;
const first = ["matmul.ts", "generate.ts", "train.ts"];
const names: string[] = [];
for await (const e of Deno.readDir(dir)) {
  if (e.isFile && e.name.endsWith(".ts") && e.name !== "run_all.ts" && !e.name.startsWith("_")) names.push(e.name);
}
names.sort((a, b) => {
  const ia = first.indexOf(a), ib = first.indexOf(b);
  return (ia < 0 ? first.length : ia) - (ib < 0 ? first.length : ib) || a.localeCompare(b);
});
const onlyArg = Deno.args.find((a) => a.startsWith("--only="));
const only = onlyArg?.slice(7).split(",").map((s) => s.replace(/\.ts$/, ""));
const pass = Deno.args.filter((a) => a !== onlyArg);
const list = only ? names.filter((n) => only.includes(n.replace(/\.ts$/, ""))) : names;

const results: { name: string; ok: boolean; seconds: number }[] = [];
for (const name of list) {
  console.log(`\n===== bench/${name} ${pass.join(" ")}`.trimEnd() + " =====\n");
  const t0 = performance.now();
  const status = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${dir}${name}`, ...pass],
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "inherit",
    stderr: "inherit",
  }).output().then((o) => o.success, (e) => (console.error(`bench/${name}: ${e}`), false));
  results.push({ name, ok: status, seconds: (performance.now() - t0) / 1000 });
}
console.log("\n===== summary =====");
for (const r of results) console.log(`${r.ok ? "ok  " : "FAIL"} bench/${r.name} (${r.seconds.toFixed(0)} s)`);
const failed = results.filter((r) => !r.ok);
if (failed.length) {
  console.error(`${failed.length} benchmark(s) failed: ${failed.map((r) => r.name).join(", ")}`);
  Deno.exit(1);
}
