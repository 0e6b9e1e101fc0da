// `rmserve train`'s options and the one TrainConfig they set, used by the command and by
// runTraining (src/training/pipeline.ts) alike:
//   - TRAIN_OPTIONS: each option once (flag, parser, default, help), keyed by its TrainConfig path;
//   - DEFAULT_TRAIN_CONFIG: every default, from the table, with the loss and optimizer defaults
//     their modules own (DEFAULT_LOSS in losses.ts, DEFAULT_OPTIMIZER in loop.ts);
//   - METHOD_DEFAULTS: what a loss method changes when the options leave it to the method;
//   - resolveTrainConfig(): a run's config with all of the above filled in.
// Training options have no environment variables (but --admin-token, a secret): a model's
// provenance records the command line, and a setting taken from the environment would not be in it.
import { basename, dirname, join, resolve } from 'node:path';
import { TRAINER_SPLIT } from '../eval/evaluate-files.js';
import { DEFAULT_LOSS, GRM_REGULARISERS, LOSS_METHODS, type LossMethod, type PcrmSimilarity } from '../training/losses.js';
import { DEFAULT_OPTIMIZER, type OptimizerConfig } from '../training/loop.js';
import type { HeadKind } from '../training/model.js';
import { defaultsOf, type ConfigOf, type DefaultsOf, type OptionTable } from './options.js';
import { commaList, intAtLeast, numberIn, splitFractions } from './parsers.js';

const HEAD_KINDS = ['linear', 'mlp'] as const satisfies readonly HeadKind[];
const PCRM_SIMILARITIES = ['length', 'tfidf', 'encoder'] as const satisfies readonly PcrmSimilarity[];

export interface MethodDefaults {
  /** reward head */
  head: HeadKind;
  /** dropout before the reward head while training */
  headDropout: number;
  /** zero-initialise the reward head's last layer */
  zeroHead: boolean;
}

const PLAIN: MethodDefaults = { head: 'linear', headDropout: 0, zeroHead: false };

/**
 * Per method, the defaults of --head, --head-dropout and the head's initialisation (the methods'
 * own hyperparameters, β, α, ε, are DEFAULT_LOSS's). The papers' setups: GRM puts an MLP head with
 * dropout 0.1 on the backbone; HaF-RM starts its reward head at zero, so the initial rewards are 0.
 */
export const METHOD_DEFAULTS: Readonly<Record<LossMethod, MethodDefaults>> = {
  bt: PLAIN,
  pcrm: PLAIN,
  haf: { ...PLAIN, zeroHead: true },
  grm: { ...PLAIN, head: 'mlp', headDropout: 0.1 },
  labelsmooth: PLAIN,
  // the LM phase trains no reward head (none is exported)
  sft: PLAIN,
};

/** "mlp for --method grm, else linear": METHOD_DEFAULTS in --help's words. */
function byMethod(key: keyof MethodDefaults): string {
  const methods = new Map<string, LossMethod[]>();
  for (const method of LOSS_METHODS) {
    const value = String(METHOD_DEFAULTS[method][key]);
    methods.set(value, [...(methods.get(value) ?? []), method]);
  }
  const [common, ...others] = [...methods.entries()].sort((a, b) => b[1].length - a[1].length);
  return [...others.map(([value, ms]) => `${value} for --method ${ms.join(', ')}`), `else ${common![0]}`].join(', ');
}

