"""RL reward composition, score shaping and config checks on constructed inputs."""

import re
from pathlib import Path

import numpy as np
import pytest

from jalign.config import load_config
from jalign.demo import paths
from jalign.errors import JalignError
from jalign.models import apply, create_model, load_hf_config
from jalign.rl import load_rl_config
from jalign.rl.rewards import (
    FunctionReward,
    ModelReward,
    combine,
    import_function,
    parse_spec,
    shape_scores,
)
from jalign.rl.rollout import Rollout
from jalign.rl.schema import check_sizes, rl_schema


def _rollout() -> Rollout:
    # 3 rows: completions "1 2" (EOS), "3" (EOS), "4 5 6" (truncated, no EOS); eos id 2.
    ids = np.array([[7, 8, 2, 0], [9, 2, 0, 0], [5, 5, 5, 5]], np.int32)
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], np.float32)
    return Rollout(
        prompts=["a", "b", "c"],
        completions=["1 2", "3", "4 5 6"],
        input_ids=np.concatenate([np.ones((3, 2), np.int32), ids], axis=1),
        segment_ids=np.ones((3, 6), np.int32),
        completion_ids=ids,
        completion_mask=mask,
        sample_logprobs=np.zeros((3, 4), np.float32),
        finished_with_eos=np.array([True, True, False]),
    )


def test_weighted_sum_of_rewards_and_missing_eos_penalty():
    rollout = _rollout()
    length = FunctionReward("length", lambda p, c: [len(x.split()) for x in c])
    first = FunctionReward("first", lambda p, c: [float(x.split()[0]) for x in c])
    scores, parts = combine([length, first], [0.5, 2.0], rollout)
    np.testing.assert_array_equal(parts["length"], [2, 1, 3])
    np.testing.assert_array_equal(parts["first"], [1, 3, 4])
    np.testing.assert_allclose(scores, [0.5 * 2 + 2 * 1, 0.5 * 1 + 2 * 3, 0.5 * 3 + 2 * 4])
    # [] weights = all 1.
    np.testing.assert_allclose(combine([length, first], [], rollout)[0], [3, 4, 7])

    ids, mask = rollout.completion_ids, rollout.completion_mask
    shaped = shape_scores(scores, ids, mask, 2, 1.5, 0.0, False)
    np.testing.assert_allclose(shaped, [3.0, 6.5, 9.5 - 1.5])  # only the row without EOS
    clipped = shape_scores(scores, ids, mask, 2, 1.5, 5.0, False)
    np.testing.assert_allclose(clipped, [3.0, 5.0, 5.0])
    whitened = shape_scores(scores, ids, mask, 2, 0.0, 0.0, True)
    x = np.array([3.0, 6.5, 9.5])
    np.testing.assert_allclose(whitened, (x - x.mean()) / x.std(ddof=1), rtol=1e-5)


def test_reward_function_shape_is_checked():
    bad = FunctionReward("bad", lambda p, c: [1.0])
    with pytest.raises(JalignError, match="one number per completion"):
        bad(_rollout())


@pytest.mark.parametrize("spec", ["gold", "file:x", "model:"])
def test_bad_reward_specs_name_the_allowed_forms(spec):
    with pytest.raises(
        JalignError, match=re.escape("allowed: 'function:module.path:fn' or 'model:PATH'")
    ):
        parse_spec(spec)


def test_reward_functions_import_or_say_why():
    assert import_function("jalign.demo.task:gold_reward_fn")(["sort: 2 1"], ["1 2"]) == 1.0
    with pytest.raises(JalignError, match=re.escape("allowed: 'package.module:function'")):
        import_function("no_colon")
    with pytest.raises(JalignError, match="cannot be imported"):
        import_function("jalign.demo.task:no_such_fn")


def _config(tmp_path, body: str):
    path = tmp_path / "c.py"
    path.write_text(
        "import ml_collections\n"
        "def get_config():\n"
        "    cfg = ml_collections.ConfigDict()\n"
        "    cfg.rl = ml_collections.ConfigDict()\n"
        + "".join(f"    {line}\n" for line in body)
        + "    return cfg\n"
    )
    return path


