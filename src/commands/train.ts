// `rmserve train`: train a reward model on preference files and export it as a model folder the
// server loads. Every option has a default; `--help` lists them all.
import { basename, dirname, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { promoteVersion } from '../server/promote-client.js';
import { DEFAULT_TRAIN_OPTIONS, defaultCheckpointDir, runTraining } from '../training/pipeline.js';
import { DEFAULT_LOSS, GRM_REGULARISERS, LOSS_METHODS, type GrmRegulariser, type LossMethod, type PcrmSimilarity } from '../training/losses.js';
import type { HeadKind } from '../training/model.js';

const int = (min: number) => (value: string): number => {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < min) throw new Error(`expected an integer >= ${min}, got "${value}"`);
  return n;
};

const num = (min: number, max = Number.POSITIVE_INFINITY) => (value: string): number => {
  const n = Number(value);
  if (value.trim() === '' || !(n >= min && n <= max)) throw new Error(`expected a number in [${min}, ${max}], got "${value}"`);
  return n;
};

const fractions = (value: string): [number, number, number] => {
  const parts = value.split(',').map(Number);
  if (parts.length !== 3 || parts.some((p) => !(p >= 0)) || Math.abs(parts[0]! + parts[1]! + parts[2]! - 1) > 1e-9) {
    throw new Error(`expected three fractions TRAIN,VALIDATION,TEST summing to 1, got "${value}"`);
  }
  return parts as [number, number, number];
};

interface TrainCliOptions {
  data: string[];
  out: string;
  tokenizer?: string;
  initFrom?: string;
  vocabSize: number;
  dModel: number;
  layers: number;
  heads: number;
  maxLength: number;
  head?: HeadKind;
  headHidden: number;
  headDropout?: number;
  batchSize: number;
  steps: number;
  lr: number;
  warmup: number;
  minLrRatio: number;
  weightDecay: number;
  clip: number;
  beta1: number;
  beta2: number;
  seed: number;
  evalEvery: number;
  objective?: string;
  method: LossMethod;
  margin: boolean;
  centering: number;
  labelSmoothing: number;
  pcrmSimilarity?: PcrmSimilarity;
  similarityEncoder?: string;
  pcrmBeta1: number;
  pcrmBeta2: number;
  pcrmBeta3: number;
  hafRmRatio: number;
  hafDpoRatio: number;
  hafBeta: number;
  grmAlpha: number;
  grmBeta: number;
  grmReg: GrmRegulariser;
  report: boolean;
  split: [number, number, number];
  maxTrainPairs: number;
  checkpointDir?: string;
  resume?: string;
  threads: number;
  device: string;
  promote?: string;
  adminToken?: string;
  progress: boolean;
}

