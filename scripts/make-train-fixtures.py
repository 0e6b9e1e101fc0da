#!/usr/bin/python3
"""Builds the trainer's PyTorch parity fixtures in test/fixtures/train (issue 11).

Run with Debian's torch (`apt-get install -y python3-torch`; no transformers, no safetensors
package needed):

    /usr/bin/python3 scripts/make-train-fixtures.py

Each fixture is a tiny random Hugging Face checkpoint folder, config.json + safetensors, written
the way transformers' save_pretrained writes it, of a model coded here in plain torch after
transformers' modeling_llama.py / modeling_qwen2.py / modeling_qwen3.py / modeling_gpt2.py
(transformers cannot be installed here). Beside it, what PyTorch computes for a fixed batch of
three right-padded preference pairs:

  reference.json          the batch (input_ids, attention_mask, response starts, objective per
                          pair), the rewards of all six rows, the Bradley-Terry loss
                          mean(softplus(-(r_chosen - r_rejected))) and log pi(response | prompt)
                          of each row through the LM head (where the model has one); float32 as
                          transformers runs, and float64 for scale
  reference.safetensors   d loss / d parameter for every tensor of the checkpoint, under its
                          transformers name and layout, and, for the *ForCausalLM fixtures (no
                          score layer of their own), the reward head the reference used
                          (reward_head.weight [K, C]) with its gradient

test/train-hf-parity.test.ts loads every folder with the trainer's --init-from loader and matches
these. The committed folders (a few hundred kB) let CI check parity without torch.

The fixtures, chosen so that every mapping and option the loader reads is exercised:
  llama        LlamaForCausalLM, GQA (4 query / 2 kv heads), untied lm_head, rope_scaling llama3
               (one frequency kept, one blended, two slowed), float32, one file
  llama-bias   LlamaForSequenceClassification, attention_bias + mlp_bias, rope_scaling linear,
               untied embeddings without an LM head, float32
  qwen2        Qwen2ForSequenceClassification with two labels (id2label), q/k/v biases, tied
               embeddings, bfloat16, two shards + model.safetensors.index.json
  qwen3        Qwen3ForCausalLM, q/k norms, head_dim 16 with hidden 32 and 4 heads (H*D != C),
               tied embeddings, float16, sliding-window fields present but off
  gpt2         GPT2LMHeadModel ("transformer." prefix), float32
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F
from hf_modeling import Conv1D, apply_rotary_pos_emb, gelu_new, repeat_kv, rotate_half  # noqa: E402 (scripts/ is on sys.path)

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "test" / "fixtures" / "train"

VOCAB = 320
PAD = 0  # never drawn for a real token, so transformers' last-non-pad rule and the mask agree


# ---------------------------------------------------------------------------------------------
# The models. `dt` is the compute dtype (float32 as transformers runs; float64 for the scale
# check); RMSNorm, RoPE and softmax upcast to float32 in transformers, which for a float64 run
# would narrow, so they compute in max(dt, float32) here.
# ---------------------------------------------------------------------------------------------
@dataclass
class Spec:
    name: str
    kind: str  # llama | qwen2 | qwen3 | gpt2
    task: str  # causal-lm | seq-cls
    hidden: int = 32
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    head_dim: Optional[int] = None
    intermediate: int = 64
    rms_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: Optional[dict] = None
    max_positions: int = 256
    tie: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    labels: list = field(default_factory=lambda: ["reward"])
    storage: str = "F32"  # F32 | F16 | BF16
    shards: int = 1
    seed: int = 0

    @property
    def d(self) -> int:
        return self.head_dim or self.hidden // self.heads


class RMSNorm(nn.Module):
    """LlamaRMSNorm (= Qwen2RMSNorm = Qwen3RMSNorm): variance in float32, weight applied after."""

    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        up = torch.float64 if input_dtype == torch.float64 else torch.float32
        hidden_states = hidden_states.to(up)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


def rope_inv_freq(spec: Spec) -> torch.Tensor:
    """modeling_rope_utils: _compute_default_rope_parameters, then the linear or llama3 rewrite."""
    dim = spec.d
    inv_freq = 1.0 / (spec.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    s = spec.rope_scaling
    if s is None:
        return inv_freq
    if s["rope_type"] == "linear":
        return inv_freq / s["factor"]
    assert s["rope_type"] == "llama3"
    factor, low, high, old = s["factor"], s["low_freq_factor"], s["high_freq_factor"], s["original_max_position_embeddings"]
    low_freq_wavelen = old / low
    high_freq_wavelen = old / high
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old / wavelen - low) / (high - low)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


class RotaryEmbedding(nn.Module):
    """LlamaRotaryEmbedding.forward: freqs = inv_freq @ position_ids in float32, emb = cat(freqs, freqs)."""

    def __init__(self, spec: Spec):
        super().__init__()
        self.register_buffer("inv_freq", rope_inv_freq(spec), persistent=False)

    def forward(self, x, position_ids):
        up = torch.float64 if x.dtype == torch.float64 else torch.float32
        inv_freq_expanded = self.inv_freq[None, :, None].to(up).expand(position_ids.shape[0], -1, 1)
        position_ids_expanded = position_ids[:, None, :].to(up)
        freqs = (inv_freq_expanded @ position_ids_expanded).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


# rotate_half, apply_rotary_pos_emb, repeat_kv, Conv1D and gelu_new: transformers' own, in scripts/hf_modeling.py.


def additive_mask(attention_mask, dtype):
    """The 4-D eager mask [B, 1, T, T]: 0 where query t may see key s (s <= t, not padding), the dtype's minimum elsewhere."""
    T = attention_mask.shape[1]
    causal = torch.arange(T)[None, :] <= torch.arange(T)[:, None]
    allowed = causal[None, None, :, :] & attention_mask[:, None, None, :].bool()
    return torch.where(allowed, torch.zeros((), dtype=dtype), torch.full((), torch.finfo(dtype).min, dtype=dtype))


