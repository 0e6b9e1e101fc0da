// `rmserve eval`'s options (src/config/options.ts explains the table). The keys are evaluateFiles'
// options; --json and --quiet are the command's, about where the result goes.
import type { EvalSplit } from '../eval/types.js';
import type { ConfigOf, OptionTable } from './options.js';
import { positiveInt } from './parsers.js';

const SPLITS = ['test', 'validation', 'train', 'all'] as const satisfies readonly EvalSplit[];

export const EVAL_OPTIONS = {
  model: { flags: '--model <dir>', required: true, help: 'model folder (model.onnx, tokenizer.json, ...), as the server loads it' },
  data: { flags: '--data <files...>', required: true, help: 'preference files: JSONL/JSON(.gz), HH-RLHF, AlpacaEval, PandaLM, prompt/chosen/rejected' },
  json: { flags: '--json <file>', help: 'also write the full result as JSON (histograms and calibration included)', scope: 'command' },
  maxPairs: { flags: '--max-pairs <n>', help: 'first N pairs of each file (after --split)', parse: positiveInt, docs: { default: 'all' } },
  // The test split by default: `all` puts the training pairs into the accuracy (0.84 against 0.66
  // on the test split for models/harmless/1 on HH-RLHF harmless), which reads as a better model.
  split: {
    flags: '--split <split>', help: "one split of the trainer's 80/10/10 split by prompt hash, or all pairs (training pairs included)", choices: SPLITS,
    default: 'test',
  },
  batchSize: { flags: '--batch-size <n>', help: 'responses per ONNX run (sorted by length)', parse: positiveInt, default: 32 },
  device: { flags: '--device <device>', help: 'cpu, cuda or cuda:N', default: 'cpu' },
  intraOpThreads: { flags: '--threads <n>', help: 'ORT intra-op threads (default: ORT decides)', parse: positiveInt, docs: { default: 'ORT decides' } },
  quiet: { flags: '--quiet', help: 'no table on stdout (with --json)', scope: 'command', fallback: false },
} as const satisfies OptionTable;

export type EvalConfig = ConfigOf<typeof EVAL_OPTIONS>;
