"""Forward passes over rollout sequences, restricted to the completion: the policy's per-token
log-probs and entropies (at the sampling temperature), the value model's per-token values, the
pre-update pass that combines them, and a helper that runs a jitted forward over a batch in
fixed-size chunks in a given row order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jalign.data.schemas import TARGET_COLUMNS
from jalign.losses import token_entropy, token_logprobs
from jalign.models import apply, project
from jalign.train.forward import PromptGroups, shared_prompt_hidden


def completion_outputs(
    graphdef: nnx.GraphDef, params: Any, batch: dict, group: int = 1, last: bool = False
) -> jax.Array:
    """The head's outputs at the N columns that predict the completion tokens ([B, N, ...]),
    with `last` also at the final column ([B, N + 1, ...]: index t is the output after
    completion token t - 1, i.e. after the prompt for t = 0). The prompt's columns give keys
    and values in every block (the completion attends to them) but skip the last block's
    queries and MLP and the head, which for an LM is a [D, V] matmul and a log-softmax per
    column (`apply`'s `read_columns`).

    group > 1: rows [i*group, (i+1)*group) share one prompt (a group of samples, as the sampler
    lays them out), which then runs through the model once per group
    (`jalign.train.forward.shared_prompt_hidden`, its last column's output computed once per
    group): the same attention, so the same outputs up to float rounding; with P prompt and N
    completion columns the model runs on about B/group x P + B x (N - 1) tokens instead of
    B x (P + N) (the last completion token runs only for `last`).
    """
    width = batch["completion_mask"].shape[1]
    ids, pos, seg = batch["input_ids"], batch["positions"], batch["segment_ids"]
    prompt = ids.shape[1] - width
    stop = ids.shape[1] if last else ids.shape[1] - 1  # the columns whose outputs are read
    if group == 1 or stop == prompt:
        read = slice(prompt - 1, stop)
        hidden, _ = apply(graphdef, params, ids, pos, seg, return_hidden=True, read_columns=read)
    else:  # the prompt's last column (it predicts completion token 0), then the completion's
        columns = jnp.broadcast_to(jnp.arange(prompt, stop), (ids.shape[0], stop - prompt))
        rows = {"input_ids": ids, "positions": pos, "segment_ids": seg, TARGET_COLUMNS: columns}
        groups = PromptGroups(group, tiled=False)
        hidden = shared_prompt_hidden(graphdef, params, rows, groups, prompt_end=True)
    return project(graphdef, params, hidden)


def policy_logprobs(
    graphdef: nnx.GraphDef, params: Any, batch: dict, temperature: float, group: int = 1
) -> tuple[jax.Array, jax.Array]:
    """log pi(y_t | x, y_<t) and the entropy of pi(. | x, y_<t), both [B, N] float32, with
    pi = softmax(logits / temperature): the distribution the sampler drew from (no top-k /
    top-p truncation), so a rollout's logprobs recomputed with unchanged params equal the
    sampler's up to float rounding. `group`: rows per shared prompt (`completion_outputs`)."""
    logits = completion_outputs(graphdef, params, batch, group)
    targets = batch["input_ids"][:, -batch["completion_mask"].shape[1] :]
    return token_logprobs(logits, targets, temperature), token_entropy(logits, temperature)


def token_values(graphdef: nnx.GraphDef, params: Any, batch: dict, group: int = 1) -> jax.Array:
    """V(x, y_<t) [B, N] from a scalar-head model: the value of the state before token t.
    `group`: rows per shared prompt (`completion_outputs`)."""
    return completion_outputs(graphdef, params, batch, group).astype(jnp.float32)


def last_token_scores(
    graphdef: nnx.GraphDef, params: Any, batch: dict, group: int = 1
) -> jax.Array:
    """A scalar-head model's output at each row's last real token, the end of its completion
    (a reward model's reward), float32 [B]; `group` as in `completion_outputs`."""
    outputs = completion_outputs(graphdef, params, batch, group, last=True)
    lengths = batch["completion_mask"].sum(axis=1).astype(jnp.int32)
    return jnp.take_along_axis(outputs, lengths[:, None], axis=1)[:, 0].astype(jnp.float32)


def rollout_forward(
    policy: nnx.GraphDef,
    critic: nnx.GraphDef | None,
    temperature: float,
    group: int,
    params: tuple[Any, Any, Any],
    batch: dict,
) -> dict[str, jax.Array]:
    """What an RL iteration needs from its models before the update, for rollout rows:
    old_logp and entropy (the policy: skipped when its params are None, the sampler's log-probs
    standing in), ref_logp (the reference) and, with a critic, old_values.
    `params` = (policy or None, reference, critic or None); `group`: rows per shared prompt
    (`completion_outputs`). Jitted as one program, XLA interleaves the independent forward
    passes."""
    policy_params, reference_params, critic_params = params
    ref_logp, _ = policy_logprobs(policy, reference_params, batch, temperature, group)
    out = {"ref_logp": ref_logp}
    if policy_params is not None:
        out["old_logp"], out["entropy"] = policy_logprobs(
            policy, policy_params, batch, temperature, group
        )
    if critic is not None:
        out["old_values"] = token_values(critic, critic_params, batch, group)
    return out


def forward_in_chunks(
    fn: Callable[[Any, dict], Any],
    params: Any,
    batch: dict[str, np.ndarray],
    order: np.ndarray,
    chunk: int,
    put: Callable[[dict], dict],
) -> Any:
    """fn(params, rows) over `batch` taken in `order`, `chunk` rows at a time (one compiled
    shape), returned as host arrays in the batch's own row order."""
    pieces = []  # every chunk dispatched before the first is read back
    for start in range(0, len(order), chunk):
        rows = order[start : start + chunk]
        pieces.append(fn(params, put({k: v[rows] for k, v in batch.items()})))
    stacked = jax.tree.map(lambda *xs: np.concatenate(xs), *jax.device_get(pieces))
    inverse = np.argsort(order)
    return jax.tree.map(lambda x: x[inverse], stacked)
