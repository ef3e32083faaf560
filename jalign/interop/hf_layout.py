"""Which HF safetensors tensor holds which jalign parameter, and how its layout differs.

Every supported family is described by a list of `TensorLink`s, one per HF tensor. A link names
the jalign parameter path(s) it fills (per-layer paths with integer layer indices, as in an
unscanned params dict) and its layout:

- "same": identical arrays (embeddings, norm scales, biases, GPT-2 Conv1D kernels [in, out]);
- "transposed": a torch `nn.Linear` weight [out, in] is a jalign kernel [in, out];
- "fused_qkv": GPT-2's `attn.c_attn` Conv1D ([D, 3D] weight or [3D] bias) holds the q, k and v
  kernels (or biases) side by side along its last axis.

A scanned layer stack (`cfg.scan_layers`) stores each per-layer leaf stacked on a leading [L]
axis; `stack_layers` / `unstack_layers` convert between the two params layouts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from jalign.models import ModelConfig

ParamPath = tuple[str | int, ...]
LAYOUTS = ("same", "transposed", "fused_qkv")

# jalign norm name -> HF norm name, per family (Gemma 2 has four norms per layer).
_LLAMA_NORMS = {"attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm"}
_GEMMA2_NORMS = {
    "attn_norm": "input_layernorm",
    "post_attn_norm": "post_attention_layernorm",
    "mlp_norm": "pre_feedforward_layernorm",
    "post_mlp_norm": "post_feedforward_layernorm",
}
# GPT-2 checkpoints saved from the bare `GPT2Model` lack the `transformer.` prefix.
_GPT2_PREFIX = "transformer."
# Buffers some checkpoints carry that are not parameters (recomputed by every implementation).
IGNORED_SUFFIXES = (".rotary_emb.inv_freq", ".attn.bias", ".attn.masked_bias")


@dataclasses.dataclass(frozen=True)
class TensorLink:
    """One HF tensor, the jalign parameter(s) it holds, and the layout change between them."""

    hf_name: str
    params: tuple[ParamPath, ...]
    layout: str = "same"

    def hf_shape(self, param_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        """The HF tensor shape implied by the shapes of its jalign parameters."""
        if self.layout == "transposed":
            return tuple(reversed(param_shapes[0]))
        if self.layout == "fused_qkv":
            return (*param_shapes[0][:-1], sum(s[-1] for s in param_shapes))
        return tuple(param_shapes[0])

    def to_jalign(self, tensor: np.ndarray, param_shapes: Sequence[tuple[int, ...]]) -> list:
        """HF tensor -> one array per jalign parameter (views where possible)."""
        if self.layout == "transposed":
            return [tensor.T]
        if self.layout == "fused_qkv":
            bounds = np.cumsum([s[-1] for s in param_shapes])[:-1]
            return np.split(tensor, bounds, axis=-1)
        return [tensor]

    def to_hf(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        """jalign parameter arrays -> the HF tensor (contiguous)."""
        if self.layout == "transposed":
            return np.ascontiguousarray(arrays[0].T)
        if self.layout == "fused_qkv":
            return np.concatenate(arrays, axis=-1)
        return np.ascontiguousarray(arrays[0])


def _linear(hf: str, path: ParamPath, bias: bool) -> list[TensorLink]:
    """A torch nn.Linear: weight transposed into `kernel`, bias copied."""
    links = [TensorLink(f"{hf}.weight", ((*path, "kernel"),), "transposed")]
    if bias:
        links.append(TensorLink(f"{hf}.bias", ((*path, "bias"),)))
    return links


def _llama_family_links(cfg: ModelConfig) -> list[TensorLink]:
    """Llama, Mistral, Qwen2, Qwen3 and Gemma 2: `model.layers.{i}.*` naming."""
    norms = _GEMMA2_NORMS if cfg.sandwich_norms else _LLAMA_NORMS
    links = [TensorLink("model.embed_tokens.weight", (("embed", "embedding"),))]
    for i in range(cfg.num_layers):
        hf, layer = f"model.layers.{i}", ("layers", i)
        for ours, theirs in norms.items():
            links.append(TensorLink(f"{hf}.{theirs}.weight", ((*layer, ours, "scale"),)))
        for proj in ("q_proj", "k_proj", "v_proj"):
            links += _linear(f"{hf}.self_attn.{proj}", (*layer, "attn", proj), cfg.qkv_bias)
        links += _linear(f"{hf}.self_attn.o_proj", (*layer, "attn", "o_proj"), cfg.o_bias)
        if cfg.qk_norm:
            for norm in ("q_norm", "k_norm"):
                links.append(
                    TensorLink(f"{hf}.self_attn.{norm}.weight", ((*layer, "attn", norm, "scale"),))
                )
        for proj in ("gate_proj", "up_proj", "down_proj"):
            links += _linear(f"{hf}.mlp.{proj}", (*layer, "mlp", proj), cfg.mlp_bias)
    links.append(TensorLink("model.norm.weight", (("final_norm", "scale"),)))
    return links


def _gpt2_links(cfg: ModelConfig) -> list[TensorLink]:
    """GPT-2: Conv1D weights are already [in, out]; `c_attn` fuses q, k and v."""
    t = _GPT2_PREFIX
    links = [
        TensorLink(f"{t}wte.weight", (("embed", "embedding"),)),
        TensorLink(f"{t}wpe.weight", (("pos_embed", "embedding"),)),
    ]
    for i in range(cfg.num_layers):
        hf, layer = f"{t}h.{i}", ("layers", i)
        qkv = [(*layer, "attn", p) for p in ("q_proj", "k_proj", "v_proj")]
        for leaf in ("weight", "bias"):
            ours = "kernel" if leaf == "weight" else "bias"
            links.append(
                TensorLink(f"{hf}.attn.c_attn.{leaf}", tuple((*p, ours) for p in qkv), "fused_qkv")
            )
            for theirs, path in (
                ("attn.c_proj", (*layer, "attn", "o_proj")),
                ("mlp.c_fc", (*layer, "mlp", "up_proj")),
                ("mlp.c_proj", (*layer, "mlp", "down_proj")),
            ):
                links.append(TensorLink(f"{hf}.{theirs}.{leaf}", ((*path, ours),)))
            for ours_norm, theirs_norm in (("attn_norm", "ln_1"), ("mlp_norm", "ln_2")):
                norm_leaf = "scale" if leaf == "weight" else "bias"
                links.append(
                    TensorLink(f"{hf}.{theirs_norm}.{leaf}", ((*layer, ours_norm, norm_leaf),))
                )
    links += [
        TensorLink(f"{t}ln_f.weight", (("final_norm", "scale"),)),
        TensorLink(f"{t}ln_f.bias", (("final_norm", "bias"),)),
    ]
    return links


def _head_links(cfg: ModelConfig, head: str) -> list[TensorLink]:
    """`lm_head.weight` (untied LM), or the scalar head as `score.weight` [1, D] + `score.bias`.

    HF's `*ForSequenceClassification` score has no bias; jalign's has one, exported as
    `score.bias` (transformers ignores it with a warning; jalign reads it back).
    """
    if head == "scalar":
        return _linear("score", ("score",), bias=True)
    if cfg.tie_word_embeddings:
        return []
    return _linear("lm_head", ("lm_head",), bias=False)


def tensor_links(cfg: ModelConfig, head: str = "lm") -> list[TensorLink]:
    """Every HF tensor of a `cfg` checkpoint with the given head, in checkpoint order."""
    body = _gpt2_links(cfg) if cfg.model_type == "gpt2" else _llama_family_links(cfg)
    return body + _head_links(cfg, head)


def canonical_hf_name(name: str, model_type: str) -> str:
    """The name `tensor_links` uses for a checkpoint tensor (adds GPT-2's missing prefix)."""
    if model_type == "gpt2" and not name.startswith((_GPT2_PREFIX, "lm_head.", "score.")):
        return _GPT2_PREFIX + name
    return name


def get_path(tree: Any, path: ParamPath) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def set_path(tree: dict, path: ParamPath, value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def per_layer_paths(path: ParamPath, cfg: ModelConfig) -> list[ParamPath] | None:
    """For a scanned leaf `("layers", *rest)`: the per-layer paths `("layers", i, *rest)` it
    stacks, in layer order; None for any other path."""
    if cfg.scan_layers and path[0] == "layers":
        return [("layers", i, *path[1:]) for i in range(cfg.num_layers)]
    return None


def unstack_layers(params: dict, cfg: ModelConfig) -> dict:
    """Scanned params (leaves under `layers` with a leading [L] axis) -> per-layer params."""
    if not cfg.scan_layers:
        return params
    stacked = params["layers"]

    def take(tree: Any, i: int) -> Any:
        if isinstance(tree, dict):
            return {k: take(v, i) for k, v in tree.items()}
        return tree[i]

    return {**params, "layers": {i: take(stacked, i) for i in range(cfg.num_layers)}}


def stack_layers(params: dict, cfg: ModelConfig) -> dict:
    """Per-layer params -> scanned params (the inverse of `unstack_layers`)."""
    if not cfg.scan_layers:
        return params
    layers = [params["layers"][i] for i in range(cfg.num_layers)]

    def stack(trees: list) -> Any:
        if isinstance(trees[0], dict):
            return {k: stack([t[k] for t in trees]) for k in trees[0]}
        return np.stack([np.asarray(t) for t in trees])

    return {**params, "layers": stack(layers)}