export const TRAIN_OPTIONS = {
  data: {
    flags: '--data <files...>', required: true,
    help: 'preference files: JSONL/JSON with prompt/chosen/rejected, HH-RLHF transcripts, AlpacaEval or PandaLM judgments (.gz ok)',
  },
  out: { flags: '--out <dir>', required: true, help: 'model folder to write, e.g. models/NAME/VERSION' },
  tokenizer: {
    flags: '--tokenizer <file>',
    help: 'tokenizer.json to use (its tokenizer_config.json is read too); default: train a byte-level BPE on the training split',
    docs: { default: 'a BPE trained on the training split' },
  },
  initFrom: {
    flags: '--init-from <dir>',
    help: 'start from a Hugging Face folder (config.json + model.safetensors: GPT-2, Llama, Qwen2, Qwen3; its tokenizer unless --tokenizer), ' +
      'e.g. a --method sft output; its sizes replace --d-model/--layers/--heads; haf and grm --grm-reg dpo take it as their frozen reference',
  },
  vocabSize: { flags: '--vocab-size <n>', help: 'vocabulary size of the trained BPE tokenizer', default: 8192, parse: intAtLeast(260) },
  dModel: { flags: '--d-model <n>', help: 'model width', default: 256, parse: intAtLeast(1) },
  layers: { flags: '--layers <n>', help: 'decoder blocks', default: 4, parse: intAtLeast(1) },
  heads: { flags: '--heads <n>', help: 'attention heads (must divide --d-model)', default: 4, parse: intAtLeast(1) },
  maxLength: {
    flags: '--max-length <n>', help: 'longest sequence in tokens; longer ones lose the start of the prompt', default: 256, parse: intAtLeast(2),
  },
  head: {
    flags: '--head <kind>', choices: HEAD_KINDS,
    help: `reward head: linear, or mlp (GRM: Linear → ReLU → Linear) (default: ${byMethod('head')})`, docs: { default: byMethod('head') },
  },
  headHidden: { flags: '--head-hidden <n>', help: 'hidden width of the mlp head', default: 1024, parse: intAtLeast(1) },
  headDropout: {
    flags: '--head-dropout <p>', parse: numberIn(0, 0.99),
    help: `dropout before the reward head while training, never in the export (default: ${byMethod('headDropout')})`,
    docs: { default: byMethod('headDropout') },
  },
  lora: {
    rank: {
      flags: '--lora-rank <r>', default: 0, parse: intAtLeast(0),
      help: 'train LoRA adapters of this rank and the reward head on frozen base weights, merged into the export (0 = train every weight)',
    },
    alpha: {
      flags: '--lora-alpha <a>', parse: numberIn(Number.MIN_VALUE),
      help: 'LoRA alpha: the adapters\' path is scaled by alpha/rank, as in PEFT (default: 2 × --lora-rank)', docs: { default: '2 × --lora-rank' },
    },
    targets: {
      flags: '--lora-targets <names>', parse: commaList,
      help: 'layers that get adapters: q,k,v,o,gate,up,down (Llama, Qwen2, Qwen3; or q_proj, …), c_attn,c_proj,c_fc (GPT-2), or all-linear ' +
        '(default: q,v; c_attn for GPT-2: PEFT\'s defaults)',
      docs: { default: 'q,v (GPT-2: c_attn)' },
    },
  },
  batchSize: { flags: '--batch-size <n>', help: 'preference pairs per step (per micro-batch with --grad-accum)', default: 16, parse: intAtLeast(1) },
  gradAccum: {
    flags: '--grad-accum <n>', default: 1, parse: intAtLeast(1),
    help: 'micro-batches of --batch-size pairs per optimizer step, gradients averaged over all their pairs as one batch of n × --batch-size',
  },
  steps: { flags: '--steps <n>', help: 'optimizer steps (the LR schedule\'s length)', default: 1000, parse: intAtLeast(1) },
  optimizer: {
    lr: { flags: '--lr <x>', help: 'peak learning rate', default: DEFAULT_OPTIMIZER.lr, parse: numberIn(0) },
    warmup: { flags: '--warmup <n>', help: 'linear warmup steps, then cosine decay', default: DEFAULT_OPTIMIZER.warmup, parse: intAtLeast(0) },
    minLrRatio: { flags: '--min-lr-ratio <x>', help: 'final LR as a fraction of --lr', default: DEFAULT_OPTIMIZER.minLrRatio, parse: numberIn(0, 1) },
    weightDecay: {
      flags: '--weight-decay <x>', help: 'AdamW decoupled weight decay (not on biases, LayerNorm, embeddings)', default: DEFAULT_OPTIMIZER.weightDecay,
      parse: numberIn(0),
    },
    clip: { flags: '--clip <x>', help: 'clip gradients to this global L2 norm (0 = off)', default: DEFAULT_OPTIMIZER.clip, parse: numberIn(0) },
    beta1: { flags: '--beta1 <x>', help: 'AdamW β1', default: DEFAULT_OPTIMIZER.beta1, parse: numberIn(0, 1) },
    beta2: { flags: '--beta2 <x>', help: 'AdamW β2', default: DEFAULT_OPTIMIZER.beta2, parse: numberIn(0, 1) },
  },
  seed: { flags: '--seed <n>', help: 'seed of the initial weights and the batch order', default: 1, parse: intAtLeast(0) },
  evalEvery: { flags: '--eval-every <n>', help: 'validate (and checkpoint) every n steps; 0 = only at the end', default: 100, parse: intAtLeast(0) },
  objective: {
    flags: '--objective <name>', help: 'name of the reward column for pairs whose data names none (default: NAME of --out models/NAME/VERSION)',
    docs: { default: 'NAME of --out' },
  },
  loss: {
    method: {
      flags: '--method <name>', choices: LOSS_METHODS, default: DEFAULT_LOSS.method,
      help: 'loss: bt (Bradley–Terry), pcrm (prior-constrained margins), haf (HaF-RM: BT + DPO on the LM head vs the frozen starting weights), ' +
        'grm (BT + LM-head regulariser, MLP head with dropout), labelsmooth; or sft: the LM phase (next-token loss on the chosen responses), ' +
        'written as a Hugging Face causal-LM folder for a later --init-from',
    },
    margin: { flags: '--no-margin', help: 'ignore the margin field of the data in the BT loss (also the BT part of haf and grm)', docs: { default: 'margins used' } },
    centering: {
      flags: '--centering <c>', help: 'BT reward-centering coefficient c·mean((r_c + r_r)²) (0 = off; 0.01 is usual; also in haf and grm)',
      default: DEFAULT_LOSS.centering, parse: numberIn(0),
    },
    labelSmoothing: {
      flags: '--label-smoothing <e>', help: 'ε of --method labelsmooth: −(1−ε) log σ(Δ) − ε log σ(−Δ)', default: DEFAULT_LOSS.labelSmoothing,
      parse: numberIn(0, 0.5),
    },
    pcrm: {
      similarity: {
        flags: '--pcrm-similarity <kind>', choices: PCRM_SIMILARITIES,
        help: 'pcrm: prior similarity s of a pair: length (shorter/longer response tokens), tfidf (angular cosine of TF-IDF vectors fitted on the ' +
          `training responses) or encoder (--similarity-encoder) (default: encoder when --similarity-encoder is given, else ${DEFAULT_LOSS.pcrm.similarity})`,
        docs: { default: `encoder with --similarity-encoder, else ${DEFAULT_LOSS.pcrm.similarity}` },
      },
      encoder: {
        flags: '--similarity-encoder <model.onnx>', help: 'pcrm: ONNX text encoder for s (mean-pooled last hidden state; its tokenizer.json beside it)',
      },
      beta1: { flags: '--pcrm-beta1 <x>', help: 'pcrm: β1 of δ* = β1/(s + β2) + β3', default: DEFAULT_LOSS.pcrm.beta1, parse: numberIn(Number.NEGATIVE_INFINITY) },
      beta2: { flags: '--pcrm-beta2 <x>', help: 'pcrm: β2 of δ*', default: DEFAULT_LOSS.pcrm.beta2, parse: numberIn(Number.NEGATIVE_INFINITY) },
      beta3: {
        flags: '--pcrm-beta3 <x>', help: 'pcrm: β3 of δ* (the paper\'s runs used e.g. 20, 0.001, −15)', default: DEFAULT_LOSS.pcrm.beta3,
        parse: numberIn(Number.NEGATIVE_INFINITY),
      },
    },
    haf: {
      rmRatio: { flags: '--haf-rm-ratio <x>', help: 'haf: weight of the BT loss', default: DEFAULT_LOSS.haf.rmRatio, parse: numberIn(0) },
      dpoRatio: { flags: '--haf-dpo-ratio <x>', help: 'haf: weight of the DPO loss', default: DEFAULT_LOSS.haf.dpoRatio, parse: numberIn(0) },
      beta: { flags: '--haf-beta <x>', help: 'haf: DPO β', default: DEFAULT_LOSS.haf.beta, parse: numberIn(0) },
    },
    grm: {
      alpha: { flags: '--grm-alpha <x>', help: 'grm: α in (1 − α)·L_BT + α·L_reg', default: DEFAULT_LOSS.grm.alpha, parse: numberIn(0, 1) },
      beta: { flags: '--grm-beta <x>', help: 'grm: β of the sft and dpo regularisers', default: DEFAULT_LOSS.grm.beta, parse: numberIn(0) },
      reg: {
        flags: '--grm-reg <kind>', choices: GRM_REGULARISERS, default: DEFAULT_LOSS.grm.reg,
        help: 'grm: regulariser: sft −log σ(β log π(y_c)), plain-sft −log π(y_c), dpo (vs the frozen initial weights), dpo-noref',
      },
    },
  },
  split: {
    flags: '--split <fractions>', help: 'train,validation,test fractions of the split by prompt hash',
    // rmserve eval --split and the training report's evaluation assume this split.
    default: { ...TRAINER_SPLIT }, defaultHelp: Object.values(TRAINER_SPLIT).join(','), parse: splitFractions,
  },
  maxTrainPairs: { flags: '--max-train-pairs <n>', help: 'use at most this many training pairs (0 = all)', default: 0, parse: intAtLeast(0) },
  checkpointDir: {
    flags: '--checkpoint-dir <dir>',
    help: 'where last.safetensors, best.safetensors and the growing train-metrics.jsonl go (default: .rmserve-cache/checkpoints/NAME/VERSION)',
    docs: { default: '.rmserve-cache/checkpoints/NAME/VERSION' },
  },
  resume: {
    flags: '--resume <file>', help: 'continue from a last.safetensors written by a run with the same options (a differing option is refused)',
  },
  device: { flags: '--device <device>', help: 'cpu, cuda or cuda:N (parameters and moments still cross to the host every step)', default: 'cpu' },
  threads: { flags: '--threads <n>', help: 'ORT intra-op threads (0 = ORT default: all cores)', default: 0, parse: intAtLeast(0) },
  promote: {
    flags: '--promote <url>', scope: 'command',
    help: 'after export, ask the rmserve server at this URL to load and serve the new version (--out must be <its models root>/NAME/VERSION)',
  },
  adminToken: { flags: '--admin-token <token>', env: 'RMSERVE_ADMIN_TOKEN', help: 'bearer token for --promote', scope: 'command', docs: { default: 'unset' } },
  progress: {
    flags: '--no-progress', help: 'no progress bar on a terminal and no progress lines elsewhere (the JSONL log is always written)', scope: 'command',
    docs: { default: 'bar on a TTY, lines otherwise' },
  },
  report: { flags: '--no-report', help: 'skip report.html (and its evaluation of the test split with rmserve eval)', docs: { default: 'written' } },
} as const satisfies OptionTable;

