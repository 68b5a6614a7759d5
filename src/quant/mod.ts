/** NF4 / FP4 quantization (bitsandbytes-compatible): the public surface of src/quant. */
export {
  blockAbsmax,
  checkBlocksize,
  dequantize4bit,
  fourBitPayload,
  NESTED_BLOCKSIZE,
  type NestedAbsmax,
  quantize4bit,
  quantize4bitBF16,
  quantize4bitF16,
  type Quantize4bitOptions,
  quantizeAbsmax,
  type QuantState4bit,
  type SourceDType,
} from "./quantize.ts";
export { createDynamicMap, DYNAMIC_MAP, FP4_CODE, NF4_CODE, type QuantType4, UNSIGNED_DYNAMIC_MAP } from "./tables.ts";
export { dequantize4bitReference, quantize4bitReference } from "./reference.ts";
