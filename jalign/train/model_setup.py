"""Model loading for trainers: weights straight onto the mesh, state shardings, HF export."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import ml_collections
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jalign.data import load_tokenizer
from jalign.interop import load_model_source, resolve_model_folder, save_hf_model
from jalign.models import ModelConfig, create_model, load_hf_config
from jalign.sharding import host_array, param_shardings, parse_rules


@dataclasses.dataclass
class LoadedModel:
    """A model on the mesh: its config, graphdef, params, each param's sharding, and its head
    ("lm" or "scalar", which its HF export keeps)."""

    config: ModelConfig
    graphdef: nnx.GraphDef
    params: Any
    shardings: Any
    source: Path
    mesh: Mesh
    head: str = "lm"


def model_overrides(cfg: ml_collections.ConfigDict) -> dict[str, Any]:
    m = cfg.model
    return dict(dtype=m.dtype, param_dtype=m.param_dtype, remat=m.remat, scan_layers=m.scan_layers)


def load_run_tokenizer(cfg: ml_collections.ConfigDict) -> Any:
    """The tokenizer of `model.tokenizer`, else of `model.path` (a folder, a .gguf file or a
    bundled model's name, resolved as the model is)."""
    return load_tokenizer(resolve_model_folder(cfg.model.tokenizer or cfg.model.path))


def load_model(
    cfg: ml_collections.ConfigDict, mesh: Mesh, head: str = "lm", path: str | None = None
) -> LoadedModel:
    """Load `path` (default `cfg.model.path`) with `cfg.model`'s numerics, sharded by the rules.

    `model.init = "random"` builds fresh weights from the folder's config.json (demo models).
    """
    path = path or cfg.model.path
    user_rules = parse_rules(list(cfg.sharding.rules))
    overrides = model_overrides(cfg)

    def shardings_for(model_cfg: ModelConfig, abstract_params: Any) -> Any:
        return param_shardings(abstract_params, mesh, user_rules, model_cfg.model_type)

    if cfg.model.init == "random":
        model_cfg = load_hf_config(path, **overrides)
        graphdef, params = create_model(model_cfg, head=head, seed=cfg.seed)
        shardings = shardings_for(model_cfg, params)
        params = jax.device_put(params, shardings)
        return LoadedModel(model_cfg, graphdef, params, shardings, Path(path), mesh, head)
    folder, model_cfg, graphdef, params = load_model_source(
        path, shardings=shardings_for, head=head, **overrides
    )
    shardings = jax.tree.map(lambda x: x.sharding, params)
    return LoadedModel(model_cfg, graphdef, params, shardings, Path(folder), mesh, head)


def state_shardings(
    model: LoadedModel, optimizer: optax.GradientTransformation, frozen: Any
) -> Any:
    """Shardings of a `TrainState`: optimizer moments follow their parameters; counters, step
    and rng are replicated; frozen pytrees keep the shardings they carry."""
    from jalign.train.state import TrainState

    replicated = NamedSharding(model.mesh, PartitionSpec())
    abstract_opt = jax.eval_shape(optimizer.init, model.params)
    opt_shardings = optax.tree_utils.tree_map_params(
        optimizer,
        lambda _, sharding: sharding,
        abstract_opt,
        model.shardings,
        transform_non_params=lambda _: replicated,
        is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct),
    )
    frozen_shardings = jax.tree.map(lambda x: x.sharding, frozen) if frozen is not None else None
    return TrainState(
        params=model.shardings,
        opt_state=opt_shardings,
        step=replicated,
        rng=replicated,
        frozen=frozen_shardings,
    )


def export_model(model: LoadedModel, params: Any, folder: Path, tokenizer: Any) -> Path:
    """Write `params` as an HF folder (config.json, safetensors, tokenizer files). In a
    multi-process run every process gathers the params (collectively) and process 0 writes."""
    host_params = jax.tree.map(host_array, params)
    if jax.process_index() == 0:
        save_hf_model(
            folder, model.config, host_params, source_config=model.source, head=model.head
        )
        tokenizer.save_pretrained(folder)
    return folder
