/** Executable entry of the CLI (deno tasks, the esbuild bundle, compiled binaries). */
import process from "node:process";
import { runCli } from "./main.ts";

process.exitCode = await runCli(process.argv.slice(2));
