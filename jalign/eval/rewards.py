"""Rewards of rollouts: a Python function of the texts, or a reward model on the token ids.

    scorer = load_scorer("jalign.demo.task:gold_reward_fn")   # fn(prompts, completions)
    scorer = load_scorer("runs/demo/rm/hf")                    # scalar-head HF folder
    rewards = scorer(rollouts)                                 # float64 [R]

A reward model reads the sampler's own token ids (prompt, then completion with its EOS, as the
data pipeline encodes a training sequence) at the last real token: the text is never decoded and
re-tokenised, so it must share the policy's vocabulary.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from jalign.errors import JalignError
from jalign.eval.models import EvalModel, load_eval_model
from jalign.eval.rollouts import RewardFn, Rollouts
from jalign.eval.sequences import completion_sequences, map_rows
from jalign.train.forward import sequence_rewards

Scorer = Callable[[Rollouts], np.ndarray]

SCORE_ROWS = 64  # rows per reward-model / teacher-forced call


def import_callable(spec: str, what: str) -> Callable[..., Any]:
    """ "package.module:function" -> the function; `what` names the option in errors."""
    module_name, _, name = spec.partition(":")
    allowed = f"'package.module:function' naming {what}"
    if not module_name or not name:
        raise JalignError(f"{spec!r} is not allowed; allowed: {allowed}")
    try:
        fn = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as e:
        raise JalignError(f"{spec!r} cannot be imported ({e}); allowed: {allowed}") from None
    if not callable(fn):
        raise JalignError(f"{spec!r} is a {type(fn).__name__}, not callable; allowed: {allowed}")
    return fn


def text_scorer(fn: RewardFn) -> Scorer:
    """A reward function of (prompts, completions) texts as a `Scorer`."""

    def score(rollouts: Rollouts) -> np.ndarray:
        rewards = np.asarray(fn(list(rollouts.prompts), list(rollouts.completions)), np.float64)
        if rewards.shape != (len(rollouts.completions),):
            raise JalignError(
                f"reward function {getattr(fn, '__name__', fn)!r} returned shape "
                f"{rewards.shape}; allowed: one number per completion "
                f"({len(rollouts.completions)},)"
            )
        return rewards

    return score


def check_vocab(rollouts: Rollouts, model: EvalModel, role: str) -> None:
    """The rollouts' token ids must exist in `model`'s vocabulary (no re-tokenisation)."""
    top = max(int(rollouts.prompt_ids.max()), int(rollouts.tokens.max()))
    if top >= model.config.vocab_size:
        raise JalignError(
            f"{role} {model.source} has vocab_size={model.config.vocab_size} but the policy's "
            f"tokens go up to id {top}; allowed: a {role} with the policy's tokenizer"
        )


def reward_model_scorer(model: EvalModel, rows: int = SCORE_ROWS) -> Scorer:
    """A scalar-head model's reward at each sequence's last real token."""
    score_fn = jax.jit(lambda params, batch: sequence_rewards(model.graphdef, params, batch))

    def score(rollouts: Rollouts) -> np.ndarray:
        check_vocab(rollouts, model, "reward model")
        batch = completion_sequences(rollouts)
        return map_rows(lambda b: score_fn(model.params, b), batch, rows).astype(np.float64)

    return score


def load_scorer(spec: str, rows: int = SCORE_ROWS, mesh: Mesh | None = None) -> Scorer:
    """A reward-model folder (scalar head, loaded onto `mesh` if given) or a
    "module:function" reward function."""
    if Path(spec).is_dir():
        return reward_model_scorer(load_eval_model(spec, head="scalar", mesh=mesh), rows)
    if ":" in spec:
        return text_scorer(
            import_callable(spec, "a reward function (prompts, completions) -> scores")
        )
    raise JalignError(
        f"reward {spec!r} is neither a folder nor a function; allowed: a reward-model HF folder "
        f"(scalar head) or 'package.module:function'"
    )
