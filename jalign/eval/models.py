"""A model loaded for evaluation: graphdef, params and config from any source jalign reads."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from flax import nnx

from jalign.models import ModelConfig


@dataclasses.dataclass(frozen=True)
class EvalModel:
    """A policy (lm head) or reward model (scalar head) and where it came from."""

    graphdef: nnx.GraphDef
    params: Any
    config: ModelConfig
    source: Path


def load_eval_model(source: str, head: str = "lm") -> EvalModel:
    """An HF folder, a .gguf file or a bundled name (`jalign.interop.load_model_source`)."""
    from jalign.interop import load_model_source

    folder, cfg, graphdef, params = load_model_source(source, head=head)
    return EvalModel(graphdef, params, cfg, Path(folder))
