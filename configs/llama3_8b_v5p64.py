"""DPO of an 8B Llama-3-class model on a TPU v5p-64 slice (32 chips, 8 hosts x 4 chips).

Every host runs the same command (see tpu_scripts/README.md):

    tpu_scripts/run_all.sh jalign --distributed dpo --config configs/llama3_8b_v5p64.py

Memory (per chip, 95 GiB HBM): float32 master weights + Adam moments are 16 B x 8.0e9 = 128 GB,
split 32 ways by the fsdp x data mesh below = 4 GB per chip; the reference log-probs are
precomputed once (no second model in memory); bfloat16 compute with rematerialised layers keeps
activations of 2 x 64 sequences x 2048 tokens within the rest. The 128k-token vocabulary's
logits are reduced in chunks (`dpo.logprob_chunk`), never materialised as [B, T, V] at once.

Mesh: all 32 chips on fsdp (ZeRO-3: parameters, gradients and optimizer state sharded, gathered
layer by layer); data=-1 resolves to 1 here and to 2 on a v5p-128. tensor=1: at this size on
TPU ICI, full FSDP is faster than Megatron tensor parallelism. Every process reads the same
global batch; each keeps the rows of its own chips.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.run_dir = "gs://YOUR_BUCKET/runs/llama3_8b_dpo"  # shared by all hosts (orbax writes here)
    cfg.model = ml_collections.ConfigDict(
        {
            "path": "/mnt/models/Meta-Llama-3.1-8B-Instruct",  # HF folder, same path on every host
            "dtype": "bfloat16",
            "param_dtype": "float32",
            "remat": True,
            "scan_layers": True,  # one compiled layer body for the 32 layers
        }
    )
    cfg.mesh = "data=-1,fsdp=32,tensor=1"
    cfg.sharding = ml_collections.ConfigDict(
        {
            # Tried before the llama defaults (jalign/sharding/rules.py). Split the 128256-row
            # embedding and LM head over their vocabulary axis on fsdp, so the chunked
            # log-softmax reduces over local vocabulary slices.
            "rules": [
                (r"(^|/)embed/embedding$", ["fsdp", None]),
                (r"(^|/)lm_head/kernel$", [None, "fsdp"]),
            ]
        }
    )
    cfg.data = ml_collections.ConfigDict(
        {
            "train": "/mnt/data/prefs_train.jsonl",
            "eval": "/mnt/data/prefs_eval.jsonl",
            "max_length": 2048,
            "max_prompt_length": 1024,
            "buckets": (512, 1024, 2048),
            "num_epochs": 1,
        }
    )
    cfg.train = ml_collections.ConfigDict(
        {
            "batch_size": 64,  # pairs per step: 128 sequences, 4 per chip
            "grad_accum_steps": 1,
            "total_steps": 2000,
            "log_every": 10,
            "eval_every": 250,
            "save_every": 250,
        }
    )
    cfg.optimizer = ml_collections.ConfigDict(
        {"lr": 5e-7, "warmup_steps": 100, "weight_decay": 0.0}
    )
    cfg.dpo = ml_collections.ConfigDict(
        {"loss_type": "sigmoid", "beta": 0.1, "reference": "precomputed", "logprob_chunk": 1024}
    )
    return cfg