class Attention(nn.Module):
    """LlamaAttention / Qwen2Attention (q/k/v bias, none on o) / Qwen3Attention (q_norm, k_norm), eager path."""

    def __init__(self, spec: Spec):
        super().__init__()
        self.spec = spec
        self.head_dim = spec.d
        self.num_key_value_groups = spec.heads // spec.kv_heads
        self.scaling = self.head_dim**-0.5
        qkv_bias = True if spec.kind == "qwen2" else spec.attention_bias
        o_bias = False if spec.kind == "qwen2" else spec.attention_bias
        self.q_proj = nn.Linear(spec.hidden, spec.heads * self.head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(spec.hidden, spec.kv_heads * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(spec.hidden, spec.kv_heads * self.head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(spec.heads * self.head_dim, spec.hidden, bias=o_bias)
        if spec.kind == "qwen3":
            self.q_norm = RMSNorm(self.head_dim, spec.rms_eps)
            self.k_norm = RMSNorm(self.head_dim, spec.rms_eps)

    def forward(self, hidden_states, cos, sin, mask):
        hidden_shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        q = self.q_proj(hidden_states).view(hidden_shape)
        k = self.k_proj(hidden_states).view(hidden_shape)
        if self.spec.kind == "qwen3":
            q = self.q_norm(q)
            k = self.k_norm(k)
        query = q.transpose(1, 2)
        key = k.transpose(1, 2)
        value = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        query, key = apply_rotary_pos_emb(query, key, cos, sin)
        key_states = repeat_kv(key, self.num_key_value_groups)
        value_states = repeat_kv(value, self.num_key_value_groups)
        attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * self.scaling
        attn_weights = attn_weights + mask
        up = torch.float64 if query.dtype == torch.float64 else torch.float32
        attn_weights = F.softmax(attn_weights, dim=-1, dtype=up).to(query.dtype)
        attn_output = torch.matmul(attn_weights, value_states).transpose(1, 2).contiguous()
        return self.o_proj(attn_output.reshape(*hidden_states.shape[:-1], -1))


class MLP(nn.Module):
    """LlamaMLP: down(silu(gate(x)) * up(x))."""

    def __init__(self, spec: Spec):
        super().__init__()
        self.gate_proj = nn.Linear(spec.hidden, spec.intermediate, bias=spec.mlp_bias)
        self.up_proj = nn.Linear(spec.hidden, spec.intermediate, bias=spec.mlp_bias)
        self.down_proj = nn.Linear(spec.intermediate, spec.hidden, bias=spec.mlp_bias)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, spec: Spec):
        super().__init__()
        self.self_attn = Attention(spec)
        self.mlp = MLP(spec)
        self.input_layernorm = RMSNorm(spec.hidden, spec.rms_eps)
        self.post_attention_layernorm = RMSNorm(spec.hidden, spec.rms_eps)

    def forward(self, hidden_states, cos, sin, mask):
        residual = hidden_states
        hidden_states = residual + self.self_attn(self.input_layernorm(hidden_states), cos, sin, mask)
        residual = hidden_states
        return residual + self.mlp(self.post_attention_layernorm(hidden_states))


class LlamaModel(nn.Module):
    """LlamaModel / Qwen2Model / Qwen3Model: embed, layers, final norm; position_ids = arange(T)."""

    def __init__(self, spec: Spec):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, spec.hidden, PAD)
        self.layers = nn.ModuleList([DecoderLayer(spec) for _ in range(spec.layers)])
        self.norm = RMSNorm(spec.hidden, spec.rms_eps)
        self.rotary_emb = RotaryEmbedding(spec)

    def forward(self, input_ids, attention_mask):
        hidden_states = self.embed_tokens(input_ids)
        position_ids = torch.arange(input_ids.shape[1]).unsqueeze(0)
        cos, sin = self.rotary_emb(hidden_states, position_ids)
        mask = additive_mask(attention_mask, hidden_states.dtype)
        for layer in self.layers:
            hidden_states = layer(hidden_states, cos, sin, mask)
        return self.norm(hidden_states)


class GPT2Attention(nn.Module):
    def __init__(self, spec: Spec):
        super().__init__()
        self.head_dim = spec.hidden // spec.heads
        self.split_size = spec.hidden
        self.c_attn = Conv1D(3 * spec.hidden, spec.hidden)
        self.c_proj = Conv1D(spec.hidden, spec.hidden)

    def forward(self, hidden_states, mask):
        query, key, value = self.c_attn(hidden_states).split(self.split_size, dim=2)
        shape = (hidden_states.shape[0], hidden_states.shape[1], -1, self.head_dim)
        query, key, value = (t.view(shape).transpose(1, 2) for t in (query, key, value))
        attn_weights = torch.matmul(query, key.transpose(-1, -2))
        attn_weights = attn_weights / torch.full([], value.size(-1) ** 0.5, dtype=attn_weights.dtype)
        attn_weights = F.softmax(attn_weights + mask, dim=-1).type(value.dtype)
        attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
        return self.c_proj(attn_output.reshape(hidden_states.shape[0], hidden_states.shape[1], -1))


class GPT2MLP(nn.Module):
    def __init__(self, spec: Spec):
        super().__init__()
        self.c_fc = Conv1D(spec.intermediate, spec.hidden)
        self.c_proj = Conv1D(spec.hidden, spec.intermediate)

    def forward(self, x):
        return self.c_proj(gelu_new(self.c_fc(x)))


class GPT2Block(nn.Module):
    def __init__(self, spec: Spec):
        super().__init__()
        self.ln_1 = nn.LayerNorm(spec.hidden, eps=1e-5)
        self.attn = GPT2Attention(spec)
        self.ln_2 = nn.LayerNorm(spec.hidden, eps=1e-5)
        self.mlp = GPT2MLP(spec)

    def forward(self, hidden_states, mask):
        hidden_states = self.attn(self.ln_1(hidden_states), mask) + hidden_states
        return hidden_states + self.mlp(self.ln_2(hidden_states))


class GPT2Model(nn.Module):
    def __init__(self, spec: Spec):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, spec.hidden)
        self.wpe = nn.Embedding(spec.max_positions, spec.hidden)
        self.h = nn.ModuleList([GPT2Block(spec) for _ in range(spec.layers)])
        self.ln_f = nn.LayerNorm(spec.hidden, eps=1e-5)

    def forward(self, input_ids, attention_mask):
        position_ids = torch.arange(input_ids.shape[1]).unsqueeze(0)
        hidden_states = self.wte(input_ids) + self.wpe(position_ids)
        mask = additive_mask(attention_mask, hidden_states.dtype)
        for block in self.h:
            hidden_states = block(hidden_states, mask)
        return self.ln_f(hidden_states)


