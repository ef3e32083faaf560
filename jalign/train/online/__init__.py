"""Training data made between steps from the current policy: semi-online DPO rounds and
rejection-sampling fine-tuning rounds (see `rounds`)."""

from jalign.train.online.config import (
    ONLINE_CHECKS,
    ONLINE_CHOICES,
    ONLINE_DEFAULTS,
    RFT_CHECKS,
    RFT_CHOICES,
    RFT_DEFAULTS,
    check_online,
    check_rounds,
)
from jalign.train.online.rounds import RoundPlan, Rounds, round_path
from jalign.train.online.selection import KEEP_MODES, PAIR_MODES, select_pairs, select_top

__all__ = [
    "KEEP_MODES",
    "ONLINE_CHECKS",
    "ONLINE_CHOICES",
    "ONLINE_DEFAULTS",
    "PAIR_MODES",
    "RFT_CHECKS",
    "RFT_CHOICES",
    "RFT_DEFAULTS",
    "RoundPlan",
    "Rounds",
    "check_online",
    "check_rounds",
    "round_path",
    "select_pairs",
    "select_top",
]
