"""Tasks with verifiable rewards for real models (RLVR examples)."""
