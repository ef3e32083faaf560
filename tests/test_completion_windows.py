"""Target windows: the collator's `target_columns` cover every target of a row, and running the
LM head only there gives the same log-probs, metrics, losses and gradients as running it at
every column (SFT, DPO pairs, KTO with its mismatched rows, RRHF, chunked or not), at any
sampling temperature."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from tiny_runs import TINY_LLAMA

from jalign.data.batching import target_columns, window_width
from jalign.data.examples import check_shared_prompt
from jalign.data.schemas import TARGET_COLUMNS
from jalign.data.stats import RecordError
from jalign.models import apply, create_model
from jalign.train.forward import paired, target_logprobs
from jalign.train.objective import RunContext
from jalign.train.objectives.completions import completion_logps
from jalign.train.objectives.preference import PREFERENCE_OBJECTIVE
from jalign.train.objectives.sft import SFT_OBJECTIVE

CFG = TINY_LLAMA
T = 16
PAIR = ("chosen_", "rejected_")


def right_padded_rows(seed: int, n: int, completions: tuple[int, int] = (1, 6)) -> dict:
    """n rows of [prompt | completion | padding] over T columns; the mask marks completions."""
    rng = np.random.default_rng(seed)
    prompt = rng.integers(1, 8, size=n)
    length = prompt + rng.integers(*completions, size=n)
    col = np.arange(T)[None]
    seg = (col < length[:, None]).astype(np.int32)
    mask = ((col >= prompt[:, None]) & (col < length[:, None])).astype(np.float32)
    return {
        "input_ids": (rng.integers(3, 32, size=(n, T)) * seg).astype(np.int32),
        "positions": (np.broadcast_to(np.arange(T), (n, T)) * seg).astype(np.int32),
        "segment_ids": seg,
        "loss_mask": mask,
    }


@pytest.mark.parametrize(
    ("span", "width", "expected"), [(1, 128, 32), (32, 128, 32), (33, 128, 64), (127, 128, 127)]
)
def test_window_width_rounds_up_to_a_quarter_of_the_predicting_columns(span, width, expected):
    assert window_width(span, width) == expected


def test_target_columns_cover_every_target_with_one_shared_width():
    a = right_padded_rows(0, 6)["loss_mask"]
    b = right_padded_rows(1, 6, completions=(1, 9))["loss_mask"]
    b[2] = 0.0  # a row without targets
    cols_a, cols_b = target_columns([a, b])
    spans = [np.flatnonzero(row[1:]) for m in (a, b) for row in m]
    longest = max(s[-1] - s[0] + 1 for s in spans if len(s))
    assert cols_a.shape == cols_b.shape == (6, window_width(longest, T))
    for mask, cols in ((a, cols_a), (b, cols_b)):
        np.testing.assert_array_equal(np.diff(cols, axis=1), 1)  # consecutive columns
        assert cols.min() >= 0 and cols.max() <= T - 2  # each predicts a token of the row
        covered = np.take_along_axis(mask, cols + 1, axis=1).sum(1)
        np.testing.assert_array_equal(covered, mask[:, 1:].sum(1))
    np.testing.assert_array_equal(cols_b[2], np.arange(cols_b.shape[1]))


def windowed(rows: dict) -> dict:
    (cols,) = target_columns([rows["loss_mask"]])
    assert cols.shape[1] < T - 1  # the window is narrower than the row
    return rows | {TARGET_COLUMNS: cols}


@pytest.mark.parametrize("chunk", [0, 3])
def test_completion_logps_and_gradient_are_those_of_every_column(chunk):
    graphdef, params = create_model(CFG, seed=0)
    rows = right_padded_rows(2, 5)

    def summed(p, r):
        out = completion_logps(graphdef, p, r, chunk)
        extra = 0.0 if out.mean_logits is None else jnp.sum(out.mean_logits)
        return jnp.sum(out.logps) + extra, out

    grad = jax.jit(jax.grad(summed, has_aux=True))
    full_grad, full = grad(params, rows)
    window_grad, window = grad(params, windowed(rows))
    for a, b in zip(full, window, strict=True):
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert (full.mean_logits is None) == (chunk > 0)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), full_grad, window_grad
    )


@pytest.mark.parametrize("chunk", [0, 3])
def test_target_logprobs_at_a_temperature_match_a_hand_log_softmax(chunk):
    """Every target's log-prob under softmax(logits / 2), read from the full logits by hand."""
    graphdef, params = create_model(CFG, seed=0)
    rows = right_padded_rows(3, 5)
    out = target_logprobs(graphdef, params, windowed(rows), chunk, temperature=2.0)
    logits, _ = apply(graphdef, params, rows["input_ids"], rows["positions"], rows["segment_ids"])
    logp = jax.nn.log_softmax(np.asarray(logits, np.float64)[:, :-1] / 2.0, axis=-1)
    hand = np.take_along_axis(logp, rows["input_ids"][:, 1:, None], -1)[..., 0]
    mask = rows["loss_mask"][:, 1:]
    np.testing.assert_allclose(
        (np.asarray(out.logps) * out.mask).sum(1), (hand * mask).sum(1), rtol=1e-5
    )
    np.testing.assert_array_equal(np.asarray(out.mask).sum(1), mask.sum(1))


