// JSON schemas shared by the routes (TypeBox, so the types and the validation are one thing).
import { Type, type Static } from '@sinclair/typebox';
import { AGGREGATE_NAMES, TRANSFORM_NAMES } from '../transforms/index.js';

export const ChatMessageSchema = Type.Object(
  {
    role: Type.Union([Type.Literal('system'), Type.Literal('user'), Type.Literal('assistant')]),
    content: Type.String(),
  },
  { additionalProperties: false },
);

// Reference responses to a prompt, for the LSC transform's r_ref: scored like items, through the
// same batcher and cache.
export const ReferenceSchema = Type.Object(
  { responses: Type.Array(Type.String(), { minItems: 1 }) },
  { additionalProperties: false },
);

export const ScoreItemSchema = Type.Union([
  Type.Object(
    {
      prompt: Type.Union([Type.String(), Type.Array(ChatMessageSchema, { minItems: 1 })]),
      // An empty response is legal: RL policies produce them and they deserve a (low) score, not an error.
      response: Type.String(),
      reference: Type.Optional(ReferenceSchema),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    { messages: Type.Array(ChatMessageSchema, { minItems: 1 }), reference: Type.Optional(ReferenceSchema) },
    { additionalProperties: false },
  ),
]);

export const TransformNameSchema = Type.Union(TRANSFORM_NAMES.map((name) => Type.Literal(name)));
export const AggregateNameSchema = Type.Union(AGGREGATE_NAMES.map((name) => Type.Literal(name)));
export const WeightsSchema = Type.Record(Type.String({ minLength: 1 }), Type.Number());
export const ReferenceQuantileSchema = Type.Number({ minimum: 0, maximum: 1 });
export const ReferenceScopeSchema = Type.String({
  minLength: 1,
  maxLength: 256,
  description:
    'Namespace of the per-prompt LSC reference cache this request reads and writes. Requests without one share a scope ' +
    'anyone can write to; give a training run its own unguessable scope so no other client can set its references.',
});

export const ErrorSchema = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String() }),
});

export const TruncationSchema = Type.Union([Type.Literal('left'), Type.Literal('right')]);

export const ModelSelectorSchema = Type.Union([
  Type.String({ minLength: 1 }),
  Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
]);

export type ModelSelector = Static<typeof ModelSelectorSchema>;

export function modelList(selector: ModelSelector | undefined): string[] | undefined {
  if (selector === undefined) return undefined;
  return typeof selector === 'string' ? [selector] : selector;
}
