"""`jalign generate --best-of N --reward ...`: of N samples per prompt, the one the reward
scores highest is returned (a constructed reward; and the demo gold reward through the CLI)."""

import json
from pathlib import Path

import numpy as np
import pytest

from jalign.cli import main
from jalign.commands.generate import run_generate
from jalign.demo import paths
from jalign.demo.task import gold_reward_fn
from jalign.errors import JalignError
from jalign.interop import save_hf_model
from jalign.models import create_model, from_hf_dict

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, head_dim=16)


def tiny_demo_model(folder: Path, head: str = "lm", seed: int = 0) -> Path:
    """A 1-layer random model with the demo tokenizer, saved as an HF folder."""
    config = {**json.loads((paths() / "config.json").read_text()), **TINY}
    cfg = from_hf_dict(config)
    _, params = create_model(cfg, head=head, seed=seed)
    return save_hf_model(folder, cfg, params, config, head=head, tokenizer_folder=paths())


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_demo_model(tmp_path_factory.mktemp("tiny"))


def token_sum(rollouts):
    """A constructed reward: the sum of the completion's token ids."""
    return (rollouts.tokens * rollouts.mask).sum(axis=1).astype(float)


def test_best_of_returns_the_highest_reward_sample(model):
    prompts = ["sort: 3 1 2", "sort: 9 8 7 6"]
    options = dict(temperature=1.0, max_new_tokens=8, seed=4)
    every = run_generate(str(model), prompts, n=6, **options)
    best = run_generate(str(model), prompts, best_of=6, reward=token_sum, **options)
    for all_of_prompt, chosen in zip(every, best, strict=True):
        sums = [float(sum(c["token_ids"])) for c in all_of_prompt["completions"]]
        assert len(set(sums)) > 1  # the candidates differ, so the choice matters
        assert chosen["candidate_scores"] == sums
        (completion,) = chosen["completions"]
        assert completion == {
            **all_of_prompt["completions"][int(np.argmax(sums))],
            "score": max(sums),
        }


def test_best_of_cli_with_a_reward_function(model, capsys):
    argv = ["generate", str(model), "--prompt", "sort: 5 2 8 1", "--prompt", "sort: 4 4 0 9"]
    argv += ["--temperature", "1", "--max-new-tokens", "8", "--best-of", "6"]
    argv += ["--reward", "jalign.demo.task:gold_reward_fn", "--json"]
    assert main(argv) == 0
    for result in json.loads(capsys.readouterr().out):
        (completion,) = result["completions"]
        assert completion["score"] == max(result["candidate_scores"])
        assert completion["score"] == pytest.approx(
            float(gold_reward_fn([result["prompt"]], [completion["text"]])[0])
        )


def test_best_of_needs_a_reward_and_sampling(model):
    with pytest.raises(JalignError, match="needs --reward"):
        run_generate(str(model), ["sort: 1 2"], temperature=1.0, best_of=4)
    with pytest.raises(JalignError, match="temperature > 0"):
        run_generate(str(model), ["sort: 1 2"], best_of=4, reward=token_sum)