export function trainCommand(): Command {
  const d = DEFAULT_TRAIN_OPTIONS;
  const l = DEFAULT_LOSS;
  return new Command('train')
    .description('train a reward model on preference data and export it as a model folder the server loads')
    .requiredOption('--data <files...>', 'preference files: JSONL/JSON with prompt/chosen/rejected, HH-RLHF transcripts, AlpacaEval or PandaLM judgments (.gz ok)')
    .requiredOption('--out <dir>', 'model folder to write, e.g. models/NAME/VERSION')
    .addOption(new Option('--tokenizer <file>', 'tokenizer.json to use (its tokenizer_config.json is read too); default: train a byte-level BPE on the training split'))
    .addOption(new Option('--init-from <dir>', 'start from a Hugging Face GPT-2 folder (config.json + model.safetensors; needs --tokenizer); its sizes replace --d-model/--layers/--heads'))
    .addOption(new Option('--vocab-size <n>', 'vocabulary size of the trained BPE tokenizer').default(d.vocabSize).argParser(int(260)))
    .addOption(new Option('--d-model <n>', 'model width').default(d.dModel).argParser(int(1)))
    .addOption(new Option('--layers <n>', 'decoder blocks').default(d.layers).argParser(int(1)))
    .addOption(new Option('--heads <n>', 'attention heads (must divide --d-model)').default(d.heads).argParser(int(1)))
    .addOption(new Option('--max-length <n>', 'longest sequence in tokens; longer ones lose the start of the prompt').default(d.maxLength).argParser(int(2)))
    .addOption(new Option('--head <kind>', 'reward head: linear, or mlp (GRM: Linear → ReLU → Linear) (default: mlp for --method grm, else linear)').choices(['linear', 'mlp']))
    .addOption(new Option('--head-hidden <n>', 'hidden width of the mlp head').default(d.headHidden).argParser(int(1)))
    .addOption(new Option('--head-dropout <p>', 'dropout before the reward head while training, never in the export (default: 0.1 for --method grm, else 0)').argParser(num(0, 0.99)))
    .addOption(new Option('--batch-size <n>', 'preference pairs per step').default(d.batchSize).argParser(int(1)))
    .addOption(new Option('--steps <n>', 'optimizer steps (the LR schedule\'s length)').default(d.steps).argParser(int(1)))
    .addOption(new Option('--lr <x>', 'peak learning rate').default(d.optimizer.lr).argParser(num(0)))
    .addOption(new Option('--warmup <n>', 'linear warmup steps, then cosine decay').default(d.optimizer.warmup).argParser(int(0)))
    .addOption(new Option('--min-lr-ratio <x>', 'final LR as a fraction of --lr').default(d.optimizer.minLrRatio).argParser(num(0, 1)))
    .addOption(new Option('--weight-decay <x>', 'AdamW decoupled weight decay (not on biases, LayerNorm, embeddings)').default(d.optimizer.weightDecay).argParser(num(0)))
    .addOption(new Option('--clip <x>', 'clip gradients to this global L2 norm (0 = off)').default(d.optimizer.clip).argParser(num(0)))
    .addOption(new Option('--beta1 <x>', 'AdamW β1').default(d.optimizer.beta1).argParser(num(0, 1)))
    .addOption(new Option('--beta2 <x>', 'AdamW β2').default(d.optimizer.beta2).argParser(num(0, 1)))
    .addOption(new Option('--seed <n>', 'seed of the initial weights and the batch order').default(d.seed).argParser(int(0)))
    .addOption(new Option('--eval-every <n>', 'validate (and checkpoint) every n steps; 0 = only at the end').default(d.evalEvery).argParser(int(0)))
    .addOption(new Option('--objective <name>', 'name of the reward column for pairs whose data names none (default: NAME of --out models/NAME/VERSION)'))
    .addOption(new Option('--method <name>', 'loss: bt (Bradley–Terry), pcrm (prior-constrained margins), haf (HaF-RM: BT + DPO on the LM head vs the frozen initial weights), grm (BT + LM-head regulariser, MLP head with dropout), labelsmooth').choices([...LOSS_METHODS]).default(d.loss.method))
    .addOption(new Option('--no-margin', 'ignore the margin field of the data in the BT loss (also the BT part of haf and grm)'))
    .addOption(new Option('--centering <c>', 'BT reward-centering coefficient c·mean((r_c + r_r)²) (0 = off; 0.01 is usual; also in haf and grm)').default(d.loss.centering).argParser(num(0)))
    .addOption(new Option('--label-smoothing <e>', 'ε of --method labelsmooth: −(1−ε) log σ(Δ) − ε log σ(−Δ)').default(d.loss.labelSmoothing).argParser(num(0, 0.5)))
    .addOption(new Option('--pcrm-similarity <kind>', 'pcrm: prior similarity s of a pair: length (shorter/longer response tokens), tfidf (angular cosine of TF-IDF vectors fitted on the training responses) or encoder (--similarity-encoder) (default: encoder when --similarity-encoder is given, else tfidf)').choices(['length', 'tfidf', 'encoder']))
    .addOption(new Option('--similarity-encoder <model.onnx>', 'pcrm: ONNX text encoder for s (mean-pooled last hidden state; its tokenizer.json beside it)'))
    .addOption(new Option('--pcrm-beta1 <x>', 'pcrm: β1 of δ* = β1/(s + β2) + β3').default(l.pcrm.beta1).argParser(num(Number.NEGATIVE_INFINITY)))
    .addOption(new Option('--pcrm-beta2 <x>', 'pcrm: β2 of δ*').default(l.pcrm.beta2).argParser(num(Number.NEGATIVE_INFINITY)))
    .addOption(new Option('--pcrm-beta3 <x>', 'pcrm: β3 of δ* (the paper\'s runs used e.g. 20, 0.001, −15)').default(l.pcrm.beta3).argParser(num(Number.NEGATIVE_INFINITY)))
    .addOption(new Option('--haf-rm-ratio <x>', 'haf: weight of the BT loss').default(l.haf.rmRatio).argParser(num(0)))
    .addOption(new Option('--haf-dpo-ratio <x>', 'haf: weight of the DPO loss').default(l.haf.dpoRatio).argParser(num(0)))
    .addOption(new Option('--haf-beta <x>', 'haf: DPO β').default(l.haf.beta).argParser(num(0)))
    .addOption(new Option('--grm-alpha <x>', 'grm: α in (1 − α)·L_BT + α·L_reg').default(l.grm.alpha).argParser(num(0, 1)))
    .addOption(new Option('--grm-beta <x>', 'grm: β of the sft and dpo regularisers').default(l.grm.beta).argParser(num(0)))
    .addOption(new Option('--grm-reg <kind>', 'grm: regulariser: sft −log σ(β log π(y_c)), plain-sft −log π(y_c), dpo (vs the frozen initial weights), dpo-noref').choices([...GRM_REGULARISERS]).default(l.grm.reg))
    .addOption(new Option('--split <fractions>', 'train,validation,test fractions of the split by prompt hash').default([d.split.train, d.split.validation, d.split.test], '0.8,0.1,0.1').argParser(fractions))
    .addOption(new Option('--max-train-pairs <n>', 'use at most this many training pairs (0 = all)').default(d.maxTrainPairs).argParser(int(0)))
    .addOption(new Option('--checkpoint-dir <dir>', 'where last.safetensors, best.safetensors and the growing train-metrics.jsonl go (default: .rmserve-cache/checkpoints/NAME/VERSION)'))
    .addOption(new Option('--resume <file>', 'continue from a last.safetensors written by a run with the same options (a differing option is refused)'))
    .addOption(new Option('--device <device>', 'cpu, cuda or cuda:N (parameters and moments still cross to the host every step)').default('cpu'))
    .addOption(new Option('--threads <n>', 'ORT intra-op threads (0 = ORT default: all cores)').default(0).argParser(int(0)))
    .addOption(new Option('--promote <url>', 'after export, ask the rmserve server at this URL to load and serve the new version (--out must be <its models root>/NAME/VERSION)'))
    .addOption(new Option('--admin-token <token>', 'bearer token for --promote').env('RMSERVE_ADMIN_TOKEN'))
    .addOption(new Option('--no-progress', 'no progress line on the terminal (the JSONL log is always written)'))
    .addOption(new Option('--no-report', 'skip report.html (and its evaluation of the test split with rmserve eval)'))
    .addHelpText('after', '\nWrites <out>/model.onnx, tokenizer files, config.json, train-metrics.jsonl, rmserve.json (with the LSC reference\n' +
      'statistics of the validation split) and then report.html.')
    .action(async (opts: TrainCliOptions) => {
      // First Ctrl-C: finish the step, write the resumable checkpoint, exit. Second: exit now.
      const stop = new AbortController();
      process.once('SIGINT', () => {
        process.stderr.write('\nstopping after this step (Ctrl-C again to quit now)\n');
        stop.abort();
        process.once('SIGINT', () => process.exit(130));
      });
      let result: Awaited<ReturnType<typeof runTraining>>;
      const grm = opts.method === 'grm';
      try {
        result = await runTraining({
          signal: stop.signal,
          data: opts.data,
          out: opts.out,
          tokenizer: opts.tokenizer,
          initFrom: opts.initFrom,
          vocabSize: opts.vocabSize,
          dModel: opts.dModel,
          layers: opts.layers,
          heads: opts.heads,
          maxLength: opts.maxLength,
          head: opts.head ?? (grm ? 'mlp' : 'linear'),
          headHidden: opts.headHidden,
          headDropout: opts.headDropout ?? (grm ? 0.1 : 0),
          report: opts.report,
          loss: {
            method: opts.method, margin: opts.margin, centering: opts.centering, labelSmoothing: opts.labelSmoothing,
            pcrm: {
              beta1: opts.pcrmBeta1, beta2: opts.pcrmBeta2, beta3: opts.pcrmBeta3,
              similarity: opts.pcrmSimilarity ?? (opts.similarityEncoder ? 'encoder' : 'tfidf'),
              ...(opts.similarityEncoder ? { encoder: opts.similarityEncoder } : {}),
            },
            haf: { rmRatio: opts.hafRmRatio, dpoRatio: opts.hafDpoRatio, beta: opts.hafBeta },
            grm: { alpha: opts.grmAlpha, beta: opts.grmBeta, reg: opts.grmReg },
          },
          optimizer: {
            ...d.optimizer, lr: opts.lr, warmup: opts.warmup, minLrRatio: opts.minLrRatio, weightDecay: opts.weightDecay,
            clip: opts.clip, beta1: opts.beta1, beta2: opts.beta2,
          },
          steps: opts.steps,
          batchSize: opts.batchSize,
          evalEvery: opts.evalEvery,
          seed: opts.seed,
          objective: opts.objective ?? basename(dirname(resolve(opts.out))),
          split: { train: opts.split[0], validation: opts.split[1], test: opts.split[2] },
          maxTrainPairs: opts.maxTrainPairs,
          checkpointDir: opts.checkpointDir ?? defaultCheckpointDir(opts.out),
          resume: opts.resume,
          threads: opts.threads,
          device: opts.device,
          progress: opts.progress ? undefined : false,
          command: ['rmserve', ...process.argv.slice(2)].join(' '),
        });
      } catch (err) {
        // A user error (bad file, bad option combination, no CUDA) is one line, not a stack.
        process.stderr.write(`rmserve train: ${(err as Error).message}\n`);
        process.exitCode = 1;
        return;
      }
      if (result.manifest === undefined) {
        console.log(JSON.stringify({ interrupted: true, step: result.loop.steps.at(-1)?.step ?? null, checkpoint: result.loop.checkpoint }));
        process.exitCode = 130;
        return;
      }
      const m = result.manifest.metrics as { validation?: { accuracy: number }; test?: { accuracy: number } } | undefined;
      let promoted: string | null = null;
      if (opts.promote) {
        const name = basename(dirname(resolve(opts.out)));
        const version = basename(resolve(opts.out));
        try {
          const status = await promoteVersion(opts.promote, name, version, opts.adminToken ?? '');
          promoted = status.serving?.version ?? null;
          process.stderr.write(`promoted ${name}@${version} on ${opts.promote}\n`);
        } catch (err) {
          // The model folder is complete and stays; only the hand-over failed.
          process.stderr.write(`rmserve train: exported ${result.outDir} but could not promote it: ${(err as Error).message}\n`);
          process.exitCode = 1;
        }
      }
      console.log(JSON.stringify({
        out: result.outDir, validation_accuracy: m?.validation?.accuracy ?? null, test_accuracy: m?.test?.accuracy ?? null,
        ...(opts.promote ? { promoted } : {}),
      }));
    });
}
