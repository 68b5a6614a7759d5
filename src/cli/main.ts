/**
 * Command-line entry: `main.ts <command> [flags]`. Each command lives in its own file with an
 * exported `main(args)`; they load on demand so `tokenize` never starts a GPU.
 */
import { PeftError } from "../errors.ts";

const COMMANDS: Record<string, () => Promise<{ main(args: string[]): Promise<void> }>> = {
  generate: () => import("./generate.ts"),
  tokenize: () => import("./tokenize.ts"),
  quantize: () => import("./quantize.ts"),
  train: () => import("./train.ts"),
  serve: () => import("./serve.ts"),
  demo: () => import("./demo.ts"),
};

export async function runCli(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "--help" || cmd === "-h" || !COMMANDS[cmd]) {
    console.error(`usage: <${Object.keys(COMMANDS).join("|")}> [flags]   (each command takes --help)`);
    return cmd && cmd !== "--help" && cmd !== "-h" ? 2 : 0;
  }
  try {
    const mod = await COMMANDS[cmd]();
    await mod.main(rest);
    return 0;
  } catch (e) {
    if (e instanceof PeftError) {
      console.error(`error [${e.code}]: ${e.message}`);
      return 1;
    }
    throw e;
  }
}
