"""Policy evaluation: sampling on prompt sets, rewards, KL and win rates.

    rollouts.py   sample a policy on prompts (token ids kept, text decoded)
    sequences.py  rollouts as right-padded teacher-forcing batches; fixed-size row chunks
    models.py     EvalModel: a policy or reward model loaded from any source
    rewards.py    scorers: "module:function" of the texts, or a reward model on the token ids
    kl.py         sequence-level KL to a reference on the policy's own samples (k1 estimator)
    compare.py    pairwise win rate against a baseline (ties count half); judges
    refusal.py    refusal rate from a callable or regex markers
    best_of.py    best-of-N selection
    evaluate.py   all of the above for several policies: one table row each

The submodules are imported directly (this package imports none of them, so that importing
`jalign.eval.rollouts` from training code stays light).
"""
