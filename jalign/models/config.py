"""`ModelConfig`: the architecture of a decoder-only transformer, read from an HF `config.json`.

One dataclass describes every supported family; the families differ only in the fields below
(norm kind, MLP gating, biases, positional scheme, Gemma-2's extra norms and soft-capping, ...).
`from_hf_dict` maps each family's `config.json` onto it and rejects what jalign cannot run
faithfully, so a model never loads with silently wrong numerics.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from jalign.errors import JalignError

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gpt2")
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")
DTYPES = ("float32", "bfloat16", "float16")

# HF activation names -> jalign activation names.
_ACTIVATIONS = {
    "silu": "silu",
    "swish": "silu",
    "gelu": "gelu_exact",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "relu": "relu",
}


@dataclasses.dataclass(frozen=True)
class RopeConfig:
    """Rotary embedding parameters (Su et al. 2021), including Llama-3's frequency scaling."""

    theta: float = 10000.0
    rope_type: str = "default"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture and numerics of a decoder-only transformer.

    `dtype` is the compute dtype of activations and matmuls; `param_dtype` the storage dtype of the
    parameters. Norms, softmax and logits-derived losses always run in float32.
    """

    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_position_embeddings: int
    norm_eps: float = 1e-6
    norm_kind: str = "rms"  # "rms" | "layernorm"
    norm_scale_offset: float = 0.0  # Gemma stores RMSNorm weights as w - 1: scale = 1 + w
    activation: str = "silu"
    gated_mlp: bool = True
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    sandwich_norms: bool = False  # Gemma-2: extra norms after attention and after the MLP
    position_kind: str = "rope"  # "rope" | "learned"
    rope: RopeConfig = dataclasses.field(default_factory=RopeConfig)
    tie_word_embeddings: bool = False
    embed_scale: float = 1.0  # Gemma multiplies embeddings by sqrt(hidden_size)
    attn_scale: float | None = None  # None: head_dim ** -0.5
    attn_logit_softcap: float | None = None
    final_logit_softcap: float | None = None
    # Per-layer sliding window (None: full attention), length num_layers.
    sliding_windows: tuple[int | None, ...] = ()
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int | None = None
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat: bool = False
    scan_layers: bool = False

    def __post_init__(self) -> None:
        if not self.sliding_windows:
            object.__setattr__(self, "sliding_windows", (None,) * self.num_layers)
        for key in ("dtype", "param_dtype"):
            if getattr(self, key) not in DTYPES:
                raise JalignError(
                    f"model.{key}={getattr(self, key)!r} is not supported; allowed: {', '.join(DTYPES)}"
                )
        if self.num_heads % self.num_kv_heads:
            raise JalignError(
                f"num_attention_heads={self.num_heads} is not a multiple of "
                f"num_key_value_heads={self.num_kv_heads}"
            )
        if len(self.sliding_windows) != self.num_layers:
            raise JalignError(
                f"{len(self.sliding_windows)} layer attention types given for "
                f"{self.num_layers} layers"
            )

    @property
    def query_scale(self) -> float:
        return self.attn_scale if self.attn_scale is not None else self.head_dim**-0.5

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)


def _rope_from_hf(cfg: dict[str, Any], source: str) -> RopeConfig:
    """Read rope settings in both the transformers-5 (`rope_parameters`) and older layouts."""
    params = dict(cfg.get("rope_parameters") or {})
    legacy = cfg.get("rope_scaling") or {}
    params = {**legacy, **params}
    theta = params.get("rope_theta", cfg.get("rope_theta", 10000.0))
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise JalignError(
            f"{source}: rope_type {rope_type!r} is not supported; "
            f"supported: {', '.join(SUPPORTED_ROPE_TYPES)}"
        )
    if params.get("partial_rotary_factor", 1.0) != 1.0:
        raise JalignError(f"{source}: partial_rotary_factor != 1 is not supported")
    return RopeConfig(
        theta=float(theta),
        rope_type=rope_type,
        factor=float(params.get("factor", 1.0)),
        low_freq_factor=float(params.get("low_freq_factor", 1.0)),
        high_freq_factor=float(params.get("high_freq_factor", 4.0)),
        original_max_position_embeddings=int(
            params.get("original_max_position_embeddings", cfg.get("max_position_embeddings", 8192))
        ),
    )


def _eos_ids(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, int):
        return (value,)
    return tuple(int(v) for v in value)


def _sliding_windows(cfg: dict[str, Any], num_layers: int) -> tuple[int | None, ...]:
    window = cfg.get("sliding_window")
    layer_types = cfg.get("layer_types")
    model_type = cfg["model_type"]
    if layer_types is None:
        if model_type == "gemma2":  # older Gemma-2 configs: even layers slide
            layer_types = [
                "sliding_attention" if i % 2 == 0 else "full_attention" for i in range(num_layers)
            ]
        elif model_type == "mistral" or (
            model_type in ("qwen2", "qwen3") and cfg.get("use_sliding_window")
        ):
            layer_types = ["sliding_attention"] * num_layers
        else:
            layer_types = ["full_attention"] * num_layers
    if model_type == "mistral" and window is not None:
        layer_types = ["sliding_attention"] * num_layers
    return tuple(
        int(window) if kind == "sliding_attention" and window is not None else None
        for kind in layer_types
    )


def _require(cfg: dict[str, Any], key: str, source: str) -> Any:
    if key not in cfg or cfg[key] is None:
        raise JalignError(f"{source}: missing required key {key!r}")
    return cfg[key]


def from_hf_dict(cfg: dict[str, Any], source: str = "config.json", **overrides: Any) -> ModelConfig:
    """Build a `ModelConfig` from the contents of an HF `config.json`.

    `overrides` set jalign-only fields (dtype, param_dtype, remat, scan_layers).
    """
    model_type = cfg.get("model_type")
    if model_type is None:
        raise JalignError(
            f"{source}: no 'model_type' key; supported model types: "
            f"{', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise JalignError(
            f"{source}: model_type {model_type!r} is not supported; supported: "
            f"{', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    if model_type == "gpt2":
        return _gpt2_config(cfg, source, **overrides)

    hidden = int(_require(cfg, "hidden_size", source))
    heads = int(_require(cfg, "num_attention_heads", source))
    layers = int(_require(cfg, "num_hidden_layers", source))
    act_name = cfg.get("hidden_activation") or cfg.get("hidden_act", "silu")
    if act_name not in _ACTIVATIONS:
        raise JalignError(
            f"{source}: activation {act_name!r} is not supported; supported: {', '.join(_ACTIVATIONS)}"
        )
    is_gemma = model_type == "gemma2"
    fields: dict[str, Any] = dict(
        model_type=model_type,
        vocab_size=int(_require(cfg, "vocab_size", source)),
        hidden_size=hidden,
        intermediate_size=int(_require(cfg, "intermediate_size", source)),
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
        head_dim=int(cfg.get("head_dim") or hidden // heads),
        max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)),
        norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        activation=_ACTIVATIONS[act_name],
        qkv_bias=bool(cfg.get("attention_bias", model_type == "qwen2")),
        o_bias=bool(cfg.get("attention_bias", False)) and model_type != "qwen2",
        mlp_bias=bool(cfg.get("mlp_bias", False)),
        qk_norm=model_type == "qwen3",
        rope=_rope_from_hf(cfg, source),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", is_gemma)),
        sliding_windows=_sliding_windows(cfg, layers),
        bos_token_id=cfg.get("bos_token_id"),
        eos_token_ids=_eos_ids(cfg.get("eos_token_id")),
        pad_token_id=cfg.get("pad_token_id"),
    )
    if is_gemma:
        fields.update(
            norm_scale_offset=1.0,
            sandwich_norms=True,
            embed_scale=hidden**0.5,
            attn_scale=float(cfg.get("query_pre_attn_scalar", fields["head_dim"])) ** -0.5,
            attn_logit_softcap=cfg.get("attn_logit_softcapping"),
            final_logit_softcap=cfg.get("final_logit_softcapping"),
        )
    return ModelConfig(**fields, **overrides)


def _gpt2_config(cfg: dict[str, Any], source: str, **overrides: Any) -> ModelConfig:
    hidden = int(_require(cfg, "n_embd", source))
    heads = int(_require(cfg, "n_head", source))
    act_name = cfg.get("activation_function", "gelu_new")
    if act_name not in _ACTIVATIONS:
        raise JalignError(f"{source}: activation {act_name!r} is not supported")
    if cfg.get("scale_attn_by_inverse_layer_idx") or cfg.get("reorder_and_upcast_attn"):
        raise JalignError(
            f"{source}: GPT-2 options scale_attn_by_inverse_layer_idx / reorder_and_upcast_attn "
            "are not supported"
        )
    layers = int(_require(cfg, "n_layer", source))
    return ModelConfig(
        model_type="gpt2",
        vocab_size=int(_require(cfg, "vocab_size", source)),
        hidden_size=hidden,
        intermediate_size=int(cfg.get("n_inner") or 4 * hidden),
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=hidden // heads,
        max_position_embeddings=int(cfg.get("n_positions", 1024)),
        norm_eps=float(cfg.get("layer_norm_epsilon", 1e-5)),
        norm_kind="layernorm",
        activation=_ACTIVATIONS[act_name],
        gated_mlp=False,
        qkv_bias=True,
        o_bias=True,
        mlp_bias=True,
        position_kind="learned",
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", True)),
        attn_scale=None if cfg.get("scale_attn_weights", True) else 1.0,
        bos_token_id=cfg.get("bos_token_id"),
        eos_token_ids=_eos_ids(cfg.get("eos_token_id")),
        pad_token_id=cfg.get("pad_token_id"),
        **overrides,
    )


def load_hf_config(path: str | Path, **overrides: Any) -> ModelConfig:
    """Read `config.json` from an HF model folder (or the file itself)."""
    path = Path(path)
    file = path / "config.json" if path.is_dir() else path
    if not file.exists():
        raise JalignError(f"{file}: no such file (expected an HF model folder with config.json)")
    try:
        cfg = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise JalignError(f"{file}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(cfg, dict):
        raise JalignError(f"{file}: expected a JSON object")
    return from_hf_dict(cfg, source=str(file), **overrides)
