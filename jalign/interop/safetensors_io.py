"""Load an HF model folder straight onto a mesh, and export params back to an HF folder.

Loading never materialises the model on every device: each parameter is read from the
(memory-mapped) safetensors file on the host, converted to jalign's layout, and handed to
`jax.make_array_from_callback`, which copies to each device only the slice its sharding gives
it. The host holds one parameter (one stacked parameter for a scanned layer stack) at a time.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jalign.errors import JalignError
from jalign.interop.hf_names import Entry, strip_prefix_aliases, tensor_map
from jalign.interop.hf_names import Path as ParamPath
from jalign.interop.safetensors_format import SafetensorsFile, write_safetensors
from jalign.models import ModelConfig, abstract_model, load_hf_config
from jalign.sharding import path_string

Shardings = Any | Callable[[ModelConfig, Any], Any] | None
# Tensors an HF checkpoint may carry that jalign does not need.
_IGNORABLE_SUFFIXES = ("rotary_emb.inv_freq", ".attn.bias", ".attn.masked_bias")
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "generation_config.json",
)


class CheckpointTensors:
    """Name -> tensor over a single `model.safetensors` or a sharded index."""

    def __init__(self, folder: Path):
        index = folder / "model.safetensors.index.json"
        single = folder / "model.safetensors"
        if index.exists():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError) as exc:
                raise JalignError(f"{index}: not a valid safetensors index ({exc})") from None
            files = {f: SafetensorsFile(folder / f) for f in sorted(set(weight_map.values()))}
            self.files = {name: files[f] for name, f in weight_map.items()}
        elif single.exists():
            file = SafetensorsFile(single)
            self.files = dict.fromkeys(file.keys(), file)
        else:
            found = sorted(p.name for p in folder.glob("*"))
            raise JalignError(
                f"{folder}: no model.safetensors or model.safetensors.index.json "
                f"(found: {', '.join(found) or 'nothing'}); only safetensors weights are loaded"
            )

    def names(self) -> set[str]:
        return set(self.files)

    def where(self, name: str) -> Path:
        return self.files[name].path

    def get(self, name: str) -> np.ndarray:
        return self.files[name].get(name)


def _hf_shape(entry: Entry, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """The HF tensor shape implied by the jalign shapes of its targets."""
    if entry.kind == "transpose":
        return tuple(reversed(shapes[0]))
    if entry.kind == "split":
        return (*shapes[0][:-1], sum(s[-1] for s in shapes))
    return shapes[0]


def _to_jalign(entry: Entry, tensor: np.ndarray, index: int, split_sizes: list[int]) -> np.ndarray:
    if entry.kind == "transpose":
        return tensor.T
    if entry.kind == "split":
        bounds = np.cumsum(split_sizes)[:-1]
        return np.split(tensor, bounds, axis=-1)[index]
    return tensor


def _scanned_path(path: ParamPath) -> tuple[ParamPath, int | None]:
    """("layers", 3, "attn", ...) -> (("layers", "attn", ...), 3); other paths unchanged."""
    if len(path) > 1 and path[0] == "layers" and isinstance(path[1], int):
        return ("layers", *path[2:]), path[1]
    return path, None


def _get(tree: Any, path: tuple) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _leaf_paths(tree: Any) -> list[tuple]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [tuple(getattr(k, "key", getattr(k, "idx", k)) for k in path) for path, _ in leaves]


class _Plan:
    """For each jalign parameter: the HF entries (one per layer when scanned) that fill it."""

    def __init__(self, cfg: ModelConfig, head: str, abstract: Any):
        self.sources: dict[tuple, list[tuple[Entry, int, int | None]]] = {}
        for entry in tensor_map(cfg, head):
            for target_index, target in enumerate(entry.targets):
                path, layer = _scanned_path(target) if cfg.scan_layers else (target, None)
                self.sources.setdefault(path, []).append((entry, target_index, layer))
        self.abstract = abstract

    def target_shapes(self, entry: Entry, scanned: bool) -> list[tuple[int, ...]]:
        shapes = []
        for target in entry.targets:
            path, _ = _scanned_path(target) if scanned else (target, None)
            shape = tuple(_get(self.abstract, path).shape)
            shapes.append(shape[1:] if scanned and path[0] == "layers" else shape)
        return shapes


def load_hf_model(
    folder: str | os.PathLike,
    shardings: Shardings = None,
    head: str = "lm",
    **overrides: Any,
) -> tuple[ModelConfig, nnx.GraphDef, Any]:
    """Read an HF folder (config.json + safetensors) into (cfg, graphdef, params).

    `shardings`: None (default device), a pytree of `NamedSharding`s shaped like the params, or
    a callable `(cfg, abstract_params) -> that pytree`. `head="scalar"` on a causal-LM checkpoint
    keeps the backbone and starts a fresh score head (kernel N(0, 0.02^2)... zero-mean, bias 0);
    a checkpoint with `score.weight` loads its head. `overrides` set dtype, param_dtype, remat,
    scan_layers.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise JalignError(f"{folder}: no such model folder")
    cfg = load_hf_config(folder, **overrides)
    graphdef, abstract = abstract_model(cfg, head)
    if callable(shardings):
        shardings = shardings(cfg, abstract)
    tensors = CheckpointTensors(folder)
    names = {strip_prefix_aliases(n, cfg.model_type): n for n in tensors.names()}
    plan = _Plan(cfg, head, abstract)

    needed = {e.hf_name for sources in plan.sources.values() for e, _, _ in sources}
    fresh_head = head == "scalar" and "score.weight" not in names
    if fresh_head:
        needed -= {"score.weight", "score.bias"}
    elif head == "scalar" and "score.bias" not in names:
        needed.discard("score.bias")  # an HF classifier has no bias: start it at 0
    missing = sorted(needed - names.keys())
    if missing:
        raise JalignError(
            f"{folder}: checkpoint lacks {len(missing)} tensors config.json implies, e.g. "
            f"{', '.join(missing[:4])}"
        )
    ignorable = {"lm_head.weight"} if (cfg.tie_word_embeddings or head == "scalar") else set()
    extra = sorted(
        n for n in names.keys() - needed - ignorable if not n.endswith(_IGNORABLE_SUFFIXES)
    )
    if extra and not (fresh_head and set(extra) <= {"score.weight", "score.bias"}):
        raise JalignError(
            f"{folder}: checkpoint has {len(extra)} tensors this {cfg.model_type} config does not "
            f"use, e.g. {', '.join(extra[:4])}"
        )

    dtype = jnp.dtype(cfg.param_dtype)
    cache: dict[str, np.ndarray] = {}

    def read(entry: Entry, target_index: int) -> np.ndarray:
        name = names[entry.hf_name]
        if name not in cache:
            cache.clear()
            cache[name] = tensors.get(name)
        tensor = cache[name]
        shapes = plan.target_shapes(entry, cfg.scan_layers)
        expected = _hf_shape(entry, shapes)
        if tuple(tensor.shape) != expected:
            raise JalignError(
                f"{tensors.where(name)}: tensor {name} has shape {tuple(tensor.shape)} but "
                f"config.json implies {expected}"
            )
        return _to_jalign(entry, tensor, target_index, [s[-1] for s in shapes])

    def host_value(path: tuple, leaf: Any) -> np.ndarray:
        sources = plan.sources.get(path)
        if (
            sources is None
            or (fresh_head and path[0] == "score")
            or (sources[0][0].hf_name not in names)
        ):
            return _fresh(path, leaf)
        if len(sources) == 1 and sources[0][2] is None:
            entry, index, _ = sources[0]
            return np.asarray(read(entry, index), dtype)
        ordered = sorted(sources, key=lambda s: s[2])
        return np.stack([np.asarray(read(e, i), dtype) for e, i, _ in ordered])

    flat_shardings = (
        jax.tree.leaves(shardings, is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))
        if shardings is not None
        else None
    )
    default = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    leaves = []
    for i, path in enumerate(_leaf_paths(abstract)):
        leaf = _get(abstract, path)
        value = host_value(path, leaf)
        sharding = flat_shardings[i] if flat_shardings is not None else default
        leaves.append(
            jax.make_array_from_callback(value.shape, sharding, lambda idx, v=value: v[idx])
        )
    params = jax.tree.unflatten(jax.tree.structure(abstract), leaves)
    return cfg, graphdef, params


