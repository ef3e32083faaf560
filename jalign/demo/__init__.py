"""The bundled demo alignment task (sorting digits), its tokenizer and its model config.

`paths()` is an HF-style folder that `transformers.AutoTokenizer.from_pretrained` and
`jalign.models.load_hf_config` both read; `write_datasets` generates the SFT, prompt and RL
data; `gold_reward_fn` scores completions. See `jalign.demo.task` for the task and its reward.
"""

from pathlib import Path

from jalign.demo.build import DatasetSizes, as_chat, demo_datasets, write_assets, write_datasets
from jalign.demo.task import (
    DEMO_MEAN_GOLD,
    ImperfectDemonstrator,
    gold_reward,
    gold_reward_fn,
    ideal_completion,
    parse_prompt,
    rank_completions,
    sample_prompts,
)


def paths() -> Path:
    """The demo asset folder: ``tokenizer.json``, ``tokenizer_config.json`` (with the chat
    template) and ``config.json`` (the demo-size Llama model)."""
    return Path(__file__).parent / "assets"


__all__ = [
    "DEMO_MEAN_GOLD",
    "DatasetSizes",
    "ImperfectDemonstrator",
    "as_chat",
    "demo_datasets",
    "gold_reward",
    "gold_reward_fn",
    "ideal_completion",
    "parse_prompt",
    "paths",
    "rank_completions",
    "sample_prompts",
    "write_assets",
    "write_datasets",
]
