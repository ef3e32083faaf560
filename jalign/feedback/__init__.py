"""AI feedback: pairwise judging with position swapping (RLAIF) and constitutional
critique-and-revise data generation."""

from jalign.feedback.constitutional import (
    DEFAULT_PRINCIPLES,
    Completer,
    Revision,
    critique_and_revise,
    revision_records,
    sampler_completer,
)
from jalign.feedback.judge import (
    DEFAULT_CRITERIA,
    Judgments,
    ModelJudge,
    ProbFirst,
    judge_pairs,
    judge_text,
    preference_records,
)

__all__ = [
    "DEFAULT_CRITERIA",
    "DEFAULT_PRINCIPLES",
    "Completer",
    "Judgments",
    "ModelJudge",
    "ProbFirst",
    "Revision",
    "critique_and_revise",
    "judge_pairs",
    "judge_text",
    "preference_records",
    "revision_records",
    "sampler_completer",
]
