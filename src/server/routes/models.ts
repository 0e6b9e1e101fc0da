// GET /v1/models, GET /v1/models/:name — what is loaded, which version serves, and what failed.
// The list is also OpenAI's (`{object: "list", data: [{id, object: "model", created, owned_by}]}`,
// what OpenAI's SDK, vLLM and SGLang clients read): `object` and `data` sit beside rmserve's
// `models`, so neither kind of client loses a field. `data` lists the models that serve, each
// under its registry name with the aliases (rmserve.json `name`, config.json `_name_or_path`)
// the scoring routes also accept; /v1/models/:name takes an alias too.
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { unknownModel } from '../../scoring/errors.js';
import type { ModelVersion } from '../../scoring/model-version.js';
import type { ModelRegistry, ModelStatus } from '../../scoring/registry.js';
import { ErrorSchema } from '../schemas.js';

const Nullable = <T extends ReturnType<typeof Type.String>>(schema: T) => Type.Union([schema, Type.Null()]);

export const ModelStatusSchema = Type.Object({
  name: Type.String(),
  serving: Type.Union([
    Type.Null(),
    Type.Object({
      version: Type.String(),
      loaded_at: Type.String(),
      load_seconds: Type.Number(),
      objectives: Type.Array(Type.String()),
      max_length: Type.Integer(),
      pad_id: Type.Integer({ description: 'The id rows are padded with' }),
      pad_id_source: Type.String({ description: 'Which rule gave the pad id: config.pad_token_id, tokenizer pad_token, tokenizer eos_token, config.eos_token_id or default 0' }),
      padding_side: Type.String(),
      batching: Type.Object({
        max_batch_size: Type.Integer(),
        max_batch_tokens: Type.Integer(),
        calibrated: Type.Boolean({ description: 'true when the limits were chosen by timing batch sizes at load (--calibrate-batching)' }),
        calibration_seconds: Type.Optional(Type.Number()),
      }),
      instances: Type.Integer({ description: 'ONNX sessions of this version running batches side by side (--instances)' }),
      solo_threads: Type.Integer({ description: 'ORT threads of the session that runs batches that have the version to themselves (--solo-threads); 0: none' }),
      intra_op_threads: Type.Integer({ description: "ORT threads of each instance (--intra-op-threads); 0: ORT's default, every core" }),
      solo_placement: Type.Optional(Type.Object({
        main_thread: Type.Boolean({ description: 'true: the solo session runs on the event loop\'s thread, without the hand-off to an inference thread (--solo-inline-ms)' }),
        max_tokens: Type.Optional(Type.Integer({ description: 'most padded tokens of a batch run there; a longer lone batch is shared over the instances' })),
        reason: Type.String({ description: 'the load-time timing that placed it' }),
      })),
      layout_rule: Type.Optional(Type.String({ description: 'with --instances auto: what the rule chose and why' })),
      metrics: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    }),
  ]),
  versions: Type.Array(Type.String()),
  newest: Nullable(Type.String()),
  pinned: Nullable(Type.String()),
  previous: Nullable(Type.String()),
  loading: Nullable(Type.String()),
  unloaded: Type.Boolean(),
  last_error: Nullable(Type.String()),
  last_failure: Type.Union([
    Type.Null(),
    Type.Object({ version: Type.String(), message: Type.String(), at: Type.String(), source: Type.String() }),
  ]),
});

const OpenAiModelFields = {
  id: Type.String({ description: 'The name to send as `model`' }),
  object: Type.Literal('model'),
  created: Type.Integer({ description: 'Unix seconds when the serving version loaded (0 while none serves)' }),
  owned_by: Type.String(),
  aliases: Type.Array(Type.String(), { description: 'Other names the scoring routes accept for this model (rmserve.json name, config.json _name_or_path)' }),
};

export const OpenAiModelSchema = Type.Object({
  ...OpenAiModelFields,
  root: Type.String({ description: "vLLM's root: the model's Hugging Face id when its config names one, else its name" }),
  max_model_len: Type.Integer(),
});

const ModelListReply = Type.Object({
  object: Type.Literal('list'),
  data: Type.Array(OpenAiModelSchema, { description: 'The serving models, as OpenAI lists models' }),
  models: Type.Array(ModelStatusSchema, { description: "rmserve's status of every model, serving or not" }),
});

const ModelReply = Type.Intersect([ModelStatusSchema, Type.Object(OpenAiModelFields)]);

const OWNER = 'rmserve';

function openAiModel(model: ModelVersion): Static<typeof OpenAiModelSchema> {
  const aliases = model.aliases;
  return {
    id: model.name,
    object: 'model',
    created: Math.floor(model.loadedAt.getTime() / 1000),
    owned_by: OWNER,
    aliases,
    root: aliases.find((alias) => alias === model.spec.files.config._name_or_path) ?? model.name,
    max_model_len: model.spec.maxLength,
  };
}

/** The serving version called `name` or aliased so, if any. */
function servingByName(registry: ModelRegistry, name: string): ModelVersion | undefined {
  try {
    return registry.find(name);
  } catch {
    return undefined; // not served, or an alias of several: the status lookup says which
  }
}

export const modelRoutes: FastifyPluginAsync<{ registry: ModelRegistry }> = async (app, { registry }) => {
  app.get(
    '/v1/models',
    { schema: { summary: "List models and their serving versions (also OpenAI's model list)", response: { 200: ModelListReply } } },
    async () => ({
      object: 'list' as const,
      data: registry.names().map((name) => openAiModel(registry.get(name))),
      models: registry.status(),
    }),
  );
  app.get<{ Params: { name: string } }>(
    '/v1/models/:name',
    {
      schema: {
        summary: "One model and its versions, by name or alias (also OpenAI's model object)",
        params: Type.Object({ name: Type.String() }),
        response: { 200: ModelReply, '4xx': ErrorSchema },
      },
    },
    async (request) => {
      const requested = request.params.name;
      const serving = servingByName(registry, requested);
      const status: ModelStatus | undefined = registry.status().find((m) => m.name === (serving?.name ?? requested));
      if (status === undefined) throw unknownModel(requested);
      const openAi = serving === undefined ? { id: status.name, object: 'model' as const, created: 0, owned_by: OWNER, aliases: [] } : openAiModel(serving);
      return { ...status, id: openAi.id, object: openAi.object, created: openAi.created, owned_by: openAi.owned_by, aliases: openAi.aliases };
    },
  );
};