def test_config_errors_name_key_and_allowed_values(tmp_path):
    ppo_with_group = _config(tmp_path, ["cfg.rl.estimator = 'grpo'"])
    with pytest.raises(JalignError, match=r"'rl.estimator'.*allowed values: 'gae'"):
        load_config(ppo_with_group, schema=rl_schema("ppo"))
    with pytest.raises(JalignError, match=r"'rl.kl_in'.*'reward', 'loss'"):
        load_config(_config(tmp_path, ["cfg.rl.kl_in = 'both'"]), schema=rl_schema("grpo"))
    cfg = load_config(_config(tmp_path, ["cfg.rl.minibatch_size = 7"]), schema=rl_schema("grpo"))
    with pytest.raises(JalignError, match=re.escape("'rl.minibatch_size'=7 must divide")):
        check_sizes(cfg)
    # 8 prompts x n = 6 rows: 12-row minibatches split into 3 micro-batches of 4 rows
    split = [
        "cfg.rl.n = 6",
        "cfg.rl.minibatch_size = 12",
        "cfg.train = ml_collections.ConfigDict()",
    ]
    split.append("cfg.train.grad_accum_steps = 3")
    cfg = load_config(_config(tmp_path, split), schema=rl_schema("grpo"))
    with pytest.raises(JalignError, match=r"'rl.share_prompt_forward'=True.*micro-batch .* 4 rows"):
        check_sizes(cfg)
    cfg.rl.share_prompt_forward = False
    check_sizes(cfg)
    with pytest.raises(JalignError, match=r"'rl\.kl_cof'"):
        load_config(_config(tmp_path, ["cfg.rl.kl_cof = 0.1"]), schema=rl_schema("grpo"))


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize(
    ("command", "name", "estimator"),
    [
        ("ppo", "ppo_demo.py", "gae"),
        ("grpo", "grpo_demo.py", "grpo"),
        ("grpo", "grpo_demo.py", "rloo"),
        ("grpo", "grpo_demo.py", "reinforce_pp"),
    ],
)
def test_bundled_rl_configs_validate(command, name, estimator):
    cfg = load_rl_config(command, str(CONFIGS / name), [f"--config.rl.estimator={estimator}"])
    assert cfg.rl.estimator == estimator and cfg.train.total_steps > 0


def test_cli_reports_a_bad_rl_config_value(capsys):
    from jalign.cli import main

    config = str(CONFIGS / "grpo_demo.py")
    assert main(["grpo", "--config", config, "--config.rl.estimator=gae"]) == 2
    err = capsys.readouterr().err
    assert "jalign grpo: error:" in err and "'rl.estimator' has value 'gae'" in err


def test_reward_model_reads_the_last_real_token_of_left_padded_rows():
    """Rows are a left-padded prompt then a right-padded completion: the score must be the
    scalar head's output at the last completion token, as for the unpadded sequence."""
    graphdef, params = create_model(load_hf_config(paths()), head="scalar", seed=1)
    ids = np.array([[0, 3, 4, 5, 6, 7, 0], [3, 4, 5, 9, 6, 0, 0]], np.int32)
    seg = np.array([[0, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 0, 0]], np.int32)
    rollout = Rollout(
        prompts=["a", "b"],
        completions=["x", "y"],
        input_ids=ids,
        segment_ids=seg,
        completion_ids=ids[:, 4:],
        completion_mask=seg[:, 4:].astype(np.float32),
        sample_logprobs=np.zeros((2, 3), np.float32),
        finished_with_eos=np.array([False, False]),
    )
    scores = ModelReward("rm", graphdef, params, chunk=2, put=lambda b: b)(rollout)
    for row, tokens in enumerate([[3, 4, 5, 6, 7], [3, 4, 5, 9, 6]]):
        ones = np.ones((1, len(tokens)), np.int32)
        out, _ = apply(graphdef, params, np.array([tokens]), np.arange(len(tokens))[None], ones)
        assert scores[row] == pytest.approx(float(out[0, -1]), abs=1e-5)
