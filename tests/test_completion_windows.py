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
from jalign.train.forward import (
    PAIRS,
    paired,
    ranked_groups,
    ranked_rows,
    sequence_rewards,
    target_logprobs,
)
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


def ranked_batch(k: int = 3) -> dict:
    """2 records of k responses that share each record's prompt and differ after it."""
    rows = right_padded_rows(6, 2 * k)
    rng = np.random.default_rng(8)
    prompt = np.repeat(rng.integers(2, 7, size=2), k)
    length = prompt + rng.integers(1, 8, size=2 * k)
    col = np.arange(T)[None]
    seg = (col < length[:, None]).astype(np.int32)
    ids = np.where(
        col < prompt[:, None], np.repeat(rows["input_ids"][::k], k, 0), rows["input_ids"]
    )
    rows = {
        "input_ids": (ids * seg).astype(np.int32),
        "positions": (np.broadcast_to(np.arange(T), (2 * k, T)) * seg).astype(np.int32),
        "segment_ids": seg,
        "loss_mask": ((col >= prompt[:, None]) & (col < length[:, None])).astype(np.float32),
    }
    batch = {key: v.reshape(2, k, T) for key, v in rows.items()}
    (batch[TARGET_COLUMNS],) = target_columns([batch["loss_mask"]])
    return batch


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
    ranked_windowed = ranked_batch() | {
        "scores": np.array([[1.0, 0.0, 2.0], [0.5, 1.5, -1.0]], np.float32),
        "response_mask": np.ones((2, 3), np.float32),
        "example_mask": np.ones(2, np.float32),
    }
    ranked = {k: v for k, v in ranked_windowed.items() if k != TARGET_COLUMNS}
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


def three_layers(head: str = "lm"):
    """A 3-layer model: the prompt's later-layer keys and values come from its earlier layers."""
    cfg = dataclasses.replace(CFG, num_layers=3, sliding_windows=(None,) * 3)
    return create_model(cfg, seed=0, head=head)


def windowed_pairs() -> dict:
    batch = pair_batch()
    columns = target_columns([batch["chosen_loss_mask"], batch["rejected_loss_mask"]])
    return paired(batch | {f"{p}{TARGET_COLUMNS}": c for p, c in zip(PAIR, columns, strict=True)})


@pytest.mark.parametrize(("layout", "chunk"), [("pairs", 0), ("pairs", 3), ("ranked", 0)])
def test_groups_run_their_shared_prompt_once_with_the_same_logps_and_gradients(layout, chunk):
    """Rows that share a prompt (a DPO pair, chosen rows then rejected; an RRHF ranking of 3,
    record by record) run it once (fewer FLOPs) and change nothing else: the rows' log-probs,
    and the gradient of a sum that weighs every row differently."""
    graphdef, params = three_layers()
    if layout == "pairs":
        rows, groups = windowed_pairs(), PAIRS
    else:
        batch = ranked_batch()
        rows, groups = ranked_rows(batch), ranked_groups(batch)
    weights = jnp.arange(1.0, 1.0 + len(rows["input_ids"]))

    def weighted(p, share):
        out = completion_logps(graphdef, p, rows, chunk, groups if share else None)
        return jnp.sum(weights * out.logps), out

    grad = jax.jit(jax.grad(weighted, has_aux=True), static_argnums=1)
    (full_grad, full), (shared_grad, shared) = grad(params, False), grad(params, True)
    np.testing.assert_allclose(full.logps, shared.logps, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(full.lengths, shared.lengths)
    # Gradients of up to ~20: float32 rounding of the reordered sums reaches a few 1e-6.
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), full_grad, shared_grad
    )

    def flops(share):
        compiled = jax.jit(lambda p: weighted(p, share)[0]).lower(params).compile()
        return compiled.cost_analysis()["flops"]

    # The windows are W = 8 of T = 16 columns: for N rows the first two layers run
    # N / size x 8 + N x 8 tokens instead of N x 16 (the head and the last layer's queries run
    # on the windows either way).
    assert rows[TARGET_COLUMNS].shape[1] == 8
    assert flops(True) < 0.9 * flops(False)


def response_filling_its_window(rows: dict, row: int) -> dict:
    """`rows` with `row`'s response lengthened to span the whole target window, so that its
    last token lies one column past the window (the window predicts up to it); windows
    recomputed."""
    (columns,) = target_columns([rows["loss_mask"]])
    prompt = int(np.argmax(rows["loss_mask"][row]))
    length = prompt + columns.shape[1]
    assert length <= T
    rows = {k: np.array(v) for k, v in rows.items()}
    rows["input_ids"][row, :length] = np.where(
        rows["segment_ids"][row, :length] == 1, rows["input_ids"][row, :length], 5
    )
    rows["segment_ids"][row, :length] = 1
    rows["positions"][row, :length] = np.arange(length)
    rows["loss_mask"][row, prompt:length] = 1.0
    (rows[TARGET_COLUMNS],) = target_columns([rows["loss_mask"]])
    assert rows[TARGET_COLUMNS].shape == columns.shape
    return rows


@pytest.mark.parametrize("layout", ["pairs", "ranked"])
def test_reward_model_reads_each_last_token_with_its_prompt_run_once(layout):
    """A reward model's score at each row's last real token, the group's prompt run once
    (reading one column past the window, where a response that fills the window ends), equals
    the plain forward's, and so does the gradient of a weighted sum of the rewards."""
    graphdef, params = three_layers(head="scalar")
    if layout == "pairs":
        rows, groups = windowed_pairs(), PAIRS
    else:
        batch = ranked_batch()
        rows, groups = ranked_rows(batch), ranked_groups(batch)
    rows = response_filling_its_window(rows, row=len(rows["input_ids"]) - 1)
    last = rows["segment_ids"].sum(1) - 1
    assert last[-1] == rows[TARGET_COLUMNS][-1, -1] + 1
    weights = jnp.arange(1.0, 1.0 + len(last))

    def weighted(p, share):
        rewards = sequence_rewards(graphdef, p, rows, groups if share else None)
        return jnp.sum(weights * rewards), rewards

    grad = jax.jit(jax.grad(weighted, has_aux=True), static_argnums=1)
    (full_grad, full), (shared_grad, shared) = grad(params, False), grad(params, True)
    np.testing.assert_allclose(full, shared, rtol=1e-5, atol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), full_grad, shared_grad
    )


def test_responses_whose_prompts_differ_are_a_clear_error():
    """The shared-prompt forward needs every row of a record to hold the same prompt tokens."""
    ids = np.array([1, 5, 6, 7, 8]), np.array([1, 5, 9, 7, 8])
    masks = np.array([0, 0, 0, 1, 1.0]), np.array([0, 0, 0, 1, 1.0])
    with pytest.raises(RecordError, match="'chosen' and 'rejected' give different prompt tokens"):
        check_shared_prompt(ids, masks, ("chosen", "rejected"))
    names = ("responses[0]", "responses[1]", "responses[2]")
    with pytest.raises(RecordError, match=r"'responses\[0\]' and 'responses\[2\]' give"):
        check_shared_prompt((ids[0], ids[0], ids[1]), masks + masks[:1], names)
    check_shared_prompt((ids[0], ids[0]), masks, names[:2])  # the same prompt passes
