"""Checkpoints: bitwise round trips (typed PRNG keys, AdamW state), keep-last-K, half-written
steps never resumed from, restore onto given shardings, SIGKILL right after a save."""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from jalign.checkpoint import CheckpointManager, check_finite
from jalign.errors import JalignError
from jalign.train.state import TrainState

METADATA = {"data_iterator": {"epoch": 1, "index": 17}, "config_hash": "0123abcd"}


def _train_state(seed: int = 0) -> TrainState:
    keys = jax.random.split(jax.random.key(seed), 3)
    params = {
        "w": jax.random.normal(keys[0], (4, 3), jnp.float32),
        "norm": {"scale": jax.random.normal(keys[1], (3,), jnp.bfloat16)},
    }
    optimizer = optax.adamw(1e-2, weight_decay=0.1)
    opt_state = optimizer.init(params)
    grads = jax.tree.map(lambda p: jnp.ones_like(p) * 0.5, params)
    _, opt_state = optimizer.update(grads, opt_state, params)  # non-trivial mu, nu, count
    return TrainState(params=params, opt_state=opt_state, step=jnp.int32(7), rng=keys[2])


def _abstract(state, sharding):
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
        jax.eval_shape(lambda: state),
    )


def _bits(x) -> tuple:
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return ("key", str(x.dtype), np.asarray(jax.random.key_data(x)).tobytes())
    return (str(x.dtype), x.shape, np.asarray(x).tobytes())


def _assert_bitwise_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    assert [_bits(x) for x in jax.tree.leaves(a)] == [_bits(x) for x in jax.tree.leaves(b)]


def _sharding():
    return NamedSharding(jax.make_mesh((1,), ("data",)), PartitionSpec())


def test_round_trip_is_bitwise_onto_the_given_sharding(tmp_path):
    state = _train_state()
    sharding = _sharding()
    with CheckpointManager(tmp_path, save_every=1) as manager:
        assert manager.save(7, state, METADATA)
        restored, metadata = manager.restore(7, _abstract(state, sharding))
    assert isinstance(restored, TrainState)
    assert jax.dtypes.issubdtype(restored.rng.dtype, jax.dtypes.prng_key)
    _assert_bitwise_equal(restored, state)
    assert all(x.sharding == sharding for x in jax.tree.leaves(restored))
    assert metadata == METADATA
    # The restored key and optimizer state continue the run exactly like the originals.
    assert np.array_equal(
        jax.random.uniform(restored.rng, (3,)), jax.random.uniform(state.rng, (3,))
    )


def test_save_every_and_keep_last_k(tmp_path):
    state = {"x": jnp.arange(3)}
    with CheckpointManager(tmp_path, save_every=3, max_to_keep=2) as manager:
        saved = [manager.save(step, state, {}, force=step == 10) for step in range(1, 11)]
        assert saved == [False, False, True, False, False, True, False, False, True, True]
        assert manager.save(10, state, {}, force=True) is False  # already there: not an error
        assert manager.all_steps() == [9, 10]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) == ["10", "9"]


def test_half_written_steps_are_never_resumed_from(tmp_path):
    state = {"x": jnp.arange(3.0), "rng": jax.random.key(1)}
    abstract = _abstract(state, _sharding())
    with CheckpointManager(tmp_path, save_every=1) as manager:
        manager.save(3, state, {"at": 3})
    # Step 7: all files present except the commit marker (a copy or write cut short).
    shutil.copytree(tmp_path / "3", tmp_path / "7")
    (tmp_path / "7" / "commit_success.txt").unlink()
    # Step 9: orbax's temporary directory from a save killed before its rename.
    shutil.copytree(tmp_path / "3", tmp_path / "9.orbax-checkpoint-tmp-1234")

    with CheckpointManager(tmp_path, save_every=1) as manager:
        assert manager.latest_step() == 3
        step, restored, metadata = manager.restore_or_none(abstract)
        assert (step, metadata) == (3, {"at": 3})
        with pytest.raises(JalignError, match=r"no complete checkpoint for step 7 .* steps: \[3\]"):
            manager.restore(7, abstract)
        # Saving step 7 for real replaces the partial directory.
        new_state = {"x": jnp.arange(3.0) + 1, "rng": jax.random.key(2)}
        assert manager.save(7, new_state, {"at": 7})
        assert manager.latest_step() == 7
        restored, _ = manager.restore(7, abstract)
    _assert_bitwise_equal(restored, new_state)
    assert not (tmp_path / "9.orbax-checkpoint-tmp-1234").exists()  # cleaned up on open


