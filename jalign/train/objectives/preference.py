"""The DPO family as one objective: sequence log-probabilities of chosen and rejected
completions (one concatenated forward pass), a reference, and `jalign.losses.preference_loss`.

Reference handling (`dpo.reference`):
- "live": a frozen copy of the initial policy (or of `dpo.reference_path`) rides in the train
  state and is run alongside the policy each step;
- "precomputed": the reference's log-probabilities of every training and eval record are
  computed once, before training, and cached in the run directory under a key that hashes the
  reference weights, the data files and the data settings (a stale cache is never reused); no
  reference model is in memory during training;
- reference-free loss types (simpo, orpo, cpo) use none.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from jalign.data import PREFERENCE, DataPipeline
from jalign.data.schemas import RECORD_INDEX
from jalign.losses import PREFERENCE_LOSS_TYPES, PreferenceLossConfig, preference_loss
from jalign.sharding import shard_batch
from jalign.train.forward import paired, sequence_logprobs
from jalign.train.objective import Objective, RunContext

REFERENCE_MODES = ("live", "precomputed")
_LOSS_KEYS = tuple(f.name for f in dataclasses.fields(PreferenceLossConfig))


def loss_config(ctx: RunContext) -> PreferenceLossConfig:
    return PreferenceLossConfig(**{k: ctx.config.dpo[k] for k in _LOSS_KEYS})


def pair_logps(
    graphdef: nnx.GraphDef, params: Any, batch: dict, chunk: int = 0
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Summed completion log-probs [2B] (chosen rows first), completion lengths [2B] and the mean
    logit over each completion's tokens (None when logprobs are chunked)."""
    pb = paired(batch)
    mask = pb["loss_mask"]
    logps, logits = sequence_logprobs(graphdef, params, pb, chunk, with_logits=chunk <= 0)
    lengths = jnp.sum(mask, axis=1)
    mean_logits = None
    if logits is not None:
        # logits[t-1] scored token t: shift the mask to the predicting positions.
        token_means = jnp.mean(logits, axis=-1)[:, :-1]
        mean_logits = jnp.sum(token_means * mask[:, 1:], 1) / jnp.maximum(lengths, 1.0)
    return jnp.sum(logps * mask, axis=1), lengths, mean_logits


def make_preference_loss(ctx: RunContext) -> Callable:
    cfg = loss_config(ctx)
    chunk = ctx.config.dpo.logprob_chunk

    def loss_fn(params, frozen, batch, rng):
        del rng
        logps, lengths, mean_logits = pair_logps(ctx.graphdef, params, batch, chunk)
        policy_chosen, policy_rejected = jnp.split(logps, 2)
        len_chosen, len_rejected = jnp.split(lengths, 2)
        ref_chosen = ref_rejected = None
        if cfg.needs_reference:
            if "ref_table" in frozen:
                ref = frozen["ref_table"][batch[RECORD_INDEX]]
                ref_chosen, ref_rejected = ref[:, 0], ref[:, 1]
            else:
                ref_logps, _, _ = pair_logps(ctx.graphdef, frozen["ref_params"], batch, chunk)
                ref_chosen, ref_rejected = jnp.split(jax.lax.stop_gradient(ref_logps), 2)
        loss, metrics, weight = preference_loss(
            policy_chosen,
            policy_rejected,
            ref_chosen,
            ref_rejected,
            len_chosen,
            len_rejected,
            cfg,
            example_mask=batch["example_mask"],
        )
        if mean_logits is not None:
            w = batch["example_mask"]
            chosen_logits, rejected_logits = jnp.split(mean_logits, 2)
            metrics["logits/chosen"] = jnp.sum(w * chosen_logits) / jnp.maximum(jnp.sum(w), 1.0)
            metrics["logits/rejected"] = jnp.sum(w * rejected_logits) / jnp.maximum(jnp.sum(w), 1.0)
        return loss, {"metrics": metrics, "weight": weight}

    return loss_fn


