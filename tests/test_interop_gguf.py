"""The bundled SmolLM2-135M-Instruct GGUF: conversion, logit parity, tokenizer, errors."""

import json
import os

import numpy as np
import pytest
import torch

from conftest import hf_logits
from jalign.errors import JalignError
from jalign.interop import (
    convert,
    load_hf_model,
    smollm2_gguf_path,
    smollm2_hf_folder,
    unpermute_qk,
)
from jalign.models import apply


@pytest.fixture(scope="session")
def smollm2():
    return smollm2_hf_folder()


def test_unpermute_inverts_llama_cpp_permutation():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3 * 8, 5))  # 3 heads of head_dim 8

    def llama_cpp_permute(w, n_head):  # as written in llama.cpp's convert_hf_to_gguf.py
        return (
            w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape)
        )

    np.testing.assert_array_equal(unpermute_qk(llama_cpp_permute(w, 3), 3), w)


def test_smollm2_logits_match_transformers_on_padded_batch(smollm2):
    config = json.loads((smollm2 / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_key_value_heads"]) == (
        30,
        576,
        3,
    )
    # jalign.runtime's XLA:CPU flag (no YNNPACK matmul fusions) is what keeps fp32 this close.
    assert "--xla_cpu_experimental_ynn_fusion_type=" in os.environ["XLA_FLAGS"].split()
    cfg, graphdef, params = load_hf_model(smollm2)
    rng = np.random.default_rng(0)
    ids = rng.integers(100, cfg.vocab_size, (2, 24))
    mask = np.ones_like(ids)
    mask[0, 18:] = 0  # right padding
    mask[1, :5] = 0  # left padding
    positions = np.maximum(mask.cumsum(1) - 1, 0)
    got, _ = apply(
        graphdef, params, ids.astype(np.int32), positions.astype(np.int32), mask.astype(np.int32)
    )
    got = np.asarray(got)
    # The reference is transformers in float64, each row without its padding (the padded batch
    # means the same computation). Over 30 layers, with first-token activations near 2e4,
    # PyTorch's own float32 result sits ~6e-5 from it, so comparing two float32 runs would
    # measure both implementations' rounding rather than jalign's.
    for row in range(2):
        real = mask[row].astype(bool)
        tokens = ids[row, real][None]
        expected = hf_logits(
            smollm2, tokens, np.ones_like(tokens), np.arange(tokens.shape[1])[None], torch.float64
        )[0]
        assert np.abs(got[row, real] - expected).max() <= 1e-4


def test_smollm2_tokenizer_and_chat_template(smollm2):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2, local_files_only=True)
    ids = tok("Hello, world! 2024")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["Hello", ",", "Ġworld", "!", "Ġ", "2", "0", "2", "4"]
    assert tok.decode(ids) == "Hello, world! 2024"
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert tok.eos_token == "<|im_end|>" and tok.convert_tokens_to_ids("<|im_start|>") == 1


def test_convert_cli_function_writes_loadable_folder(tmp_path, smollm2):
    out = convert(smollm2, tmp_path / "copy")  # HF folder -> HF folder
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert load_hf_model(out)[0].num_layers == 30


def test_corrupt_gguf_is_a_clear_error(tmp_path):
    truncated = tmp_path / "truncated.gguf"
    with open(smollm2_gguf_path(), "rb") as src:
        truncated.write_bytes(src.read(4096))
    with pytest.raises(JalignError, match=r"truncated\.gguf: not a readable GGUF file"):
        convert(truncated, tmp_path / "out")
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(JalignError, match=r"garbage\.gguf"):
        convert(garbage, tmp_path / "out2")
