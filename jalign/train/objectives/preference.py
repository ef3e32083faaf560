"""The DPO family as one objective (`jalign dpo`), chosen by `dpo.loss_type`:

- the paired types (`jalign.losses.PREFERENCE_LOSS_TYPES`: sigmoid, robust, ipo, hinge, simpo,
  orpo, cpo, kldpo, wdpo) read preference pairs; chosen and rejected completions run through the
  model in one concatenated forward pass and `jalign.losses.preference_loss` compares them;
- `kto` reads unpaired records {"prompt", "completion", "label"} (`objectives.kto`);
- `rrhf` reads ranked records {"prompt", "responses", "scores"} (`objectives.rrhf`).

Reference handling (`dpo.reference`):
- "live": a frozen copy of the initial policy (or of `dpo.reference_path`) rides in the train
  state and is run alongside the policy each step;
- "precomputed" (paired types): the reference's log-probabilities of every training and eval
  record are computed once, before training, and cached in the run directory under a key that
  hashes the reference weights, the data files and the data settings (a stale cache is never
  reused); no reference model is in memory during training. KTO cannot use it: its reference
  point needs the reference on mismatched pairs drawn from each batch;
- reference-free types (simpo, orpo, cpo, rrhf) use none.

`dpo.online.every > 0` makes the run semi-online (`jalign.train.online`): the training pairs are
regenerated from the current policy every that many steps.
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
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jalign.config import at_least, greater_than
from jalign.data import PREFERENCE, DataPipeline
from jalign.data.schemas import RANKED, RECORD_INDEX, UNPAIRED
from jalign.errors import JalignError
from jalign.losses import PREFERENCE_LOSS_TYPES, PreferenceLossConfig, preference_loss
from jalign.sharding import shard_batch
from jalign.train.forward import PAIRS, paired
from jalign.train.objective import Objective, RunContext
from jalign.train.objectives.completions import CompletionLogps, completion_logps
from jalign.train.objectives.kto import make_kto_loss
from jalign.train.objectives.rrhf import make_rrhf_loss
from jalign.train.online import (
    ONLINE_CHECKS,
    ONLINE_CHOICES,
    ONLINE_DEFAULTS,
    RoundPlan,
    Rounds,
    check_online,
    select_pairs,
)

REFERENCE_MODES = ("live", "precomputed")
KTO, RRHF = "kto", "rrhf"
LOSS_TYPES = (*PREFERENCE_LOSS_TYPES, KTO, RRHF)
_LOSS_KEYS = tuple(f.name for f in dataclasses.fields(PreferenceLossConfig))
# Keys of the paired loss config that KTO and RRHF have no use for: they must stay 0.
_PAIRED_ONLY_KEYS = ("label_smoothing", "rpo_alpha")


def data_kind(config: ml_collections.ConfigDict) -> str:
    """Pairs for the paired types, unpaired records for KTO, ranked records for RRHF."""
    return {KTO: UNPAIRED, RRHF: RANKED}.get(config.dpo.loss_type, PREFERENCE)


def loss_config(config: ml_collections.ConfigDict) -> PreferenceLossConfig:
    return PreferenceLossConfig(**{k: config.dpo[k] for k in _LOSS_KEYS})


def needs_reference(config: ml_collections.ConfigDict) -> bool:
    kind = config.dpo.loss_type
    if kind in (KTO, RRHF):
        return kind == KTO
    return loss_config(config).needs_reference


def validate(config: ml_collections.ConfigDict) -> None:
    """Rules across the `dpo` keys (the loss type's own values are checked by its config)."""
    dpo = config.dpo
    if dpo.loss_type in (KTO, RRHF):
        for key in _PAIRED_ONLY_KEYS:
            if dpo[key] != 0:
                raise JalignError(
                    f"config key 'dpo.{key}' is {dpo[key]!r}, which loss_type={dpo.loss_type!r} "
                    f"does not use; allowed: 0 (it applies to the paired loss types)"
                )
    else:
        loss_config(config)
    if dpo.loss_type == KTO and dpo.reference == "precomputed":
        raise JalignError(
            "config key 'dpo.reference' is 'precomputed', which loss_type='kto' cannot use (its "
            "reference point runs the reference on mismatched pairs drawn from each batch); "
            "allowed: 'live'"
        )
    check_online(config, paired=dpo.loss_type in PREFERENCE_LOSS_TYPES)


def pair_logps(ctx: RunContext, params: Any, batch: dict) -> CompletionLogps:
    """`completion_logps` of a preference batch's [2B] rows, chosen rows first, as the config's
    `dpo.logprob_chunk` and `dpo.share_prompt` say (with `share_prompt`, each pair's prompt runs
    through the model once: `jalign.train.forward.shared_prompt_hidden`)."""
    dpo = ctx.config.dpo
    groups = PAIRS if dpo.share_prompt else None
    return completion_logps(ctx.graphdef, params, paired(batch), dpo.logprob_chunk, groups)


def make_loss(ctx: RunContext) -> Callable:
    kind = ctx.config.dpo.loss_type
    if kind == KTO:
        return make_kto_loss(ctx)
    if kind == RRHF:
        return make_rrhf_loss(ctx)
    return make_paired_loss(ctx)


def make_paired_loss(ctx: RunContext) -> Callable:
    cfg = loss_config(ctx.config)

    def loss_fn(params, frozen, batch, rng):
        del rng
        logps, lengths, mean_logits = pair_logps(ctx, params, batch)
        policy_chosen, policy_rejected = jnp.split(logps, 2)
        len_chosen, len_rejected = jnp.split(lengths, 2)
        ref_chosen = ref_rejected = None
        if cfg.needs_reference:
            if "ref_table" in frozen:
                ref = frozen["ref_table"][batch[RECORD_INDEX]]
                ref_chosen, ref_rejected = ref[:, 0], ref[:, 1]
            else:
                ref = pair_logps(ctx, frozen["ref_params"], batch).logps
                ref_chosen, ref_rejected = jnp.split(jax.lax.stop_gradient(ref), 2)
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
    logps_fn = jax.jit(lambda p, b: pair_logps(ctx, p, b).logps)
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
    if not needs_reference(ctx.config):
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


def make_data(ctx: RunContext, batch_size: int) -> Rounds | None:
    """Semi-online rounds of fresh pairs when `dpo.online.every > 0`; None reads `data.train`."""
    online = ctx.config.dpo.online
    if online.every <= 0:
        return None
    plan = RoundPlan(
        section=online,
        key="dpo.online",
        kind=PREFERENCE,
        select=lambda prompts, completions, scores, k, rng: select_pairs(
            prompts, completions, scores, k, online.pairs, online.min_margin, rng
        ),
        refresh_reference=online.reference == "refresh",
    )
    return Rounds(ctx, batch_size, plan)


PREFERENCE_OBJECTIVE = Objective(
    name="dpo",
    data_kind=data_kind,
    head="lm",
    defaults={
        **{f.name: f.default for f in dataclasses.fields(PreferenceLossConfig)},
        "desirable_weight": 1.0,  # kto: lambda_D
        "undesirable_weight": 1.0,  # kto: lambda_U
        "rank_weight": 1.0,  # rrhf: weight of the ranking term
        "reference": "live",
        "reference_path": "",  # "" = the initial policy
        "logprob_chunk": 0,  # > 0: logprobs in sequence chunks (large vocabularies)
        "share_prompt": True,  # paired types and rrhf: a record's prompt runs through the model once
        "online": ml_collections.ConfigDict(ONLINE_DEFAULTS),
    },
    make_loss=make_loss,
    make_frozen=make_frozen,
    eval_frozen=eval_frozen,
    make_data=make_data,
    choices={
        "loss_type": LOSS_TYPES,
        "reference": REFERENCE_MODES,
        **{f"online.{k}": v for k, v in ONLINE_CHOICES.items()},
    },
    checks={
        "desirable_weight": greater_than(0),
        "undesirable_weight": greater_than(0),
        "rank_weight": at_least(0),
        **{f"online.{k}": v for k, v in ONLINE_CHECKS.items()},
    },
    validate=validate,
)