def objective_loss(objective, **settings):
    """The objective's jitted value-and-grad loss with its defaults overridden by `settings`."""
    section = {**objective.defaults, **settings}
    ctx = RunContext(
        config=ml_collections.ConfigDict({objective.name: section}),
        graphdef=create_model(CFG)[0],
        model_config=CFG,
        mesh=None,
        tokenizer=None,
    )
    return jax.jit(jax.value_and_grad(objective.make_loss(ctx), has_aux=True))


def pair_batch() -> dict:
    """4 pairs of rows that share their prompt (as the encoder requires) and differ after it."""
    chosen = right_padded_rows(3, 4)
    rng = np.random.default_rng(4)
    prompt = chosen["loss_mask"].argmax(1)
    length = prompt + rng.integers(2, 8, size=4)
    col = np.arange(T)[None]
    seg = (col < length[:, None]).astype(np.int32)
    ids = np.where(col < prompt[:, None], chosen["input_ids"], rng.integers(3, 32, size=(4, T)))
    rejected = {
        "input_ids": (ids * seg).astype(np.int32),
        "positions": (np.broadcast_to(np.arange(T), (4, T)) * seg).astype(np.int32),
        "segment_ids": seg,
        "loss_mask": ((col >= prompt[:, None]) & (col < length[:, None])).astype(np.float32),
    }
    batch = {f"chosen_{k}": v for k, v in chosen.items()}
    return batch | {f"rejected_{k}": v for k, v in rejected.items()}


def test_dpo_kto_and_rrhf_losses_and_gradients_are_unchanged_by_target_columns():
    _, params = create_model(CFG, seed=1)
    _, ref = create_model(CFG, seed=2)
    frozen = {"ref_params": ref}
    example_mask = np.array([1, 1, 1, 0], np.float32)
    pairs = pair_batch() | {"example_mask": example_mask}
    cols = target_columns([pairs["chosen_loss_mask"], pairs["rejected_loss_mask"]])
    pairs_windowed = pairs | {
        f"{p}_{TARGET_COLUMNS}": c for p, c in zip(("chosen", "rejected"), cols, strict=True)
    }
    unpaired = right_padded_rows(5, 4) | {
        "labels": np.array([True, False, True, True]),
        "example_mask": example_mask,
    }
    ranked_rows = right_padded_rows(6, 6)
    ranked = {k: v.reshape(2, 3, T) for k, v in ranked_rows.items()} | {
        "scores": np.array([[1.0, 0.0, 2.0], [0.5, 1.5, -1.0]], np.float32),
        "response_mask": np.ones((2, 3), np.float32),
        "example_mask": np.ones(2, np.float32),
    }
    (ranked_columns,) = target_columns([ranked["loss_mask"]])  # [2, 3, W], as the collator
    ranked_windowed = ranked | {TARGET_COLUMNS: ranked_columns}
    cases = [
        ("sigmoid", pairs, pairs_windowed),
        ("kto", unpaired, windowed(unpaired)),
        ("rrhf", ranked, ranked_windowed),
    ]
    rng = jax.random.key(0)
    for loss_type, plain, with_columns in cases:
        step = objective_loss(PREFERENCE_OBJECTIVE, loss_type=loss_type)
        (loss_a, aux_a), grad_a = step(params, frozen, plain, rng)
        (loss_b, aux_b), grad_b = step(params, frozen, with_columns, rng)
        assert np.isfinite(float(loss_a)) and float(loss_a) != 0.0
        np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5, err_msg=loss_type)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
            aux_a["metrics"],
            aux_b["metrics"],
        )
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grad_a, grad_b
        )