def _fresh(path: tuple, leaf: Any) -> np.ndarray:
    """A new score head: kernel ~ N(0, 1/(D+1)) (TRL/OpenRLHF's value-head init), bias 0."""
    if path[-1] == "kernel":
        rng = np.random.default_rng(0)
        std = 1.0 / np.sqrt(leaf.shape[0] + 1)
        return rng.normal(0.0, std, leaf.shape).astype(leaf.dtype)
    if path[0] == "score":
        return np.zeros(leaf.shape, leaf.dtype)
    raise JalignError(f"no checkpoint tensor provides parameter {path_string(path)}")


def _unstack(params: dict, cfg: ModelConfig) -> dict:
    """A scanned params dict -> the per-layer layout of the tensor map."""
    if not cfg.scan_layers:
        return params
    layers = jax.tree.map(np.asarray, params["layers"])
    per_layer = {i: jax.tree.map(lambda x, i=i: x[i], layers) for i in range(cfg.num_layers)}
    return {**params, "layers": per_layer}


def hf_tensors(cfg: ModelConfig, params: Any, head: str = "lm") -> dict[str, np.ndarray]:
    """params (host or device arrays) -> {HF tensor name: array} in HF layout."""
    params = _unstack(jax.device_get(params), cfg)
    out = {}
    for entry in tensor_map(cfg, head):
        arrays = [np.asarray(_get(params, target)) for target in entry.targets]
        if entry.kind == "transpose":
            out[entry.hf_name] = arrays[0].T
        elif entry.kind == "split":
            out[entry.hf_name] = np.concatenate(arrays, axis=-1)
        else:
            out[entry.hf_name] = arrays[0]
    return out


