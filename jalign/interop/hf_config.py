"""`ModelConfig` -> an HF `config.json` dict (transformers-5 layout) for each supported family.

Used when a model is exported without the config.json it came from (e.g. one built from a GGUF
file or in code). `jalign.models.from_hf_dict` reads the result back to the same `ModelConfig`.
"""

from __future__ import annotations

from typing import Any

from jalign.errors import JalignError
from jalign.models import ModelConfig

_ARCHITECTURE_PREFIX = {
    "llama": "Llama",
    "mistral": "Mistral",
    "qwen2": "Qwen2",
    "qwen3": "Qwen3",
    "gemma2": "Gemma2",
    "gpt2": "GPT2",
}
_HF_ACTIVATIONS = {
    "silu": "silu",
    "gelu_exact": "gelu",
    "gelu_tanh": "gelu_pytorch_tanh",
    "relu": "relu",
}


def architecture(cfg: ModelConfig, head: str) -> str:
    """The transformers class name of a `cfg` model with an "lm" or "scalar" head."""
    suffix = "ForSequenceClassification" if head == "scalar" else "ForCausalLM"
    if head == "scalar" and cfg.model_type == "gpt2":
        return "GPT2ForSequenceClassification"
    if cfg.model_type == "gpt2":
        return "GPT2LMHeadModel"
    return _ARCHITECTURE_PREFIX[cfg.model_type] + suffix


def head_fields(cfg: ModelConfig, head: str) -> dict[str, Any]:
    """config.json keys that select the head: architectures, and one label for a scalar head."""
    fields: dict[str, Any] = {"architectures": [architecture(cfg, head)]}
    if head == "scalar":
        fields.update(id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
    return fields


def _rope_parameters(cfg: ModelConfig) -> dict[str, Any]:
    rope = cfg.rope
    params: dict[str, Any] = {"rope_type": rope.rope_type, "rope_theta": rope.theta}
    if rope.rope_type in ("linear", "llama3"):
        params["factor"] = rope.factor
    if rope.rope_type == "llama3":
        params.update(
            low_freq_factor=rope.low_freq_factor,
            high_freq_factor=rope.high_freq_factor,
            original_max_position_embeddings=rope.original_max_position_embeddings,
        )
    return params


def _token_ids(cfg: ModelConfig) -> dict[str, Any]:
    eos = list(cfg.eos_token_ids)
    return {
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": eos[0] if len(eos) == 1 else (eos or None),
        "pad_token_id": cfg.pad_token_id,
    }


def _window_fields(cfg: ModelConfig) -> dict[str, Any]:
    windows = {w for w in cfg.sliding_windows if w is not None}
    if len(windows) > 1:
        raise JalignError(f"cannot export per-layer sliding windows of different sizes {windows}")
    window = windows.pop() if windows else None
    if cfg.model_type == "mistral":
        return {"sliding_window": window}
    if cfg.model_type == "llama":
        if window is not None:
            raise JalignError("cannot export a llama model with a sliding window")
        return {}
    layer_types = [
        "full_attention" if w is None else "sliding_attention" for w in cfg.sliding_windows
    ]
    fields: dict[str, Any] = {"sliding_window": window, "layer_types": layer_types}
    if cfg.model_type in ("qwen2", "qwen3"):
        fields["use_sliding_window"] = window is not None
    return fields


def _gpt2_config(cfg: ModelConfig) -> dict[str, Any]:
    return {
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_embd": cfg.hidden_size,
        "n_layer": cfg.num_layers,
        "n_head": cfg.num_heads,
        "n_inner": cfg.intermediate_size,
        "n_positions": cfg.max_position_embeddings,
        "layer_norm_epsilon": cfg.norm_eps,
        "activation_function": "gelu_new"
        if cfg.activation == "gelu_tanh"
        else _HF_ACTIVATIONS[cfg.activation],
        "scale_attn_weights": cfg.attn_scale is None,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        **_token_ids(cfg),
    }


def _decoder_config(cfg: ModelConfig) -> dict[str, Any]:
    config: dict[str, Any] = {
        "model_type": cfg.model_type,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.max_position_embeddings,
        "rms_norm_eps": cfg.norm_eps,
        "rope_parameters": _rope_parameters(cfg),
        "tie_word_embeddings": cfg.tie_word_embeddings,
        **_token_ids(cfg),
        **_window_fields(cfg),
    }
    activation = _HF_ACTIVATIONS[cfg.activation]
    if cfg.model_type == "gemma2":
        config.update(
            hidden_activation=activation,
            query_pre_attn_scalar=round(cfg.query_scale**-2, 6),
            attn_logit_softcapping=cfg.attn_logit_softcap,
            final_logit_softcapping=cfg.final_logit_softcap,
        )
    else:
        config["hidden_act"] = activation
    if cfg.model_type in ("llama", "qwen3"):
        config.update(attention_bias=cfg.qkv_bias, mlp_bias=cfg.mlp_bias)
    return config


def hf_config_dict(cfg: ModelConfig, head: str = "lm") -> dict[str, Any]:
    """The config.json transformers needs to rebuild a `cfg` model with the given head."""
    config = _gpt2_config(cfg) if cfg.model_type == "gpt2" else _decoder_config(cfg)
    return {**config, **head_fields(cfg, head), "dtype": cfg.param_dtype}
