/** The flag layer: values that start with "-", typed values, nearest-flag suggestions, help text from the table. */
import assert from "node:assert/strict";
import { PeftError } from "../../src/errors.ts";
import { type Command, editDistance, helpText, parseFlags } from "../../src/cli/flags.ts";

const CMD = {
  name: "try",
  summary: "a test command",
  usage: "[flags]",
  flags: {
    offset: { type: "number", description: "any number" },
    count: { type: "int", default: 3, min: 1, units: "items", description: "how many" },
    mode: { type: "string", choices: ["a", "b"], default: "a", description: "the mode" },
    name: { type: "string", required: true, description: "a name", aliases: ["title"] },
    budget: { type: "bytes", description: "a size" },
    verbose: { type: "boolean", description: "say more" },
  },
} as const satisfies Command;

const usage = (re: RegExp) => (e: unknown) => e instanceof PeftError && e.code === "USAGE" && re.test(e.message);

Deno.test("parseFlags: typed values, defaults, negative numbers and values starting with a dash", () => {
  const r = parseFlags(CMD, ["--offset", "-1e-3", "--name", "-x", "--budget", "512MiB", "--verbose"])!;
  assert.deepEqual(r.values, { offset: -1e-3, count: 3, mode: "a", name: "-x", budget: 512 * 2 ** 20, verbose: true });
  const s = parseFlags(CMD, ["--name=n", "--offset=-2", "--count", "7", "--mode", "b"])!;
  assert.deepEqual(s.values, { offset: -2, count: 7, mode: "b", name: "n", verbose: false });
  assert.equal(parseFlags(CMD, ["--name", "n", "--count", "2", "--count", "5"])!.values.count, 5, "the last repeat wins");
});

Deno.test("parseFlags: every mistake is one USAGE error that says what to do", () => {
  assert.throws(() => parseFlags(CMD, ["--nmae", "x"]), usage(/^unknown flag --nmae \(did you mean --name\?\)$/));
  assert.throws(() => parseFlags(CMD, ["--title", "x"]), usage(/did you mean --name\?/), "an alias from another tool");
  assert.throws(() => parseFlags(CMD, ["--zzzzzzzz"]), usage(/^unknown flag --zzzzzzzz; see try --help$/));
  assert.throws(() => parseFlags(CMD, ["-n", "x"]), usage(/^unknown flag -n/));
  assert.throws(() => parseFlags(CMD, ["--constructor"]), usage(/unknown flag --constructor/), "no prototype keys");
  assert.throws(() => parseFlags(CMD, ["--count", "3"]), usage(/^--name is required/));
  assert.throws(() => parseFlags(CMD, ["--name"]), usage(/^--name needs a value/));
  assert.throws(() => parseFlags(CMD, ["--name", "x", "--count", "2.5"]), usage(/--count must be a whole number, got 2\.5/));
  assert.throws(() => parseFlags(CMD, ["--name", "x", "--count", "0"]), usage(/--count must be >= 1, got 0/));
  assert.throws(() => parseFlags(CMD, ["--name", "x", "--offset", "1O"]), usage(/--offset must be a number, got "1O"/));
  assert.throws(() => parseFlags(CMD, ["--name", "x", "--offset", ""]), usage(/--offset must be a number/));
  assert.throws(() => parseFlags(CMD, ["--name", "x", "--mode", "c"]), usage(/--mode must be one of a, b, got "c"/));
  assert.throws(() => parseFlags(CMD, ["--name", "x", "--budget", "lots"]), usage(/--budget: "lots" is not a size/));
  assert.throws(() => parseFlags(CMD, ["--name", "x", "--verbose=yes"]), usage(/--verbose takes no value/));
  assert.throws(() => parseFlags(CMD, ["--name", "x", "--verbose", "true"]), usage(/unexpected argument "true" \(--verbose takes no value\)/));
  assert.throws(() => parseFlags(CMD, ["stray", "--name", "x"]), usage(/unexpected argument "stray"/));
});

Deno.test("parseFlags: positionals where the command takes them; -h anywhere prints help", () => {
  const withText = { ...CMD, positionals: "text" } satisfies Command;
  const r = parseFlags(withText, ["--name", "x", "hello", "-5", "--", "--not-a-flag"])!;
  assert.deepEqual(r.positionals, ["hello", "-5", "--not-a-flag"]);
  const log = console.log;
  const out: string[] = [];
  console.log = (s: string) => out.push(s);
  try {
    assert.equal(parseFlags(CMD, ["--bogus", "-h"]), null);
  } finally {
    console.log = log;
  }
  assert.equal(out.length, 1);
  assert.match(out[0], /^try: a test command\n\nusage: try \[flags\]/);
});

Deno.test("helpText: each flag with its placeholder, description, units and default", () => {
  const h = helpText(CMD);
  assert.match(h, /\n {2}--count <n> +how many \(items, default 3\)\n/);
  assert.match(h, /\n {2}--mode <a\|b> +the mode \(default a\)\n/);
  assert.match(h, /\n {2}--name <text> +a name \(required\)\n/);
  assert.match(h, /\n {2}--verbose +say more\n/);
  assert.match(h, /\n {2}-h, --help +print this help$/);
});

Deno.test("editDistance", () => {
  assert.equal(editDistance("", "abc"), 3);
  assert.equal(editDistance("max-new-tokens", "max-tokens"), 4);
  assert.equal(editDistance("kitten", "sitting"), 3);
});