/** A training run's settings: one field per non-command entry of TRAIN_OPTIONS. */
export type TrainConfig = ConfigOf<typeof TRAIN_OPTIONS>;

/** What runTraining takes: --data and --out, and any of the rest (the others take DEFAULT_TRAIN_CONFIG's, then METHOD_DEFAULTS'). */
export type TrainInput = Pick<TrainConfig, 'data' | 'out'> & Partial<Omit<TrainConfig, 'data' | 'out'>> & {
  /** zero-initialise the reward head's last layer; default: METHOD_DEFAULTS (haf) */
  zeroHead?: boolean;
};

/** Every training default. The optimizer's include AdamW's ε, which has no flag. */
export const DEFAULT_TRAIN_CONFIG: DefaultsOf<typeof TRAIN_OPTIONS> & { optimizer: OptimizerConfig } = {
  ...defaultsOf(TRAIN_OPTIONS),
  optimizer: { ...DEFAULT_OPTIMIZER },
};

/** A run's config with nothing left to a default: what the pipeline reads. */
export type ResolvedTrainConfig = Omit<TrainConfig, 'head' | 'headDropout' | 'objective' | 'checkpointDir' | 'loss' | 'optimizer'> & MethodDefaults & {
  objective: string;
  checkpointDir: string;
  loss: typeof DEFAULT_LOSS;
  optimizer: OptimizerConfig;
};

