import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TrainedTokenizer } from './train-byte-level-bpe.js';

/**
 * Writes tokenizer.json and tokenizer_config.json into a model folder, as the server's loader and
 * Hugging Face `AutoTokenizer.from_pretrained` expect them. Existing keys of a tokenizer_config.json
 * already in the folder (a chat_template, say) are kept unless the trained config sets them.
 */
export function writeTokenizerFiles(dir: string, trained: TrainedTokenizer): void {
  mkdirSync(dir, { recursive: true });
  const configPath = join(dir, 'tokenizer_config.json');
  let existing: Record<string, unknown> = {};
  try {
    existing = JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(trained.tokenizerJson));
  writeFileSync(configPath, `${JSON.stringify({ ...existing, ...trained.tokenizerConfig }, null, 2)}\n`);
}
