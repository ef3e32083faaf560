"""Run checkpoints (orbax): train state + JSON metadata, atomic, keep-last-K; NaN guard."""

from jalign.checkpoint.guard import check_finite
from jalign.checkpoint.manager import CheckpointManager

__all__ = ["CheckpointManager", "check_finite"]
