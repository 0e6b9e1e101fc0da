// IEEE 754 binary16 ↔ numbers, for fp16 model outputs and inputs (onnxruntime-node hands float16
// tensors over as Uint16Array bits) and fp16 checkpoints (src/training/safetensors.ts).

const f16Scratch = new Float32Array(1);
const f16ScratchBits = new Uint32Array(f16Scratch.buffer);

/** IEEE 754 half → float32, bit-exact (subnormals, ±0, ±inf, NaN payload kept in the top bits). */
export function halfToFloat(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) {
    // ±0 or subnormal: mantissa · 2^-24, exact in float32
    const magnitude = mantissa * 2 ** -24;
    return sign ? -magnitude : magnitude;
  }
  if (exponent === 0x1f) f16ScratchBits[0] = sign | 0x7f800000 | (mantissa << 13);
  else f16ScratchBits[0] = sign | ((exponent + 112) << 23) | (mantissa << 13);
  return f16Scratch[0];
}

/** number → binary16 bits, for the small integers fed as masks and positions (exact below 2048). */
export function toHalfBits(value: number): number {
  if (value === 0) return 0;
  const sign = value < 0 ? 0x8000 : 0;
  const abs = Math.abs(value);
  const exponent = Math.floor(Math.log2(abs));
  const fraction = Math.round((abs / 2 ** exponent - 1) * 1024);
  return sign | ((exponent + 15) << 10) | fraction;
}
