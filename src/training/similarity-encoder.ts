// PCRM's similarity from a text encoder the user supplies (`--similarity-encoder model.onnx`):
// s = angular similarity of the mean-pooled last hidden states of the two responses. Any
// Hugging Face / optimum feature-extraction export works: inputs input_ids, attention_mask
// (int64 [B,T]) and optionally token_type_ids; output `last_hidden_state` [B,T,H] (or the first
// output), or an already pooled [B,H] sentence embedding, which is used as it is.
// The tokenizer is the export's tokenizer.json, beside model.onnx unless given.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { Tokenizer } from '@huggingface/tokenizers';
import { executionProviders } from '../model/onnx-session.js';
import { angularSimilarity, cosine, type ResponsePair } from './similarity.js';

export interface EncoderOptions {
  /** Default: tokenizer.json in the model's folder. */
  tokenizerPath?: string;
  /** Tokens kept per text (right truncation). Default: tokenizer_config's model_max_length, else 512. */
  maxLength?: number;
  /** Texts per ONNX run. Default 16. */
  batchSize?: number;
  device?: string;
}

const DEFAULT_MAX_LENGTH = 512;

type Json = Record<string, unknown>;

export class SimilarityEncoder {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly tokenizer: Tokenizer,
    private readonly padId: number,
    readonly maxLength: number,
    private readonly batchSize: number,
    private readonly outputName: string,
  ) {}

  static async create(modelPath: string, options: EncoderOptions = {}): Promise<SimilarityEncoder> {
    const tokenizerPath = options.tokenizerPath ?? join(dirname(modelPath), 'tokenizer.json');
    if (!existsSync(tokenizerPath)) throw new Error(`similarity encoder: ${tokenizerPath} is missing (pass the encoder's tokenizer.json)`);
    const configPath = join(dirname(tokenizerPath), 'tokenizer_config.json');
    const config = existsSync(configPath) ? (JSON.parse(readFileSync(configPath, 'utf8')) as Json) : {};
    const tokenizer = new Tokenizer(JSON.parse(readFileSync(tokenizerPath, 'utf8')) as Json, config);
    const configured = config.model_max_length;
    const maxLength =
      options.maxLength ??
      (typeof configured === 'number' && Number.isInteger(configured) && configured > 1 && configured < 1e9 ? configured : DEFAULT_MAX_LENGTH);
    const padToken = typeof config.pad_token === 'string' ? config.pad_token : undefined;
    const padId = (padToken === undefined ? undefined : tokenizer.token_to_id(padToken)) ?? 0;

    const session = await ort.InferenceSession.create(modelPath, {
      executionProviders: executionProviders(options.device ?? 'cpu'),
      graphOptimizationLevel: 'all',
    });
    for (const name of session.inputNames) {
      if (!['input_ids', 'attention_mask', 'token_type_ids'].includes(name)) {
        await session.release();
        throw new Error(`similarity encoder: unsupported input ${name} (expected input_ids, attention_mask, token_type_ids)`);
      }
    }
    if (!session.inputNames.includes('input_ids')) {
      await session.release();
      throw new Error('similarity encoder: the model has no input_ids input');
    }
    const outputName = session.outputNames.includes('last_hidden_state') ? 'last_hidden_state' : session.outputNames[0];
    if (outputName === undefined) throw new Error('similarity encoder: the model has no outputs');
    return new SimilarityEncoder(session, tokenizer, padId, maxLength, options.batchSize ?? 16, outputName);
  }

  /** Token ids of one text as the encoder sees it (special tokens added, right-truncated). */
  encode(text: string): number[] {
    const ids = this.tokenizer.encode(text, { add_special_tokens: true }).ids;
    return ids.length > this.maxLength ? ids.slice(0, this.maxLength) : ids;
  }

  /** One embedding per text, in input order; texts are batched by length to cut padding. */
  async embed(texts: readonly string[]): Promise<Float32Array[]> {
    const rows = texts.map((t) => this.encode(t));
    const order = rows.map((_, i) => i).sort((a, b) => (rows[a] as number[]).length - (rows[b] as number[]).length);
    const out = new Array<Float32Array>(texts.length);
    for (let start = 0; start < order.length; start += this.batchSize) {
      const idx = order.slice(start, start + this.batchSize);
      const embeddings = await this.run(idx.map((i) => rows[i] as number[]));
      idx.forEach((i, j) => (out[i] = embeddings[j] as Float32Array));
    }
    return out;
  }

  /** s for every pair: angular similarity of the embeddings of chosen and rejected. */
  async similarities(pairs: readonly ResponsePair[]): Promise<Float64Array> {
    const embeddings = await this.embed(pairs.flatMap((p) => [p.chosen, p.rejected]));
    return Float64Array.from(pairs, (_, i) => angularSimilarity(cosine(embeddings[2 * i] as Float32Array, embeddings[2 * i + 1] as Float32Array)));
  }

  async release(): Promise<void> {
    await this.session.release();
  }

  // rows: B token-id lists → B embeddings [H], masked mean over the real tokens.
  private async run(rows: readonly number[][]): Promise<Float32Array[]> {
    const batch = rows.length;
    const width = Math.max(1, ...rows.map((r) => r.length));
    const ids = new BigInt64Array(batch * width).fill(BigInt(this.padId));
    const mask = new BigInt64Array(batch * width);
    rows.forEach((row, b) => {
      row.forEach((id, t) => {
        ids[b * width + t] = BigInt(id);
        mask[b * width + t] = 1n;
      });
    });
    const dims = [batch, width];
    const feeds: Record<string, ort.Tensor> = { input_ids: new ort.Tensor('int64', ids, dims) };
    if (this.session.inputNames.includes('attention_mask')) feeds.attention_mask = new ort.Tensor('int64', mask, dims);
    if (this.session.inputNames.includes('token_type_ids')) feeds.token_type_ids = new ort.Tensor('int64', new BigInt64Array(batch * width), dims);
    const outputs = await this.session.run(feeds, [this.outputName]);
    const hidden = outputs[this.outputName] as ort.Tensor;
    const data = hidden.data as Float32Array;
    const result: Float32Array[] = [];
    if (hidden.dims.length === 2) {
      // Already pooled: [B, H].
      const h = hidden.dims[1] as number;
      for (let b = 0; b < batch; b++) result.push(data.slice(b * h, (b + 1) * h));
    } else if (hidden.dims.length === 3 && hidden.dims[1] === width) {
      // [B, T, H] → Σ_t mask·h_t / Σ_t mask.
      const h = hidden.dims[2] as number;
      rows.forEach((row, b) => {
        const sum = new Float32Array(h);
        for (let t = 0; t < row.length; t++) {
          const base = (b * width + t) * h;
          for (let k = 0; k < h; k++) sum[k] += data[base + k] as number;
        }
        for (let k = 0; k < h; k++) sum[k] /= Math.max(1, row.length);
        result.push(sum);
      });
    } else {
      throw new Error(`similarity encoder: output ${this.outputName} has dims [${hidden.dims.join(', ')}], expected [B, T, H] or [B, H]`);
    }
    for (const t of Object.values(outputs)) t.dispose();
    return result;
  }
}
