/**
 * The PEFT methods this runtime implements, by peft_type. Adding a method is one folder under
 * src/peft/ and one line here.
 */
import { PeftError } from "../errors.ts";
import { BITFIT } from "./bitfit/method.ts";
import { IA3 } from "./ia3/method.ts";
import { LN_TUNING } from "./ln_tuning/method.ts";
import { LORA } from "./lora/method.ts";
import type { MethodConfig, PeftMethod } from "./method.ts";
import { PARTIAL } from "./partial/method.ts";
import { PROMPT_TUNING } from "./prompt_tuning/method.ts";
import { P_TUNING } from "./p_tuning/method.ts";
import { PREFIX_TUNING } from "./prefix_tuning/method.ts";
import { BOTTLENECK } from "./bottleneck/method.ts";
import { hybridMethod } from "./hybrid/method.ts";

const METHODS: PeftMethod<MethodConfig>[] = [
  LORA, IA3, LN_TUNING, BITFIT, PARTIAL, PROMPT_TUNING, P_TUNING, PREFIX_TUNING, BOTTLENECK,
] as unknown as PeftMethod<MethodConfig>[];
METHODS.push(hybridMethod(methodFor) as unknown as PeftMethod<MethodConfig>);

/** PEFT method names (peft.utils.PeftType) we know but do not run, to tell "unsupported" from "unknown". */
const KNOWN_ELSEWHERE = [
  "ADALORA", "LOHA", "LOKR", "OFT", "BOFT", "VERA", "FOURIERFT", "HRA", "VBLORA", "MULTITASK_PROMPT_TUNING", "POLY", "XLORA", "CPT", "BONE", "ADAPTION_PROMPT", "LORAFA", "SHIRA", "C3A", "ROAD", "MISS", "RANDLORA",
];

export const SUPPORTED_PEFT_TYPES = METHODS.map((m) => m.peftType);

/** The method of a peft_type (case-insensitive); `where` names the config in errors. */
export function methodFor(peftType: unknown, where = "adapter config"): PeftMethod<MethodConfig> {
  if (typeof peftType !== "string") {
    throw new PeftError("ADAPTER_BAD_CONFIG", `${where}: peft_type must be a string (one of ${SUPPORTED_PEFT_TYPES.join(", ")}), got ${JSON.stringify(peftType)}`);
  }
  const t = peftType.toUpperCase();
  const m = METHODS.find((x) => x.peftType === t);
  if (m) return m;
  if (KNOWN_ELSEWHERE.includes(t)) {
    throw new PeftError("ADAPTER_UNSUPPORTED", `${where}: peft_type ${peftType} is not supported here (supported: ${SUPPORTED_PEFT_TYPES.join(", ")})`);
  }
  throw new PeftError("ADAPTER_BAD_CONFIG", `${where}: unknown peft_type ${JSON.stringify(peftType)} (supported: ${SUPPORTED_PEFT_TYPES.join(", ")})`);
}
