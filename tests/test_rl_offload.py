"""`rl.offload_frozen`: the reference and reward models wait in host memory between phases and
come to the device only for their forward pass; RL iterations give bit-identical metrics with
and without offload. On CPU the device and `pinned_host` memories are the same RAM, but the
arrays really move between the two memory kinds.

One run (one set of compiled steps) does both: two iterations with its frozen params offloaded,
then, from the same starting train states and prompts, two with them kept on the device."""

import contextlib
import json
import shutil

import jax
import ml_collections
import numpy as np
import pytest

from jalign.demo import paths, sample_prompts
from jalign.interop import save_hf_model
from jalign.models import create_model, load_hf_config
from jalign.rl.loop import RLRun
from jalign.rl.schema import rl_schema
from jalign.rl.setup import HOST_MEMORY, FrozenModelReward, FrozenParams


@pytest.fixture(scope="module")
def grpo_config(tmp_path_factory) -> ml_collections.ConfigDict:
    """GRPO (k3 KL to the reference in the loss) on a 2-layer, 32-wide random-init demo model,
    rewarded by a random reward model, on one device, with `rl.offload_frozen` on."""
    root = tmp_path_factory.mktemp("offload")
    model = root / "model"
    shutil.copytree(paths(), model)
    config = json.loads((model / "config.json").read_text())
    config.update(hidden_size=32, intermediate_size=64, num_hidden_layers=2, head_dim=8)
    (model / "config.json").write_text(json.dumps(config))
    model_cfg = load_hf_config(model)
    _, rm_params = create_model(model_cfg, head="scalar", seed=5)
    save_hf_model(
        root / "rm", model_cfg, jax.device_get(rm_params), source_config=model, head="scalar"
    )
    data = root / "prompts.jsonl"
    prompts = sample_prompts(16, np.random.default_rng(0))
    data.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))

    cfg = ml_collections.ConfigDict(rl_schema("grpo").defaults.to_dict())
    cfg.run_dir = str(root / "run")
    cfg.mesh = "data=1,fsdp=1,tensor=1"
    cfg.model.path, cfg.model.init = str(model), "random"
    cfg.data.train, cfg.data.max_length, cfg.data.num_epochs = str(data), 16, None
    cfg.train.batch_size, cfg.train.total_steps, cfg.train.export_hf = 2, 2, False
    cfg.optimizer.lr = 1e-2
    cfg.rl.update(n=4, minibatch_size=8, epochs=2, max_new_tokens=8, kl_coef=0.1)
    cfg.rl.rewards = [f"model:{root / 'rm'}"]
    cfg.rl.offload_frozen = True
    return cfg


def _memory_kinds(params) -> set[str]:
    return {x.sharding.memory_kind for x in jax.tree.leaves(params)}


def _iterations(run: RLRun, frozen: list[FrozenParams], monkeypatch) -> list[dict]:
    """Iterations 1 and 2's metrics (timings dropped). Each forward phase's device copies of
    the frozen params are recorded; offloaded, they must be deleted when their phase ends and
    the params themselves stay in host memory."""
    copies = []
    on_device = FrozenParams.on_device

    @contextlib.contextmanager
    def recording(self):
        with on_device(self) as params:
            copies.append(params)
            yield params

    monkeypatch.setattr(FrozenParams, "on_device", recording)
    out = []
    for iteration in (1, 2):
        metrics = run.iterate(iteration)
        out.append({k: v for k, v in metrics.items() if not k.startswith("time/")})
        assert len(copies) == 2 * iteration  # the reward model's and the reference's
        for params in frozen:
            expected = {HOST_MEMORY} if params.offload else {"device"}
            assert _memory_kinds(params.params) == expected
        assert all(x.is_deleted() == frozen[0].offload for c in copies for x in jax.tree.leaves(c))
    monkeypatch.undo()
    return out


def test_offloaded_iterations_match_bitwise(grpo_config, monkeypatch):
    run = RLRun(grpo_config, devices=jax.devices()[:1])
    (reward,) = run.rewards
    assert isinstance(reward, FrozenModelReward)
    start = (
        jax.tree.map(lambda x: x.copy(), run.policy.state),
        run.prompts.get_state(),
        run.kl_coef,
    )
    frozen = [run.reference, reward.frozen]
    assert all(params.offload for params in frozen)
    offloaded = _iterations(run, frozen, monkeypatch)
    assert reward.params is None  # no handle on a device copy between phases

    run.policy.state, prompts, run.kl_coef = start
    run.prompts.set_state(prompts)
    kept = [FrozenParams(jax.device_put(f.params, f.shardings), offload=False) for f in frozen]
    run.reference, reward.frozen = kept
    plain = _iterations(run, kept, monkeypatch)
    assert offloaded == plain  # exact float equality
    assert plain[1]["objective/kl"] != 0  # the policy moved (k1 mean: either sign)
