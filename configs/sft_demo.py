"""SFT of the demo-size Llama on the digit-sorting demonstrations (jalign/demo).

python tools/build_demo_assets.py --data-dir runs/demo/data   # writes the JSONL files
jalign sft --config configs/sft_demo.py
"""

import ml_collections

from jalign.demo import paths


def get_config() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.run_dir = "runs/demo/sft"
    cfg.seed = 0
    cfg.model = ml_collections.ConfigDict()
    cfg.model.path = str(paths())
    cfg.model.init = "random"
    cfg.data = ml_collections.ConfigDict()
    cfg.data.train = "runs/demo/data/sft_train.jsonl"
    cfg.data.eval = "runs/demo/data/sft_eval.jsonl"
    cfg.data.max_length = 32
    cfg.data.num_epochs = None
    cfg.train = ml_collections.ConfigDict()
    cfg.train.batch_size = 64
    cfg.train.total_steps = 600
    cfg.train.log_every = 50
    cfg.train.eval_every = 200
    cfg.train.save_every = 200
    cfg.optimizer = ml_collections.ConfigDict()
    cfg.optimizer.lr = 3e-3
    cfg.optimizer.warmup_steps = 30
    cfg.optimizer.weight_decay = 0.01
    return cfg
