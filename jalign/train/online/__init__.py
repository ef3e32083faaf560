"""Semi-online (iterative) DPO: every `dpo.online.every` steps, sample from the current policy,
score the samples, and train on fresh best-vs-worst pairs (see `rounds`)."""

from jalign.train.online.config import ONLINE_CHOICES, ONLINE_DEFAULTS, check_online
from jalign.train.online.pairs import PAIR_MODES, select_pairs
from jalign.train.online.rewards import load_reward
from jalign.train.online.rounds import OnlineData, round_path

__all__ = [
    "ONLINE_CHOICES",
    "ONLINE_DEFAULTS",
    "PAIR_MODES",
    "OnlineData",
    "check_online",
    "load_reward",
    "round_path",
    "select_pairs",
]
