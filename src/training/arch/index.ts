// The decoder block of each architecture, for model.ts.
import { gpt2Block } from './gpt2.js';
import { llamaBlock } from './llama.js';
import { qwen2Block } from './qwen2.js';
import { qwen3Block } from './qwen3.js';
import type { Architecture, DecoderBlock } from './types.js';

export const ARCHITECTURES = ['gpt2', 'llama', 'qwen2', 'qwen3'] as const satisfies readonly Architecture[];

export const BLOCKS: Readonly<Record<Architecture, DecoderBlock>> = {
  gpt2: gpt2Block, llama: llamaBlock, qwen2: qwen2Block, qwen3: qwen3Block,
};

/** GPT-2 has learned positions, LayerNorm and GELU; the others RoPE, RMSNorm and SwiGLU. */
export function isLlamaFamily(arch: Architecture): boolean {
  return arch !== 'gpt2';
}

export type { Architecture, BlockConfig, BlockContext, DecoderBlock, LlamaFamilyConfig, LmHead, ParamInit, ParamSpec, RopeScaling } from './types.js';
