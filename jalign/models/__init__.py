"""Decoder-only transformers built from Hugging Face `config.json` files."""

from jalign.models.config import SUPPORTED_MODEL_TYPES, ModelConfig, from_hf_dict, load_hf_config
from jalign.models.layers import take_columns
from jalign.models.transformer import (
    DecoderLM,
    KVCache,
    Params,
    abstract_model,
    apply,
    create_model,
    head_kernel,
    project,
    repeat_rows,
)

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "DecoderLM",
    "KVCache",
    "ModelConfig",
    "Params",
    "abstract_model",
    "apply",
    "create_model",
    "from_hf_dict",
    "head_kernel",
    "load_hf_config",
    "project",
    "repeat_rows",
    "take_columns",
]
