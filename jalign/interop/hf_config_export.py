"""The HF `config.json` of an exported model: the source model's, or one written from `ModelConfig`.

`export_config` keeps the source `config.json` when there is one (so fields jalign does not model,
like `initializer_range`, survive) and checks that it describes the same architecture as the
params being written. Without a source it writes a transformers-5 layout config for the family
(`rope_parameters`, `layer_types`, `dtype`), which `from_hf_dict` reads back to the same
`ModelConfig`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from jalign.errors import JalignError
from jalign.models import ModelConfig, from_hf_dict

# Fields that are jalign numerics choices rather than architecture.
_JALIGN_ONLY = ("dtype", "param_dtype", "remat", "scan_layers")
_CLASS_PREFIX = {
    "llama": "Llama",
    "mistral": "Mistral",
    "qwen2": "Qwen2",
    "qwen3": "Qwen3",
    "gemma2": "Gemma2",
    "gpt2": "GPT2",
}
_HF_ACTIVATION = {
    "silu": "silu",
    "gelu_tanh": "gelu_pytorch_tanh",
    "gelu_exact": "gelu",
    "relu": "relu",
}


def architecture_name(model_type: str, head: str) -> str:
    """The transformers class of a `model_type` checkpoint with an LM or scalar head."""
    prefix = _CLASS_PREFIX[model_type]
    if head == "scalar":
        return f"{prefix}ForSequenceClassification"
    return "GPT2LMHeadModel" if model_type == "gpt2" else f"{prefix}ForCausalLM"


def _token_ids(cfg: ModelConfig) -> dict[str, Any]:
    eos = cfg.eos_token_ids
    return dict(
        bos_token_id=cfg.bos_token_id,
        eos_token_id=(eos[0] if len(eos) == 1 else list(eos)) if eos else None,
        pad_token_id=cfg.pad_token_id,
    )


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


def _windows(cfg: ModelConfig) -> dict[str, Any]:
    windows = {w for w in cfg.sliding_windows if w is not None}
    if len(windows) > 1:
        raise JalignError(
            f"cannot write config.json: layers use different sliding windows {sorted(windows)}; "
            "HF configs have one `sliding_window`"
        )
    window = windows.pop() if windows else None
    if cfg.model_type == "mistral":
        return {"sliding_window": window}
    layer_types = [
        "full_attention" if w is None else "sliding_attention" for w in cfg.sliding_windows
    ]
    fields: dict[str, Any] = {"sliding_window": window, "layer_types": layer_types}
    if cfg.model_type in ("qwen2", "qwen3"):
        fields["use_sliding_window"] = window is not None
    return fields


def _gpt2_config(cfg: ModelConfig) -> dict[str, Any]:
    return dict(
        vocab_size=cfg.vocab_size,
        n_embd=cfg.hidden_size,
        n_layer=cfg.num_layers,
        n_head=cfg.num_heads,
        n_inner=cfg.intermediate_size,
        n_positions=cfg.max_position_embeddings,
        layer_norm_epsilon=cfg.norm_eps,
        activation_function="gelu_new" if cfg.activation == "gelu_tanh" else cfg.activation,
        scale_attn_weights=cfg.attn_scale is None,
        tie_word_embeddings=cfg.tie_word_embeddings,
    )


def _query_pre_attn_scalar(cfg: ModelConfig) -> float | int:
    """Gemma 2 scales queries by `query_pre_attn_scalar ** -0.5`; recover the (usually integer)
    scalar exactly so the config reads back to the same scale."""
    scalar = cfg.query_scale**-2
    nearest = round(scalar)
    return nearest if nearest**-0.5 == cfg.query_scale else scalar


def _llama_family_config(cfg: ModelConfig) -> dict[str, Any]:
    fields: dict[str, Any] = dict(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim,
        max_position_embeddings=cfg.max_position_embeddings,
        rms_norm_eps=cfg.norm_eps,
        rope_parameters=_rope_parameters(cfg),
        tie_word_embeddings=cfg.tie_word_embeddings,
        mlp_bias=cfg.mlp_bias,
        **_windows(cfg),
    )
    activation = _HF_ACTIVATION[cfg.activation]
    if cfg.model_type == "gemma2":
        fields.update(
            hidden_activation=activation,
            query_pre_attn_scalar=_query_pre_attn_scalar(cfg),
            attn_logit_softcapping=cfg.attn_logit_softcap,
            final_logit_softcapping=cfg.final_logit_softcap,
        )
    else:
        fields["hidden_act"] = activation
    if cfg.model_type != "qwen2":  # Qwen2 always has q/k/v biases and no o_proj bias
        fields["attention_bias"] = cfg.qkv_bias
    return fields


def generated_config(cfg: ModelConfig) -> dict[str, Any]:
    """A transformers-5 `config.json` dict for `cfg` (architecture fields only)."""
    body = _gpt2_config(cfg) if cfg.model_type == "gpt2" else _llama_family_config(cfg)
    return {"model_type": cfg.model_type, **body, **_token_ids(cfg)}


def architecture_mismatch(a: ModelConfig, b: ModelConfig) -> str | None:
    """The first architecture field on which two configs differ, as text; None if none does."""
    for field in dataclasses.fields(ModelConfig):
        if field.name in _JALIGN_ONLY:
            continue
        if getattr(a, field.name) != getattr(b, field.name):
            return f"{field.name}: {getattr(a, field.name)!r} vs {getattr(b, field.name)!r}"
    return None


def read_source_config(source: str | os.PathLike | dict) -> tuple[dict[str, Any], str]:
    """(config dict, where it came from) for a folder, a config.json path or a dict."""
    if isinstance(source, dict):
        return dict(source), "source_config"
    path = Path(source)
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise JalignError(f"{file}: no such config.json to export with")
    return json.loads(file.read_text()), str(file)


def export_config(
    cfg: ModelConfig, head: str, source: str | os.PathLike | dict | None = None
) -> dict[str, Any]:
    """The config.json to write next to exported weights of `cfg` with `head`."""
    if source is None:
        config = generated_config(cfg)
    else:
        config, where = read_source_config(source)
        mismatch = architecture_mismatch(from_hf_dict(config, where), cfg)
        if mismatch:
            raise JalignError(
                f"{where}: describes a different architecture than the params being saved "
                f"({mismatch}); pass the config the params were loaded with, or none"
            )
    config.pop("torch_dtype", None)
    config["dtype"] = cfg.param_dtype
    config["architectures"] = [architecture_name(cfg.model_type, head)]
    if head == "scalar":
        config.update(num_labels=1, id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
    return config
