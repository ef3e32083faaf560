"""Per-family maps between HF checkpoint tensor names and jalign parameter paths.

Each `Entry` ties one HF tensor to one or more jalign parameters with a layout change:
- "copy": same array;
- "transpose": a torch `nn.Linear` weight [out, in] <-> a jalign kernel [in, out];
- "split": GPT-2's fused `c_attn` Conv1D (already [in, out]) <-> q/k/v kernels (or biases),
  split in three along the last axis.
Paths are tuples with integer layer indices, as in the unscanned params dict.
"""

from __future__ import annotations

import dataclasses

from jalign.models.config import ModelConfig

Path = tuple[str | int, ...]
KINDS = ("copy", "transpose", "split")


@dataclasses.dataclass(frozen=True)
class Entry:
    hf_name: str
    targets: tuple[Path, ...]
    kind: str = "copy"


def _llama_like(cfg: ModelConfig, head: str) -> list[Entry]:
    """Llama, Mistral, Qwen2, Qwen3 and Gemma 2 share HF's `model.layers.{i}.*` naming."""
    gemma = cfg.model_type == "gemma2"
    entries = [Entry("model.embed_tokens.weight", (("embed", "embedding"),))]
    for i in range(cfg.num_layers):
        hf = f"model.layers.{i}"
        layer = ("layers", i)
        attn = (*layer, "attn")
        entries.append(Entry(f"{hf}.input_layernorm.weight", ((*layer, "attn_norm", "scale"),)))
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            entries.append(
                Entry(f"{hf}.self_attn.{proj}.weight", ((*attn, proj, "kernel"),), "transpose")
            )
        biased = ("q_proj", "k_proj", "v_proj") if cfg.qkv_bias else ()
        for proj in (*biased, *(("o_proj",) if cfg.o_bias else ())):
            entries.append(Entry(f"{hf}.self_attn.{proj}.bias", ((*attn, proj, "bias"),)))
        if cfg.qk_norm:
            entries.append(Entry(f"{hf}.self_attn.q_norm.weight", ((*attn, "q_norm", "scale"),)))
            entries.append(Entry(f"{hf}.self_attn.k_norm.weight", ((*attn, "k_norm", "scale"),)))
        if gemma:
            entries += [
                Entry(
                    f"{hf}.post_attention_layernorm.weight", ((*layer, "post_attn_norm", "scale"),)
                ),
                Entry(f"{hf}.pre_feedforward_layernorm.weight", ((*layer, "mlp_norm", "scale"),)),
                Entry(
                    f"{hf}.post_feedforward_layernorm.weight", ((*layer, "post_mlp_norm", "scale"),)
                ),
            ]
        else:
            entries.append(
                Entry(f"{hf}.post_attention_layernorm.weight", ((*layer, "mlp_norm", "scale"),))
            )
        for proj in ("gate_proj", "up_proj", "down_proj"):
            entries.append(
                Entry(f"{hf}.mlp.{proj}.weight", ((*layer, "mlp", proj, "kernel"),), "transpose")
            )
            if cfg.mlp_bias:
                entries.append(Entry(f"{hf}.mlp.{proj}.bias", ((*layer, "mlp", proj, "bias"),)))
    entries.append(Entry("model.norm.weight", (("final_norm", "scale"),)))
    return entries + _head_entries(cfg, head)


def _gpt2(cfg: ModelConfig, head: str) -> list[Entry]:
    entries = [
        Entry("transformer.wte.weight", (("embed", "embedding"),)),
        Entry("transformer.wpe.weight", (("pos_embed", "embedding"),)),
    ]
    for i in range(cfg.num_layers):
        hf = f"transformer.h.{i}"
        layer = ("layers", i)
        attn = (*layer, "attn")
        qkv = tuple((*attn, p) for p in ("q_proj", "k_proj", "v_proj"))
        entries += [
            Entry(f"{hf}.ln_1.weight", ((*layer, "attn_norm", "scale"),)),
            Entry(f"{hf}.ln_1.bias", ((*layer, "attn_norm", "bias"),)),
            Entry(f"{hf}.attn.c_attn.weight", tuple((*p, "kernel") for p in qkv), "split"),
            Entry(f"{hf}.attn.c_attn.bias", tuple((*p, "bias") for p in qkv), "split"),
            Entry(f"{hf}.attn.c_proj.weight", ((*attn, "o_proj", "kernel"),)),
            Entry(f"{hf}.attn.c_proj.bias", ((*attn, "o_proj", "bias"),)),
            Entry(f"{hf}.ln_2.weight", ((*layer, "mlp_norm", "scale"),)),
            Entry(f"{hf}.ln_2.bias", ((*layer, "mlp_norm", "bias"),)),
            Entry(f"{hf}.mlp.c_fc.weight", ((*layer, "mlp", "up_proj", "kernel"),)),
            Entry(f"{hf}.mlp.c_fc.bias", ((*layer, "mlp", "up_proj", "bias"),)),
            Entry(f"{hf}.mlp.c_proj.weight", ((*layer, "mlp", "down_proj", "kernel"),)),
            Entry(f"{hf}.mlp.c_proj.bias", ((*layer, "mlp", "down_proj", "bias"),)),
        ]
    entries += [
        Entry("transformer.ln_f.weight", (("final_norm", "scale"),)),
        Entry("transformer.ln_f.bias", (("final_norm", "bias"),)),
    ]
    return entries + _head_entries(cfg, head)


def _head_entries(cfg: ModelConfig, head: str) -> list[Entry]:
    if head == "scalar":
        # HF's *ForSequenceClassification score is [1, D] without a bias; jalign's reward/value
        # head has one (the RLHF reward normalisation lives in it), exported as `score.bias`.
        return [
            Entry("score.weight", (("score", "kernel"),), "transpose"),
            Entry("score.bias", (("score", "bias"),)),
        ]
    if cfg.tie_word_embeddings:
        return []
    return [Entry("lm_head.weight", (("lm_head", "kernel"),), "transpose")]


def tensor_map(cfg: ModelConfig, head: str = "lm") -> list[Entry]:
    """Every HF tensor of a `cfg` model with the given head, and its jalign parameters."""
    if cfg.model_type == "gpt2":
        return _gpt2(cfg, head)
    return _llama_like(cfg, head)


def strip_prefix_aliases(name: str, model_type: str) -> str:
    """Accept GPT-2 checkpoints saved without the `transformer.` prefix (the bare GPT2Model)."""
    if model_type == "gpt2" and not name.startswith(("transformer.", "lm_head.", "score.")):
        return f"transformer.{name}"
    return name
