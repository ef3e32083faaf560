"""DPO of an 8B Llama-3-class model on one host with 8 x H100 80GB (one process, 8 devices).

    jalign dpo --config configs/llama3_8b_h100x8.py
    # or several such hosts: tpu_scripts/launch_gpu.sh (one process per host)

Memory (per GPU, 80 GB): float32 master weights + Adam moments, 16 B x 8.0e9 = 128 GB, split 8
ways by fsdp = 16 GB; bfloat16 compute, rematerialised layers, precomputed reference
log-probs and chunked vocabulary log-softmax keep 2 x 16 sequences x 2048 tokens in the rest.

Mesh: fsdp=4 x tensor=2. Tensor parallelism stays inside NVLink pairs and halves each
all-gather of the FSDP shards; the default llama rules (Megatron column/row-parallel
projections over `tensor`, the other matrix dimension over `fsdp`) apply unchanged, and
the rules below only move the vocabulary axis of the embedding onto both axes. For several
hosts, grow data: "data=-1,fsdp=4,tensor=2" uses every process's GPUs.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.run_dir = "runs/llama3_8b_dpo"
    cfg.model = ml_collections.ConfigDict(
        {
            "path": "/models/Meta-Llama-3.1-8B-Instruct",
            "dtype": "bfloat16",
            "param_dtype": "float32",
            "remat": True,
            "scan_layers": True,
        }
    )
    cfg.mesh = "data=-1,fsdp=4,tensor=2"
    cfg.sharding = ml_collections.ConfigDict(
        {"rules": [(r"(^|/)embed/embedding$", [("tensor", "fsdp"), None])]}
    )
    cfg.data = ml_collections.ConfigDict(
        {
            "train": "data/prefs_train.jsonl",
            "eval": "data/prefs_eval.jsonl",
            "max_length": 2048,
            "max_prompt_length": 1024,
            "buckets": (512, 1024, 2048),
            "num_epochs": 1,
        }
    )
    cfg.train = ml_collections.ConfigDict(
        {
            "batch_size": 16,  # pairs per micro-batch: 32 sequences, 4 per GPU
            "grad_accum_steps": 4,  # 64 pairs per optimizer step
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