def _shards(tensors: dict[str, np.ndarray], max_bytes: int) -> list[dict[str, np.ndarray]]:
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name in sorted(tensors):
        nbytes = tensors[name].nbytes
        if shards[-1] and size + nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensors[name]
        size += nbytes
    return shards


def save_hf_model(
    folder: str | os.PathLike,
    cfg: ModelConfig,
    params: Any,
    source_config: str | os.PathLike | dict | None = None,
    head: str = "lm",
    tokenizer_folder: str | os.PathLike | None = None,
    max_shard_bytes: int = 2 * 2**30,
) -> Path:
    """Write params as an HF folder that transformers loads: config.json (the source model's,
    with the dtype updated), model.safetensors (or shards + index past `max_shard_bytes`) and,
    if given, the tokenizer files of `tokenizer_folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(source_config, str | os.PathLike):
        source = Path(source_config)
        source_config = json.loads(
            (source / "config.json" if source.is_dir() else source).read_text()
        )
    if source_config is None:
        raise JalignError("save_hf_model needs the source config.json (a folder, file or dict)")
    config = dict(source_config)
    config["torch_dtype"] = config["dtype"] = cfg.param_dtype
    if head == "scalar":
        family = {"gpt2": "GPT2"}.get(cfg.model_type, cfg.model_type.capitalize())
        config["architectures"] = [f"{family}ForSequenceClassification"]
        config["num_labels"] = 1
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    tensors = hf_tensors(cfg, params, head)
    shards = _shards(tensors, max_shard_bytes)
    for stale in folder.glob("model*.safetensors*"):
        stale.unlink()
    if len(shards) == 1:
        write_safetensors(folder / "model.safetensors", shards[0], {"format": "pt"})
    else:
        weight_map = {}
        for i, shard in enumerate(shards, start=1):
            name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            write_safetensors(folder / name, shard, {"format": "pt"})
            weight_map.update(dict.fromkeys(shard, name))
        index = {
            "metadata": {"total_size": sum(t.nbytes for t in tensors.values())},
            "weight_map": weight_map,
        }
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    if tokenizer_folder is not None:
        for name in _TOKENIZER_FILES:
            src = Path(tokenizer_folder) / name
            if src.exists():
                shutil.copy2(src, folder / name)
    return folder
