"""Policy evaluation: sampling on prompt sets, rewards, KL and win rates."""
