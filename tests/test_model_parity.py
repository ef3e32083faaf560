"""Logit parity with transformers' PyTorch models on the same weights, and export round trips."""

import jax
import numpy as np
import pytest

from conftest import FAMILY_CONFIGS, hf_logits, padded_batch
from jalign.interop import load_hf_model, save_hf_model
from jalign.models import apply

FAMILIES = sorted(FAMILY_CONFIGS)


def _jalign_logits(cfg, graphdef, params, ids, mask, positions):
    out, _ = apply(
        graphdef, params, ids.astype(np.int32), positions.astype(np.int32), mask.astype(np.int32)
    )
    return np.asarray(out)


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_transformers_and_export_reloads(family, hf_checkpoint, tmp_path):
    folder = hf_checkpoint(family)
    cfg, graphdef, params = load_hf_model(folder)
    ids, mask, positions = padded_batch(cfg.vocab_size)
    expected = hf_logits(folder, ids, mask, positions)
    got = _jalign_logits(cfg, graphdef, params, ids, mask, positions)
    real = mask.astype(bool)
    assert np.abs(got - expected)[real].max() <= 1e-4

    exported = save_hf_model(tmp_path / "export", cfg, params, source_config=folder)
    reloaded = hf_logits(exported, ids, mask, positions)
    assert np.abs(reloaded - expected).max() <= 1e-5


def test_scanned_stack_loads_and_exports(hf_checkpoint, tmp_path):
    folder = hf_checkpoint("qwen2")
    cfg, graphdef, params = load_hf_model(folder, scan_layers=True)
    assert params["layers"]["attn"]["q_proj"]["kernel"].shape[0] == cfg.num_layers
    ids, mask, positions = padded_batch(cfg.vocab_size)
    expected = hf_logits(folder, ids, mask, positions)
    got = _jalign_logits(cfg, graphdef, params, ids, mask, positions)
    assert np.abs(got - expected)[mask.astype(bool)].max() <= 1e-4
    exported = save_hf_model(tmp_path / "scanned", cfg, params, source_config=folder)
    assert np.abs(hf_logits(exported, ids, mask, positions) - expected).max() <= 1e-5


def test_sharded_index_and_bf16_round_trip(hf_checkpoint, tmp_path):
    folder = hf_checkpoint("llama")
    cfg, _graphdef, params = load_hf_model(folder, param_dtype="bfloat16")
    assert params["embed"]["embedding"].dtype == jax.numpy.bfloat16
    out = save_hf_model(
        tmp_path / "sharded", cfg, params, source_config=folder, max_shard_bytes=20_000
    )
    assert (out / "model.safetensors.index.json").exists()
    assert len(list(out.glob("model-*-of-*.safetensors"))) > 1
    _cfg2, _, params2 = load_hf_model(out, param_dtype="bfloat16")
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