/** The default checkpoint folder: under the git-ignored .rmserve-cache, named after the model folder. */
export function defaultCheckpointDir(out: string): string {
  const abs = resolve(out);
  return join('.rmserve-cache', 'checkpoints', basename(dirname(abs)), basename(abs));
}

/** NAME of models/NAME/VERSION: a model folder's reward column is named after the model. */
export function modelName(out: string): string {
  return basename(dirname(resolve(out)));
}

/**
 * `input` over DEFAULT_TRAIN_CONFIG, then the method's defaults for what is still open. A group
 * given (loss, optimizer, split) replaces the default group whole; undefined fields count as not given.
 */
export function resolveTrainConfig(input: TrainInput): ResolvedTrainConfig {
  const given = Object.fromEntries(Object.entries(input).filter(([, value]) => value !== undefined)) as TrainInput;
  const c = { ...DEFAULT_TRAIN_CONFIG, ...given };
  const method = METHOD_DEFAULTS[c.loss.method];
  const { similarity, encoder, ...betas } = c.loss.pcrm;
  return {
    ...c,
    head: c.head ?? method.head,
    headDropout: c.headDropout ?? method.headDropout,
    zeroHead: c.zeroHead ?? method.zeroHead,
    objective: c.objective ?? modelName(c.out),
    checkpointDir: c.checkpointDir ?? defaultCheckpointDir(c.out),
    loss: {
      ...c.loss,
      // An encoder given means the encoder's similarity, unless another is named.
      pcrm: { ...betas, similarity: similarity ?? (encoder ? 'encoder' : DEFAULT_LOSS.pcrm.similarity), ...(encoder ? { encoder } : {}) },
    },
    // AdamW's ε has no flag, so a group read from the options lacks it; a caller's full group keeps its own.
    optimizer: { ...DEFAULT_OPTIMIZER, ...c.optimizer },
  };
}