def test_restore_or_none_in_a_fresh_directory(tmp_path):
    with CheckpointManager(tmp_path / "ckpt", save_every=1) as manager:
        assert manager.restore_or_none(_abstract({"x": jnp.zeros(2)}, _sharding())) is None


def test_mismatched_state_and_missing_shardings_are_reported(tmp_path):
    with CheckpointManager(tmp_path, save_every=1) as manager:
        manager.save(1, {"w": jnp.zeros((2, 3))}, {})
        wrong = _abstract({"w": jnp.zeros((4, 3))}, _sharding())
        with pytest.raises(JalignError, match=r"step 1 .* does not match the expected train state"):
            manager.restore(1, wrong)
        with pytest.raises(
            ValueError, match=r"\['w'\] must be a jax.ShapeDtypeStruct with a sharding"
        ):
            manager.restore(1, {"w": jax.ShapeDtypeStruct((2, 3), jnp.float32)})
        assert manager.restore_metadata(1) == {}


def test_async_save_is_committed_by_close(tmp_path):
    state = {"x": jnp.arange(4.0)}
    with CheckpointManager(tmp_path, save_every=1, async_save=True) as manager:
        manager.save(1, state, METADATA)
    assert (tmp_path / "1" / "commit_success.txt").exists()
    with CheckpointManager(tmp_path, save_every=1) as manager:
        restored, metadata = manager.restore(1, _abstract(state, _sharding()))
    _assert_bitwise_equal(restored, state)
    assert metadata == METADATA


def test_sigkill_right_after_save_leaves_a_complete_checkpoint(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal
        import jax.numpy as jnp
        from jalign.checkpoint import CheckpointManager
        manager = CheckpointManager({str(tmp_path)!r}, save_every=1)
        manager.save(5, {{"x": jnp.arange(6.0)}}, {{"ok": True}})
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=repo, capture_output=True, timeout=120
    )
    assert result.returncode == -9, result.stderr.decode()[-2000:]
    with CheckpointManager(tmp_path, save_every=1) as manager:
        step, restored, metadata = manager.restore_or_none(
            _abstract({"x": jnp.zeros(6)}, _sharding())
        )
    assert (step, metadata) == (5, {"ok": True})
    assert np.array_equal(restored["x"], np.arange(6.0))


def test_check_finite_names_the_step_and_the_last_good_checkpoint():
    check_finite({"loss": jnp.float32(1.0), "nonfinite": jnp.int32(0)}, step=12, last_good_step=10)
    with pytest.raises(JalignError) as err:
        check_finite(
            {
                "loss": jnp.float32(jnp.nan),
                "grad_norm": jnp.float32(2.0),
                "nonfinite": jnp.int32(1),
            },
            step=12,
            last_good_step=10,
        )
    assert (
        str(err.value)
        == "non-finite loss at step 12 (loss=nan); last good checkpoint is step 10 (untouched)"
    )
    with pytest.raises(JalignError, match=r"\(grad_norm=inf\); no checkpoint has been saved yet"):
        check_finite({"loss": 1.0, "grad_norm": float("inf")}, step=3, last_good_step=None)
    with pytest.raises(JalignError, match=r"\(nonfinite=1\)"):
        check_finite({"loss": 1.0, "nonfinite": 1}, step=3, last_good_step=None)
