"""Write the demo's files: the committed HF assets (tokenizer, model config) and the datasets.

The datasets are cheap and deterministic, so pipelines generate them into their run directory
with `write_datasets` instead of reading committed copies. Four JSONL files, with mutually
disjoint prompts:

- ``sft_train.jsonl`` (4000) and ``sft_eval.jsonl`` (200): ``{"prompt", "completion"}`` written
  by the `ImperfectDemonstrator`. The held-out set uses the same demonstrator as the training
  set, so its loss measures how well SFT fits the demonstration distribution it is trained on;
  how good the policy is at the task is measured by the gold reward, not by this loss.
- ``prompts_train.jsonl`` (2000) and ``prompts_eval.jsonl`` (200): ``{"prompt"}`` for sampling
  ranked preferences and for RL, and for evaluating the gold reward of a policy.

With ``chat=True`` each text field is written in the conversational form of `as_chat`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from jalign.demo.task import ImperfectDemonstrator, sample_prompts
from jalign.demo.tokenizer import (
    BOS,
    EOS,
    PAD,
    VOCAB_SIZE,
    build_tokenizer,
    token_id,
    tokenizer_config,
)

SFT_TRAIN = "sft_train.jsonl"
SFT_EVAL = "sft_eval.jsonl"
PROMPTS_TRAIN = "prompts_train.jsonl"
PROMPTS_EVAL = "prompts_eval.jsonl"

# The demo-size Llama model (about 0.8M parameters).
MODEL_CONFIG: dict[str, Any] = dict(
    architectures=["LlamaForCausalLM"],
    vocab_size=VOCAB_SIZE,
    hidden_size=128,
    intermediate_size=384,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    rms_norm_eps=1e-5,
    tie_word_embeddings=True,
    bos_token_id=token_id(BOS),
    eos_token_id=token_id(EOS),
    pad_token_id=token_id(PAD),
    dtype="float32",
)

_CHAT_ROLES = {
    "prompt": "user",
    "completion": "assistant",
    "chosen": "assistant",
    "rejected": "assistant",
}


@dataclasses.dataclass(frozen=True)
class DatasetSizes:
    """Number of records in each demo dataset."""

    sft_train: int = 4000
    sft_eval: int = 200
    prompts_train: int = 2000
    prompts_eval: int = 200


def write_assets(folder: str | Path) -> list[Path]:
    """Write ``tokenizer.json``, ``tokenizer_config.json`` and ``config.json`` (a transformers-5
    `LlamaConfig`) into `folder`; byte-for-byte the same on every call."""
    from transformers import LlamaConfig

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / "tokenizer.json", folder / "tokenizer_config.json", folder / "config.json"]
    build_tokenizer().save(str(files[0]), pretty=True)
    config = tokenizer_config(model_max_length=MODEL_CONFIG["max_position_embeddings"])
    files[1].write_text(json.dumps(config, indent=2) + "\n")
    LlamaConfig(**MODEL_CONFIG).to_json_file(files[2])
    return files


def as_chat(record: dict[str, Any]) -> dict[str, Any]:
    """The conversational form of a demo record: ``"prompt"`` becomes a one-message user turn
    and ``"completion"`` / ``"chosen"`` / ``"rejected"`` one-message assistant turns, e.g.
    ``{"prompt": [{"role": "user", "content": "sort: 3 1"}]}``; other keys are kept."""
    return {
        key: [{"role": _CHAT_ROLES[key], "content": value}] if key in _CHAT_ROLES else value
        for key, value in record.items()
    }


def demo_datasets(
    seed: int = 0,
    sizes: DatasetSizes = DatasetSizes(),
    demonstrator: ImperfectDemonstrator | None = None,
) -> dict[str, list[dict[str, str]]]:
    """The four demo datasets as records, keyed by file name (see the module docstring).

    Prompts are drawn once and split in a fixed order (evaluation sets first), so the evaluation
    sets do not change when the training sizes do. `demonstrator` defaults to
    `ImperfectDemonstrator()`.
    """
    demonstrator = demonstrator or ImperfectDemonstrator()
    prompt_rng, demo_rng = np.random.default_rng(seed).spawn(2)
    names = (PROMPTS_EVAL, SFT_EVAL, PROMPTS_TRAIN, SFT_TRAIN)
    counts = (sizes.prompts_eval, sizes.sft_eval, sizes.prompts_train, sizes.sft_train)
    prompts = sample_prompts(sum(counts), prompt_rng)
    splits = np.split(np.arange(len(prompts)), np.cumsum(counts)[:-1])
    datasets: dict[str, list[dict[str, str]]] = {}
    for name, indices in zip(names, splits, strict=True):
        chunk = [prompts[i] for i in indices]
        if name in (SFT_TRAIN, SFT_EVAL):
            datasets[name] = [
                {"prompt": p, "completion": demonstrator.complete(p, demo_rng)} for p in chunk
            ]
        else:
            datasets[name] = [{"prompt": p} for p in chunk]
    return datasets


def write_datasets(
    out_dir: str | Path,
    seed: int = 0,
    chat: bool = False,
    sizes: DatasetSizes = DatasetSizes(),
    demonstrator: ImperfectDemonstrator | None = None,
) -> dict[str, Path]:
    """Write the demo datasets as JSONL files into `out_dir`; returns their paths by file name.
    ``chat=True`` writes the conversational form (`as_chat`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, records in demo_datasets(seed, sizes, demonstrator).items():
        lines = [json.dumps(as_chat(r) if chat else r) + "\n" for r in records]
        paths[name] = out_dir / name
        paths[name].write_text("".join(lines))
    return paths