def _reference_params(ctx: RunContext, params: Any) -> Any:
    """A separate copy (the policy's buffers are donated each step) of the reference weights."""
    path = ctx.config.dpo.reference_path
    if not path:
        return jax.tree.map(jnp.copy, params)
    from jalign.train.model_setup import load_model

    return load_model(ctx.config, ctx.mesh, head="lm", path=path).params


def _cache_key(ctx: RunContext, ref_params: Any, data_path: str) -> str:
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(ref_params):
        digest.update(np.asarray(jax.device_get(leaf)).tobytes())
    stat = Path(data_path).stat()
    data_cfg = {k: v for k, v in ctx.config.data.to_dict().items() if k not in ("train", "eval")}
    digest.update(
        json.dumps(
            [str(Path(data_path).resolve()), stat.st_size, stat.st_mtime_ns, data_cfg],
            sort_keys=True,
            default=str,
        ).encode()
    )
    return digest.hexdigest()[:16]


def reference_table(ctx: RunContext, ref_params: Any, data_path: str) -> np.ndarray:
    """[records, 2] reference log-probs (chosen, rejected) of every record in `data_path`;
    records the pipeline skipped stay NaN. Cached in the run directory by `_cache_key`."""
    from jalign.train.loop import data_config

    cache = (
        Path(ctx.config.run_dir) / f"reference_logps-{_cache_key(ctx, ref_params, data_path)}.npy"
    )
    if cache.exists():
        return np.load(cache, allow_pickle=False)
    data = data_config(ctx.config, shuffle=False, num_epochs=1, drop_remainder=False)
    pipeline = DataPipeline(data_path, PREFERENCE, ctx.tokenizer, data, ctx.config.train.batch_size)
    table = np.full((pipeline.num_records, 2), np.nan, np.float32)
    chunk = ctx.config.dpo.logprob_chunk
    logps_fn = jax.jit(lambda p, b: pair_logps(ctx.graphdef, p, b, chunk)[0])
    for batch in pipeline.iterator():
        arrays = {k: v for k, v in batch.items() if isinstance(v, np.ndarray)}
        logps = np.asarray(jax.device_get(logps_fn(ref_params, shard_batch(arrays, ctx.mesh))))
        chosen, rejected = np.split(logps, 2)
        real = batch["example_mask"] > 0
        table[batch[RECORD_INDEX][real]] = np.stack([chosen, rejected], 1)[real]
    tmp = cache.with_suffix(".tmp.npy")
    np.save(tmp, table)
    tmp.replace(cache)
    return table


def make_frozen(ctx: RunContext, params: Any) -> Any:
    if not loss_config(ctx).needs_reference:
        return {}
    ref_params = _reference_params(ctx, params)
    if ctx.config.dpo.reference == "live":
        return {"ref_params": ref_params}
    tables = {"ref_table": reference_table(ctx, ref_params, ctx.config.data.train)}
    if ctx.config.data.eval:
        tables["ref_table_eval"] = reference_table(ctx, ref_params, ctx.config.data.eval)
    return jax.device_put(tables, NamedSharding(ctx.mesh, PartitionSpec()))


def eval_frozen(ctx: RunContext, frozen: Any) -> Any:
    """The eval set's records index the eval table."""
    if "ref_table_eval" in frozen:
        return {**frozen, "ref_table": frozen["ref_table_eval"]}
    return frozen


PREFERENCE_OBJECTIVE = Objective(
    name="dpo",
    data_kind=PREFERENCE,
    head="lm",
    defaults={
        **{f.name: f.default for f in dataclasses.fields(PreferenceLossConfig)},
        "reference": "live",
        "reference_path": "",  # "" = the initial policy
        "logprob_chunk": 0,  # > 0: logprobs in sequence chunks (large vocabularies)
    },
    make_loss=make_preference_loss,
    make_frozen=make_frozen,
    eval_frozen=eval_frozen,
    choices={"loss_type": PREFERENCE_LOSS_TYPES, "reference": REFERENCE_MODES},
)
