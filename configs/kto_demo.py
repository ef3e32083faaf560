"""KTO (`dpo.loss_type = "kto"`) on unpaired demo data: each preference pair of the demo run
split into a desirable and an undesirable example, from the SFT model.

python -m jalign.demo.run --out runs/demo    # writes runs/demo/sft/hf and the pair files
python tools/dpo_table.py --demo runs/demo --only kto   # also writes the unpaired file below
jalign dpo --config configs/kto_demo.py
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.run_dir = "runs/demo/kto_cli"
    cfg.model = ml_collections.ConfigDict({"path": "runs/demo/sft/hf"})
    cfg.data = ml_collections.ConfigDict(
        {
            "train": "runs/demo/dpo_table/data/unpaired_train.jsonl",
            "max_length": 32,
            "num_epochs": None,
        }
    )
    cfg.train = ml_collections.ConfigDict(
        {"batch_size": 32, "total_steps": 300, "eval_every": 100, "save_every": 100}
    )
    cfg.optimizer = ml_collections.ConfigDict({"lr": 1e-4, "warmup_steps": 10})
    # lambda_D n_D / (lambda_U n_U) = 1 here (one desirable per undesirable example).
    cfg.dpo = ml_collections.ConfigDict(
        {"loss_type": "kto", "beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.0}
    )
    return cfg