@pytest.mark.parametrize("normalization", ["token", "sequence"])
def test_sft_loss_accuracy_and_gradient_are_unchanged_by_target_columns(normalization):
    graphdef, params = create_model(CFG, seed=3)
    rows = right_padded_rows(7, 4) | {"example_mask": np.array([1, 1, 1, 0], np.float32)}
    step = objective_loss(SFT_OBJECTIVE, loss_normalization=normalization)
    rng = jax.random.key(0)
    (loss_a, aux_a), grad_a = step(params, {}, rows, rng)
    (loss_b, aux_b), grad_b = step(params, {}, windowed(rows), rng)
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5)
    for key in ("accuracy", "nll", "tokens"):
        np.testing.assert_allclose(aux_a["metrics"][key], aux_b["metrics"][key], rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grad_a, grad_b
    )
    # Accuracy by hand: the argmax of the logits at t - 1 is the token at t, over real targets.
    logits, _ = apply(graphdef, params, rows["input_ids"], rows["positions"], rows["segment_ids"])
    mask = rows["loss_mask"][:, 1:] * rows["example_mask"][:, None]
    hits = np.asarray(logits)[:, :-1].argmax(-1) == rows["input_ids"][:, 1:]
    assert float(aux_b["metrics"]["accuracy"]) == pytest.approx((hits * mask).sum() / mask.sum())


@pytest.mark.parametrize("chunk", [0, 3])
def test_pairs_run_their_shared_prompt_once_with_the_same_logps_and_gradients(chunk):
    """`share_prompt` runs each pair's prompt once (fewer FLOPs) and changes nothing else: the
    rows' log-probs, and the gradient of a sum that weighs every row differently. Three layers,
    so the prompt's later-layer keys and values come from its earlier layers' outputs."""
    graphdef, params = create_model(
        dataclasses.replace(CFG, num_layers=3, sliding_windows=(None,) * 3), seed=0
    )
    batch = pair_batch()
    columns = target_columns([batch["chosen_loss_mask"], batch["rejected_loss_mask"]])
    rows = paired(batch | {f"{p}{TARGET_COLUMNS}": c for p, c in zip(PAIR, columns, strict=True)})
    weights = jnp.arange(1.0, 9.0)

    def weighted(p, share):
        out = completion_logps(graphdef, p, rows, chunk, pairs_share_prompt=share)
        return jnp.sum(weights * out.logps), out

    grad = jax.jit(jax.grad(weighted, has_aux=True), static_argnums=1)
    (full_grad, full), (shared_grad, shared) = grad(params, False), grad(params, True)
    np.testing.assert_allclose(full.logps, shared.logps, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(full.lengths, shared.lengths)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), full_grad, shared_grad
    )

    def flops(share):
        compiled = jax.jit(lambda p: weighted(p, share)[0]).lower(params).compile()
        return compiled.cost_analysis()["flops"]

    # The windows are W = 8 of T = 16 columns: the first two layers run 4 x 8 + 8 x 8 tokens
    # instead of 8 x 16 (the head and the last layer's queries run on the windows either way).
    assert columns[0].shape[1] == 8
    assert flops(True) < 0.9 * flops(False)


def test_a_pair_whose_prompts_differ_is_a_clear_error():
    """The shared-prompt forward needs both rows of a pair to hold the same prompt tokens."""
    ids = np.array([1, 5, 6, 7, 8]), np.array([1, 5, 9, 7, 8])
    masks = np.array([0, 0, 0, 1, 1.0]), np.array([0, 0, 0, 1, 1.0])
    with pytest.raises(RecordError, match="'chosen' and 'rejected' give different prompt tokens"):
        check_shared_prompt(ids, masks)
    check_shared_prompt((ids[0], ids[0]), masks)  # the same prompt passes
