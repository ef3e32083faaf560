"""`jalign judge` (label response pairs with a judge model) and `jalign constitutional`
(critique-and-revise data): AI feedback files the trainers read directly."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jalign.data import load_tokenizer, open_records, parse_record, stop_token_ids
from jalign.data.stats import RecordError
from jalign.errors import JalignError
from jalign.feedback import (
    DEFAULT_CRITERIA,
    DEFAULT_PRINCIPLES,
    ModelJudge,
    critique_and_revise,
    judge_pairs,
    preference_records,
    revision_records,
    sampler_completer,
)
from jalign.interop import load_model_source
from jalign.sampling import SamplingParams


def _records(path: str, fields: dict[str, str]) -> list[dict[str, Any]]:
    """The records of `path`, each checked to hold `fields` (name -> "str" or "pair")."""
    out = []
    for raw in open_records(path):
        try:
            record = parse_record(raw)
        except RecordError as e:
            raise JalignError(f"{raw.where}: {e}") from None
        for name, kind in fields.items():
            value = record.get(name)
            ok = (
                isinstance(value, str)
                if kind == "str"
                else (
                    isinstance(value, list)
                    and len(value) == 2
                    and all(isinstance(v, str) for v in value)
                )
            )
            if not ok:
                expected = "a string" if kind == "str" else "a list of two strings"
                raise JalignError(f"{raw.where}: field {name!r} is {value!r}; expected {expected}")
        out.append(record)
    if not out:
        raise JalignError(f"{path}: no records")
    return out


def _write_jsonl(records: Iterable[dict[str, Any]], path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    count = 0
    with tmp.open("w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
            count += 1
    tmp.replace(path)
    return count


def run_judge(
    judge_model: str,
    pairs: str,
    out: str,
    criteria: str = DEFAULT_CRITERIA,
    batch_size: int = 8,
    keep_inconsistent: bool = False,
) -> dict[str, float]:
    """Label `{"prompt", "responses": [a, b]}` records as `{"prompt", "chosen", "rejected"}`."""
    records = _records(pairs, {"prompt": "str", "responses": "pair"})
    folder, _, graphdef, params = load_model_source(judge_model)
    judge = ModelJudge(graphdef, params, load_tokenizer(folder), batch_size=batch_size)
    prompts = [r["prompt"] for r in records]
    a = [r["responses"][0] for r in records]
    b = [r["responses"][1] for r in records]
    judgments = judge_pairs(judge, prompts, a, b, criteria)
    written = _write_jsonl(
        preference_records(prompts, a, b, judgments, drop_inconsistent=not keep_inconsistent),
        Path(out),
    )
    return {
        "pairs": len(records),
        "written": written,
        "consistent": float(judgments.consistent.mean()),
        "position_bias": judgments.position_bias,
    }


def run_constitutional(
    model: str,
    prompts: str,
    out_dir: str,
    principles: str = "",
    max_new_tokens: int = 128,
    temperature: float = 0.7,
    batch_size: int = 8,
    seed: int = 0,
) -> dict[str, int]:
    """Critique-and-revise every `{"prompt"}` record; writes sft.jsonl and preference.jsonl."""
    records = _records(prompts, {"prompt": "str"})
    listed = DEFAULT_PRINCIPLES
    if principles:
        listed = tuple(line.strip() for line in Path(principles).read_text().splitlines())
        listed = tuple(p for p in listed if p)
    folder, cfg, graphdef, params = load_model_source(model)
    tokenizer = load_tokenizer(folder)
    sampling = SamplingParams(
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        eos_ids=stop_token_ids(cfg.eos_token_ids, tokenizer),
        seed=seed,
    )
    complete = sampler_completer(graphdef, params, tokenizer, sampling, batch_size)
    revisions = critique_and_revise(complete, [r["prompt"] for r in records], listed, seed)
    files = revision_records(revisions)
    out = Path(out_dir)
    _write_jsonl(
        (dataclasses.asdict(r) | {"improved": r.improved} for r in revisions),
        out / "revisions.jsonl",
    )
    return {
        "prompts": len(records),
        "sft": _write_jsonl(files["sft"], out / "sft.jsonl"),
        "preference": _write_jsonl(files["preference"], out / "preference.jsonl"),
    }