class RewardModel(nn.Module):
    """*ForSequenceClassification (score: bias-free Linear(C, K) on every position, read at the
    last non-pad token), or *ForCausalLM with a reward head beside it that is not saved with the
    checkpoint (the trainer makes a new one; the test feeds it this one)."""

    def __init__(self, spec: Spec):
        super().__init__()
        self.spec = spec
        if spec.kind == "gpt2":
            self.transformer = GPT2Model(spec)
        else:
            self.model = LlamaModel(spec)
        if spec.task == "seq-cls":
            self.score = nn.Linear(spec.hidden, len(spec.labels), bias=False)
        else:
            self.reward_head = nn.Linear(spec.hidden, len(spec.labels), bias=False)
            if spec.kind != "gpt2" and not spec.tie:
                self.lm_head = nn.Linear(spec.hidden, VOCAB, bias=False)

    def lm_weight(self):
        if self.spec.kind == "gpt2":
            return self.transformer.wte.weight
        if self.spec.tie:
            return self.model.embed_tokens.weight
        return self.lm_head.weight if hasattr(self, "lm_head") else None

    def forward(self, input_ids, attention_mask):
        body = self.transformer if self.spec.kind == "gpt2" else self.model
        hidden_states = body(input_ids, attention_mask)
        head = self.score if self.spec.task == "seq-cls" else self.reward_head
        logits = head(hidden_states)
        # transformers' rule: the last token that is not config.pad_token_id
        non_pad_mask = (input_ids != PAD).to(torch.int32)
        token_indices = torch.arange(input_ids.shape[-1], dtype=torch.int32)
        last_non_pad_token = (token_indices * non_pad_mask).argmax(-1)
        assert torch.equal(last_non_pad_token, attention_mask.sum(-1) - 1), "pad id inside a row"
        return logits[torch.arange(input_ids.shape[0]), last_non_pad_token], hidden_states


