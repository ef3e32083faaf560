"""`jalign eval`: sample policies on a held-out prompt set and report rewards, KL to a
reference, length, win rate against a baseline and refusal rate (see `jalign.eval.evaluate`).

    jalign eval --policy runs/demo/dpo/hf --reference runs/demo/sft/hf \
        --baseline runs/demo/sft/hf --prompts runs/demo/data/prompts_eval.jsonl \
        --reward gold=jalign.demo.task:gold_reward_fn --reward rm=runs/demo/rm/hf \
        --judge gold --out eval.json

`--policy` and `--reward` repeat and take an optional `NAME=` prefix. `--judge` is the name of
a `--reward` (the higher reward wins) or a `module:function(prompts, completions_policy,
completions_baseline) -> outcomes in [0, 1]`; by default the first reward judges.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

from jalign.data import DataConfig, load_tokenizer, open_records, parse_record, render_chat
from jalign.data.encode import TextEncoder
from jalign.errors import JalignError
from jalign.eval.compare import Judge, score_judge, text_judge
from jalign.eval.evaluate import EvalSettings, evaluate, format_table
from jalign.eval.models import EvalModel, load_eval_model
from jalign.eval.refusal import DEFAULT_REFUSAL_MARKERS, RefusalDetector, marker_detector
from jalign.eval.rewards import Scorer, import_callable, load_scorer
from jalign.sampling import SamplingParams
from jalign.sharding import make_mesh


def named(spec: str) -> tuple[str, str]:
    """ "name=value" -> (name, value); a bare value is named by its function or folder."""
    name, sep, value = spec.partition("=")
    if sep and name.isidentifier():
        return name, value
    path = Path(spec)
    if ":" in spec and not path.exists():
        return spec.rpartition(":")[2], spec
    return (path.parent.name if path.name == "hf" else path.name) or spec, spec


def load_prompts(path: str, tokenizer: Any, limit: int | None) -> tuple[list[str], dict]:
    """Prompt texts (chat prompts rendered by the template) and each one's token ids, encoded as
    training encodes prompts (`TextEncoder.prompt`)."""
    encoder = TextEncoder(tokenizer, DataConfig())
    texts, ids = [], {}
    for raw in open_records(path):
        if limit is not None and len(texts) == limit:
            break
        record = parse_record(raw)
        prompt = record.get("prompt")
        if isinstance(prompt, list):
            text = render_chat(tokenizer, prompt)
        elif isinstance(prompt, str):
            text = prompt
        else:
            raise JalignError(
                f"{path}: a record's 'prompt' is {type(prompt).__name__}; allowed: a string or "
                f"a list of chat messages"
            )
        texts.append(text)
        ids[text] = [int(i) for i in encoder.prompt(prompt)]
    return texts, ids


def make_judge(spec: str | None, rewards: dict[str, Scorer]) -> Judge | None:
    if spec is None:
        return score_judge(next(iter(rewards.values()))) if rewards else None
    if spec in rewards:
        return score_judge(rewards[spec])
    if ":" in spec:
        return text_judge(
            import_callable(spec, "a judge (prompts, completions_a, completions_b) -> outcomes")
        )
    raise JalignError(
        f"--judge {spec!r}: allowed: the name of a --reward ({', '.join(rewards) or 'none'}) "
        f"or 'package.module:function' of a pairwise judge"
    )


def make_refusal(markers: Sequence[str] | None, detector: str | None) -> RefusalDetector | None:
    if detector is not None:
        return import_callable(detector, "a refusal detector (completions) -> bools")
    if markers is not None:  # a bare --refusal-marker (None) asks for the defaults
        return marker_detector([m for m in markers if m] or DEFAULT_REFUSAL_MARKERS)
    return None


def run_eval(
    policies: Sequence[str],
    prompts: str,
    rewards: Sequence[str] = (),
    reference: str | None = None,
    baseline: str | None = None,
    judge: str | None = None,
    refusal_markers: Sequence[str] | None = None,
    refusal_detector: str | None = None,
    sampling: SamplingParams | None = None,
    batch_size: int = 32,
    limit: int | None = None,
    tokenizer: str | None = None,
    out: str | None = None,
    mesh: str | None = None,
) -> tuple[list[dict], str]:
    """Evaluate; returns the rows and the table text, and writes JSON to `out` if given."""
    if not policies:
        raise JalignError("no --policy given; allowed: one or more model folders")
    sampling = sampling or SamplingParams()
    device_mesh = make_mesh(mesh) if mesh else None

    def load(source: str) -> EvalModel:
        return load_eval_model(source, mesh=device_mesh)

    models = dict(named(p) for p in policies)
    loaded = {name: load(source) for name, source in models.items()}
    first = next(iter(loaded.values()))
    tok = load_tokenizer(tokenizer or first.source)
    texts, ids = load_prompts(prompts, tok, limit)
    scorers = {name: load_scorer(spec, mesh=device_mesh) for name, spec in map(named, rewards)}
    if baseline is None and judge is not None:
        raise JalignError("--judge needs --baseline (the policy the win rate is against)")
    rows = evaluate(
        loaded,
        tok,
        texts,
        EvalSettings(sampling, batch_size=batch_size, mesh=device_mesh),
        rewards=scorers,
        reference=load(reference) if reference else None,
        baseline=load(baseline) if baseline else None,
        judge=make_judge(judge, scorers) if baseline else None,
        refusal=make_refusal(refusal_markers, refusal_detector),
        encode=ids.__getitem__,
    )
    table = format_table(rows)
    if out and jax.process_index() == 0:  # one writer in a multi-process job
        report = {
            "policies": models,
            "reference": reference,
            "baseline": baseline,
            "prompts": prompts,
            "num_prompts": len(texts),
            "rewards": dict(map(named, rewards)),
            "judge": judge,
            "sampling": dataclasses.asdict(sampling),
            "mesh": mesh,
            "rows": rows,
        }
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2) + "\n")
    return rows, table
