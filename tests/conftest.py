"""Shared fixtures: tiny random-init HF checkpoints (made offline with transformers + torch)."""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SMALL = dict(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)

# Configs covering each family's real differences.
FAMILY_CONFIGS = {
    "llama": dict(model_type="llama", **SMALL, tie_word_embeddings=False),
    "llama_tied_rope3": dict(
        model_type="llama",
        **SMALL,
        tie_word_embeddings=True,
        rope_parameters=dict(
            rope_type="llama3",
            rope_theta=10000.0,
            factor=8.0,
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position_embeddings=16,
        ),
    ),
    "mistral": dict(model_type="mistral", **SMALL, sliding_window=4),
    "qwen2": dict(model_type="qwen2", **SMALL),
    "qwen3": dict(model_type="qwen3", **SMALL, head_dim=8),
    "gemma2": dict(
        model_type="gemma2",
        **SMALL,
        head_dim=8,
        sliding_window=4,
        query_pre_attn_scalar=12,
        attn_logit_softcapping=5.0,
        final_logit_softcapping=3.0,
    ),
    "gpt2": dict(
        model_type="gpt2",
        vocab_size=96,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=64,
        bos_token_id=1,
        eos_token_id=2,
    ),
}


def make_hf_checkpoint(folder: Path, family: str, seed: int = 0) -> Path:
    """Random-init HF model of `family`, every weight (norms and biases too) randomised."""
    spec = dict(FAMILY_CONFIGS[family])
    model_type = spec.pop("model_type")
    config = transformers.AutoConfig.for_model(model_type, **spec)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(
        config, dtype=torch.float32, attn_implementation="eager"
    )
    with torch.no_grad():
        for _name, p in model.named_parameters():
            if p.ndim == 1:  # norm scales and biases: off their default 1 / 0
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory):
    """family -> folder of a saved random-init HF checkpoint (built once per session)."""
    made = {}

    def get(family: str) -> Path:
        if family not in made:
            made[family] = make_hf_checkpoint(tmp_path_factory.mktemp(family), family)
        return made[family]

    return get


def padded_batch(vocab: int, seed: int = 0):
    """Two rows of 12 tokens: row 0 right-padded (9 real), row 1 left-padded (8 real)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, vocab, (2, 12)).astype(np.int64)
    mask = np.ones((2, 12), np.int64)
    mask[0, 9:] = 0
    mask[1, :4] = 0
    positions = np.maximum(mask.cumsum(1) - 1, 0)
    return ids, mask, positions


def hf_logits(folder: Path, ids, mask, positions, dtype=None) -> np.ndarray:
    """transformers' logits (eager attention) in float32, or in `dtype` (e.g. torch.float64)."""
    model = transformers.AutoModelForCausalLM.from_pretrained(
        folder, attn_implementation="eager", dtype=dtype or torch.float32
    ).eval()
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            position_ids=torch.tensor(positions),
        )
    return out.logits.numpy()
