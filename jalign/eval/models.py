"""A model loaded for evaluation: graphdef, params and config from any source jalign reads."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from flax import nnx
from jax.sharding import Mesh

from jalign.models import ModelConfig
from jalign.sharding import param_shardings


@dataclasses.dataclass(frozen=True)
class EvalModel:
    """A policy (lm head) or reward model (scalar head) and where it came from."""

    graphdef: nnx.GraphDef
    params: Any
    config: ModelConfig
    source: Path


def load_eval_model(source: str, head: str = "lm", mesh: Mesh | None = None) -> EvalModel:
    """An HF folder, a .gguf file or a bundled name (`jalign.interop.load_model_source`); with
    a mesh, loaded straight onto it by the default partition rules of its family."""
    from jalign.interop import load_model_source

    shardings = None
    if mesh is not None:

        def shardings(cfg: ModelConfig, abstract_params: Any) -> Any:
            return param_shardings(abstract_params, mesh, family=cfg.model_type)

    folder, cfg, graphdef, params = load_model_source(source, shardings=shardings, head=head)
    return EvalModel(graphdef, params, cfg, Path(folder))