# ---------------------------------------------------------------------------------------------
# Weights: larger than transformers' init so every token and every parameter moves the reward
# by O(1) (a mapping mistake shows as a large difference, not 1e-5), then rounded to the storage
# dtype, so that PyTorch computes with exactly the values the checkpoint holds.
# ---------------------------------------------------------------------------------------------
def randomize(model: RewardModel, spec: Spec) -> None:
    gen = torch.Generator().manual_seed(spec.seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or ((".ln_" in name or "ln_f" in name) and name.endswith(".weight")):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif p.dim() == 2 and ("embed_tokens" in name or ".wte." in name or ".wpe." in name):
                p.copy_(torch.randn(p.shape, generator=gen))
            elif p.dim() == 2:
                fan_in = p.shape[0] if isinstance(dict(model.named_modules()).get(name.rsplit(".", 1)[0]), Conv1D) else p.shape[1]
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            else:
                raise AssertionError(name)
            store = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[spec.storage]
            p.copy_(p.to(store).to(torch.float32))


def saved_tensors(model: RewardModel, spec: Spec) -> dict:
    """What save_pretrained writes: the state dict, without the reward head of a *ForCausalLM
    (not part of it) and without a tied lm_head (transformers drops tied duplicates)."""
    out = {}
    for name, p in model.state_dict().items():
        if name.startswith("reward_head."):
            continue
        out[name] = p
    return out


# ---------------------------------------------------------------------------------------------
# safetensors, by hand: u64 LE header length, JSON header (padded with spaces to 8 bytes), data.
# ---------------------------------------------------------------------------------------------
DTYPE = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def tensor_bytes(t: torch.Tensor, dtype: str) -> bytes:
    t = t.detach().to(DTYPE[dtype]).contiguous()
    if dtype == "BF16":
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path: Path, tensors: dict, dtype: str) -> int:
    header = {"__metadata__": {"format": "pt"}}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        data = tensor_bytes(tensors[name], dtype)
        header[name] = {"dtype": dtype, "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    return offset


def write_checkpoint(folder: Path, tensors: dict, spec: Spec) -> None:
    for old in folder.glob("model*.safetensors*"):
        old.unlink()
    if spec.shards == 1:
        write_safetensors(folder / "model.safetensors", tensors, spec.storage)
        return
    names = sorted(tensors)
    per = math.ceil(len(names) / spec.shards)
    weight_map = {}
    total = 0
    for k in range(spec.shards):
        shard = f"model-{k + 1:05d}-of-{spec.shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[k * per : (k + 1) * per]}
        total += write_safetensors(folder / shard, part, spec.storage)
        weight_map.update({n: shard for n in part})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def config_json(spec: Spec) -> dict:
    cls = {"llama": "Llama", "qwen2": "Qwen2", "qwen3": "Qwen3", "gpt2": "GPT2"}[spec.kind]
    head = "ForSequenceClassification" if spec.task == "seq-cls" else ("LMHeadModel" if spec.kind == "gpt2" else "ForCausalLM")
    torch_dtype = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[spec.storage]
    labels = {"id2label": {str(i): l for i, l in enumerate(spec.labels)}, "label2id": {l: i for i, l in enumerate(spec.labels)}} if spec.task == "seq-cls" else {}
    if spec.kind == "gpt2":
        return {
            "architectures": [f"{cls}{head}"], "model_type": "gpt2", "vocab_size": VOCAB, "n_positions": spec.max_positions,
            "n_embd": spec.hidden, "n_layer": spec.layers, "n_head": spec.heads, "n_inner": spec.intermediate,
            "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1,
            "initializer_range": 0.02, "scale_attn_weights": True, "use_cache": True, "bos_token_id": 1, "eos_token_id": 1,
            "torch_dtype": torch_dtype, "transformers_version": "4.46.0", **labels,
        }
    config = {
        "architectures": [f"{cls}{head}"], "model_type": spec.kind, "vocab_size": VOCAB, "hidden_size": spec.hidden,
        "intermediate_size": spec.intermediate, "num_hidden_layers": spec.layers, "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads, "hidden_act": "silu", "max_position_embeddings": spec.max_positions,
        "rms_norm_eps": spec.rms_eps, "rope_theta": spec.rope_theta, "rope_scaling": spec.rope_scaling,
        "tie_word_embeddings": spec.tie, "attention_dropout": 0.0, "initializer_range": 0.02, "use_cache": True,
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": PAD, "torch_dtype": torch_dtype, "transformers_version": "4.46.0", **labels,
    }
    if spec.kind == "llama":
        config.update({"attention_bias": spec.attention_bias, "mlp_bias": spec.mlp_bias, "head_dim": spec.d, "pretraining_tp": 1})
    if spec.kind in ("qwen2", "qwen3"):
        config.update({"use_sliding_window": False, "sliding_window": 4096, "max_window_layers": spec.layers})
    if spec.kind == "qwen3":
        config.update({"head_dim": spec.d, "attention_bias": spec.attention_bias})
    return config


# ---------------------------------------------------------------------------------------------
# The batch and what PyTorch computes on it.
# ---------------------------------------------------------------------------------------------
LENGTHS = [7, 12, 5, 9, 12, 3]  # chosen rows 0..2, rejected rows 3..5
STARTS = [3, 5, 2, 4, 6, 1]  # where each response begins (log pi counts from here)


def batch(spec: Spec):
    gen = torch.Generator().manual_seed(1000 + spec.seed)
    T = max(LENGTHS)
    ids = torch.zeros(len(LENGTHS), T, dtype=torch.int64)
    mask = torch.zeros(len(LENGTHS), T, dtype=torch.int64)
    for r, n in enumerate(LENGTHS):
        ids[r, :n] = torch.randint(1, VOCAB, (n,), generator=gen)
        mask[r, :n] = 1
    objective = [k % len(spec.labels) for k in range(len(LENGTHS) // 2)]
    return ids, mask, objective


def response_logp(model: RewardModel, hidden, ids):
    w = model.lm_weight()
    if w is None:
        return None
    logp = F.log_softmax(hidden @ w.t(), dim=-1)  # [B, T, V]
    out = []
    for r, n in enumerate(LENGTHS):
        out.append(sum(logp[r, t - 1, ids[r, t]] for t in range(max(1, STARTS[r]), n)))
    return torch.stack(out)


def run(model: RewardModel, ids, mask, objective):
    rewards, hidden = model(ids, mask)
    P = len(objective)
    cols = torch.tensor(objective)
    chosen = rewards[:P][torch.arange(P), cols]
    rejected = rewards[P:][torch.arange(P), cols]
    loss = F.softplus(-(chosen - rejected)).mean()
    return rewards, loss, response_logp(model, hidden, ids)


def dump_json(value, indent: str = "") -> str:
    """JSON with objects one key a line and lists of numbers (or of such lists) on one line each."""
    if isinstance(value, dict):
        inner = indent + "  "
        items = [f"{inner}{json.dumps(k)}: {dump_json(v, inner).lstrip()}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}" + ("\n" if indent == "" else "")
    if isinstance(value, list) and value and isinstance(value[0], list):
        inner = indent + "  "
        return "[\n" + ",\n".join(inner + json.dumps(v) for v in value) + "\n" + indent + "]"
    return json.dumps(value)


def build(spec: Spec) -> dict:
    torch.manual_seed(spec.seed)
    model = RewardModel(spec)
    randomize(model, spec)
    folder = OUT / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config_json(spec), indent=2) + "\n")
    write_checkpoint(folder, saved_tensors(model, spec), spec)

    ids, mask, objective = batch(spec)
    model.zero_grad()
    rewards, loss, logp = run(model, ids, mask, objective)
    loss.backward()
    # parameters the loss does not read (an untied lm_head under BT) have no grad: zeros
    grads = {name: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().clone() for name, p in model.named_parameters()}
    with torch.no_grad():
        r64, l64, lp64 = run(model.double(), ids, mask, objective)
    record = {
        "hf_class": config_json(spec)["architectures"][0],
        "objectives": spec.labels,
        "batch": {
            "input_ids": ids.tolist(), "attention_mask": mask.tolist(), "response_starts": STARTS,
            "objective": objective, "pad_id": PAD,
        },
        "float32": {
            "rewards": rewards.detach().tolist(), "loss": loss.item(),
            "logp": None if logp is None else logp.detach().tolist(),
        },
        "float64": {"rewards": r64.tolist(), "loss": l64.item(), "logp": None if lp64 is None else lp64.tolist()},
        "max_abs_float32_vs_float64": {
            "rewards": (rewards.detach().double() - r64).abs().max().item(),
            "loss": abs(loss.item() - l64.item()),
        },
    }
    (folder / "reference.json").write_text(dump_json(record))
    reference = {f"grad.{n}": g for n, g in grads.items()}
    if spec.task == "causal-lm":
        reference["reward_head.weight"] = model.reward_head.weight.detach().float()
    write_safetensors(folder / "reference.safetensors", {k: v.float() for k, v in reference.items()}, "F32")
    return record


SPECS = [
    Spec(
        "llama", "llama", "causal-lm", seed=1,
        # original 64 positions: with D 8 and theta 1e4 the wavelengths 6.3 (kept), 63 (blended), 628 and 6283 (slowed)
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
    ),
    Spec(
        "llama-bias", "llama", "seq-cls", seed=2, kv_heads=4, attention_bias=True, mlp_bias=True, rms_eps=1e-5,
        rope_scaling={"rope_type": "linear", "factor": 2.0},
    ),
    Spec("qwen2", "qwen2", "seq-cls", seed=3, tie=True, labels=["helpful", "harmless"], storage="BF16", shards=2, rope_theta=1000000.0),
    Spec("qwen3", "qwen3", "causal-lm", seed=4, head_dim=16, tie=True, storage="F16", rope_theta=1000000.0),
    Spec("gpt2", "gpt2", "causal-lm", seed=5, kv_heads=4, max_positions=64, intermediate=128),
]


def main() -> None:
    torch.set_num_threads(1)
    for spec in SPECS:
        record = build(spec)
        print(f"{spec.name}: loss {record['float32']['loss']:.6f}, float32 vs float64: rewards {record['max_abs_float32_vs_float64']['rewards']:.2e}, "
              f"loss {record['max_abs_float32_vs_float64']['loss']:.2e}")


if __name__ == "__main__":
    main()
