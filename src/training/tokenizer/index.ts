export { trainByteLevelBpe } from './train-byte-level-bpe.js';
export type { BpeTrainingOptions, TrainedTokenizer, TokenizerJson, TokenizerConfig } from './train-byte-level-bpe.js';
export { BYTE_TO_CHAR, CHAR_TO_BYTE, GPT2_PRETOKENIZE_PATTERN, preTokenize, toByteLevel } from './byte-level.js';
export { writeTokenizerFiles } from './write-files.js';
