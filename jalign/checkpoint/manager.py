"""Checkpoints of a run: the train-state pytree plus JSON metadata, via orbax-checkpoint.

Layout (orbax 0.12.8), one directory per step:

    <directory>/<step>/state/...            the train state (arrays, incl. typed PRNG keys)
    <directory>/<step>/metadata/...         JSON: data-iterator state, config hash, ...
    <directory>/<step>/commit_success.txt   written last

Atomicity: orbax writes a step into `<step>.orbax-checkpoint-tmp-<time>/`, writes
`commit_success.txt` into it, then renames it to `<step>/`. Orbax's default reader on a local
filesystem trusts any `<step>/` directory, so a copied or partly deleted step would be picked
up; this manager only counts a step whose directory holds `commit_success.txt`. Leftover
temporary directories are deleted when the manager opens.

Saves are synchronous by default: when `save` returns, the step is committed, so a SIGKILL
right after still leaves a complete checkpoint. With `async_save=True` the write continues in
the background; `wait_until_finished()` (called by `close()`) blocks until it is committed.
All processes must call `save`/`restore` together (orbax coordinates multi-host writes).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers
from orbax.checkpoint.options import AtomicityMode, AtomicityOptions

from jalign.errors import JalignError

STATE = "state"
METADATA = "metadata"


def _require_shardings(abstract_state: Any) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(abstract_state):
        if not isinstance(leaf, jax.ShapeDtypeStruct) or leaf.sharding is None:
            raise ValueError(
                f"abstract state leaf {jax.tree_util.keystr(path)} must be a "
                f"jax.ShapeDtypeStruct with a sharding, got {leaf!r}"
            )


class CheckpointManager:
    """Saves every `save_every` steps (and on `force=True`), keeps the last `max_to_keep`."""

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        save_every: int,
        max_to_keep: int | None = 3,
        async_save: bool = False,
    ):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
            # Every `save_every` steps, and when a multi-host preemption notice arrives.
            save_decision_policy=checkpoint_managers.AnySavePolicy(
                [
                    checkpoint_managers.FixedIntervalPolicy(save_every),
                    checkpoint_managers.PreemptionCheckpointingPolicy(),
                ]
            ),
            # Reading: a step exists only once its commit_success.txt does.
            step_name_format=ocp.step.standard_name_format(
                atomicity_options=AtomicityOptions(mode=AtomicityMode.COMMIT_FILE)
            ),
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=(STATE, METADATA)
        )

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(
        self, step: int, state: Any, metadata: Mapping[str, Any], *, force: bool = False
    ) -> bool:
        """Save `state` (a pytree of jax arrays) and JSON `metadata` at `step` when it is a
        multiple of `save_every` or `force` is set (e.g. the last step). Returns whether a
        checkpoint was written; a step that is already saved is not written again."""
        if step in self._manager.all_steps():
            return False
        return self._manager.save(
            step,
            args=ocp.args.Composite(
                **{STATE: ocp.args.StandardSave(state), METADATA: ocp.args.JsonSave(dict(metadata))}
            ),
            force=force,
        )

    def _check_step(self, step: int) -> None:
        if step not in self._manager.all_steps():
            raise JalignError(
                f"no complete checkpoint for step {step} in {self.directory}; "
                f"available steps: {self.all_steps() or 'none'}"
            )

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        """Restore `(state, metadata)` of `step`, each array placed directly on the sharding of
        the matching `jax.ShapeDtypeStruct` in `abstract_state` (and cast to its dtype)."""
        _require_shardings(abstract_state)
        self._check_step(step)
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    **{
                        STATE: ocp.args.StandardRestore(abstract_state),
                        METADATA: ocp.args.JsonRestore(),
                    }
                ),
            )
        except ValueError as e:
            detail = " ".join(line.strip() for line in str(e).strip().splitlines()[:4])
            raise JalignError(
                f"checkpoint step {step} in {self.directory} does not match the expected train "
                f"state (different model or optimizer config?): {detail}"
            ) from e
        return restored[STATE], dict(restored[METADATA])

    def restore_metadata(self, step: int) -> dict:
        """Only the JSON metadata of `step` (cheap: no arrays are read)."""
        self._check_step(step)
        restored = self._manager.restore(
            step, args=ocp.args.Composite(**{METADATA: ocp.args.JsonRestore()})
        )
        return dict(restored[METADATA])

    def restore_or_none(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
        """`(step, state, metadata)` of the latest complete checkpoint, or None for a fresh run."""
        step = self.latest_step()
        if step is None:
            return None
        state, metadata = self.restore(step, abstract_state)
        return step, state, metadata

    def wait_until_finished(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Wait for any background save to commit, then release orbax's resources."""
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> CheckpointManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
