// The rmserve.json manifest: what the trainer writes beside model.onnx and the server reads.
// Every field is optional except format_version, so a plain Hugging Face / optimum export
// (no manifest at all) still loads; see docs/model-format.md.
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

const ReferenceStats = Type.Object({
  // Quantiles of the model's reward over reference responses, keyed by the quantile as a
  // decimal string ("0.5", "0.85"); the LSC transform reads r_ref from here.
  quantiles: Type.Record(Type.String(), Type.Number()),
  mean: Type.Number(),
  std: Type.Number(),
  n: Type.Integer({ minimum: 0 }),
  source: Type.Optional(Type.String()),
});

export const ManifestSchema = Type.Object({
  format_version: Type.Literal(1),
  name: Type.Optional(Type.String()),
  version: Type.Optional(Type.String()),
  // Names of the K output columns of `logits`, in order (overrides config.json id2label).
  objectives: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
  max_length: Type.Optional(Type.Integer({ minimum: 2 })),
  truncation_side: Type.Optional(Type.Union([Type.Literal('left'), Type.Literal('right')])),
  padding_side: Type.Optional(Type.Union([Type.Literal('left'), Type.Literal('right')])),
  // How a {prompt, response} pair becomes text when the tokenizer has no chat template:
  // `{prompt}` and `{response}` are replaced; the response must come last.
  prompt_format: Type.Optional(Type.String()),
  // Per-objective reward statistics of reference responses (LSC reference, z-normalisation).
  reference: Type.Optional(Type.Record(Type.String(), ReferenceStats)),
  metrics: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  provenance: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
});

export type RmserveManifest = Static<typeof ManifestSchema>;
export type ReferenceStatistics = Static<typeof ReferenceStats>;

export const DEFAULT_PROMPT_FORMAT = '\n\nHuman: {prompt}\n\nAssistant: {response}';

export function parseManifest(json: unknown): RmserveManifest {
  if (!Value.Check(ManifestSchema, json)) {
    const first = [...Value.Errors(ManifestSchema, json)][0];
    throw new Error(`invalid rmserve.json at ${first?.path || '/'}: ${first?.message ?? 'unknown error'}`);
  }
  const manifest = json as RmserveManifest;
  const format = manifest.prompt_format;
  if (format !== undefined && (!format.includes('{response}') || !format.trimEnd().endsWith('{response}'))) {
    throw new Error('invalid rmserve.json: prompt_format must end with {response}');
  }
  return manifest;
}
