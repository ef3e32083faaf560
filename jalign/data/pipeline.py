"""The data pipeline: a data path -> an iterator of fixed-shape numpy batches, built on grain.

    pipeline = DataPipeline("prefs.jsonl", "preference", tokenizer, DataConfig(...), batch_size=8)
    batches = pipeline.iterator()
    for batch in batches: ...
    metadata["data"] = batches.get_state()        # JSON-compatible; store with the checkpoint
    batches = pipeline.iterator(); batches.set_state(metadata["data"])   # resume exactly
    print(batches.stats.summary())                # skipped / truncated counts

Stages (grain): records (random access) -> shuffle (seeded, reshuffled each epoch) -> repeat
(num_epochs) -> per-record parse / validate / tokenize / truncate -> drop and count unusable
records -> [first-fit packing, SFT] -> batch and pad to a bucket (see `batching`).
"""

from __future__ import annotations

import os
from typing import Any

import grain
from grain.experimental import FirstFitPackIterDataset
from transformers import PreTrainedTokenizerBase

from jalign.data.batching import Collator
from jalign.data.config import DataConfig
from jalign.data.examples import ExampleEncoder, Rejected, guarded, validate
from jalign.data.readers import RecordSource, open_records
from jalign.data.schemas import KINDS, RANKED, SFT
from jalign.data.stats import DataStats
from jalign.data.tokenizer import pad_token_id
from jalign.errors import JalignError

# Background threads that run the per-record stage ahead of the consumer. Tokenizing is mostly
# Python (GIL-bound), so more threads add contention rather than speed; two overlap it with
# the training step.
_READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=256)


class _CountingIterator(grain.DatasetIterator):
    """Yields the arrays of `Encoded` elements; counts every element in `stats` (kept in the
    iterator state, so counts survive a restore)."""

    def __init__(self, parent: grain.DatasetIterator, stats: DataStats):
        super().__init__(parent)
        self._data_stats = stats  # (grain's iterators own `_stats`)

    def __next__(self) -> dict[str, Any]:
        while True:
            element = next(self._parent)
            if isinstance(element, Rejected):
                self._data_stats.count_skipped(element.reason, element.message)
                continue
            self._data_stats.count_used(element.truncated)
            return element.arrays

    def get_state(self) -> dict[str, Any]:
        return {"parent": self._parent.get_state(), "stats": self._data_stats.to_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(state["parent"])
        restored = DataStats.from_state(state["stats"])
        for field, value in vars(restored).items():
            setattr(self._data_stats, field, value)


class _CountRejected(grain.IterDataset):
    def __init__(self, parent: grain.IterDataset, stats: DataStats):
        super().__init__(parent)
        self._data_stats = stats

    def __iter__(self) -> _CountingIterator:
        return _CountingIterator(self._parent.__iter__(), self._data_stats)


def _packed_row(row: dict[str, Any]) -> dict[str, Any]:
    """A packed row (grain's key names, padded to max_length) -> our names, padding cut off."""
    length = int((row["input_ids_segment_ids"] > 0).sum())
    return {
        "input_ids": row["input_ids"][:length],
        "loss_mask": row["loss_mask"][:length],
        "segment_ids": row["input_ids_segment_ids"][:length],
        "positions": row["input_ids_positions"][:length],
    }


class BatchIterator:
    """Iterator of batch dicts with a checkpointable position (`get_state` / `set_state`)."""

    def __init__(self, batches: grain.DatasetIterator, stats: DataStats, identity: dict):
        self._batches = batches
        self.stats = stats
        self._identity = identity

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> dict[str, Any]:
        return next(self._batches)

    def get_state(self) -> dict[str, Any]:
        """The position after the last batch returned, and the stats so far (JSON-compatible)."""
        return {"pipeline": dict(self._identity), "position": self._batches.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from a `get_state()` of an iterator over the same data and settings."""
        if state.get("pipeline") != self._identity:
            raise JalignError(
                f"data iterator state was saved for pipeline {state.get('pipeline')}, which is "
                f"not this one ({self._identity}); allowed: the same data, kind, batch_size, "
                "packing, shuffle and seed"
            )
        self._batches.set_state(state["position"])


class DataPipeline:
    """Records at `path` of one `kind` (sft, preference, unpaired, ranked, prompt), tokenized
    and batched per `config` into batches of `batch_size` rows."""

    def __init__(
        self,
        path: str | os.PathLike,
        kind: str,
        tokenizer: PreTrainedTokenizerBase,
        config: DataConfig,
        batch_size: int,
    ):
        if kind not in KINDS:
            raise JalignError(f"unknown data kind {kind!r}; allowed: {', '.join(KINDS)}")
        if config.packing and kind != SFT:
            raise JalignError(
                f"config key 'data.packing' is True for {kind} data; allowed: packing=True only "
                "for sft data"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise JalignError(f"batch_size is {batch_size!r}; allowed: an int >= 1")
        self.kind = kind
        self.config = config
        self.batch_size = batch_size
        self.source: RecordSource = open_records(path)
        num_responses = self._num_responses() if kind == RANKED else None
        self.encoder = ExampleEncoder(kind, tokenizer, config)
        self.collate = Collator(
            kind, batch_size, config.bucket_widths, pad_token_id(tokenizer), num_responses
        )

    @property
    def num_records(self) -> int:
        """Records per epoch, before any are skipped."""
        return len(self.source)

    def _num_responses(self) -> int:
        """Ranked data: k = the most responses of any valid record (one pass that parses and
        validates the records without tokenizing them); records with fewer are padded to k."""
        counts = [
            len(example.responses)
            for raw in self.source
            if not isinstance(
                example := guarded(raw, lambda r: validate(self.kind, r), self.config.on_error),
                Rejected,
            )
        ]
        if not counts:
            raise JalignError(f"{self.source.path}: no record is a valid {self.kind} record")
        return max(counts)

    def iterator(self) -> BatchIterator:
        """A fresh iterator from the first batch (call `set_state` on it to resume)."""
        cfg = self.config
        records = grain.MapDataset.source(self.source)
        if cfg.shuffle:
            records = records.shuffle(seed=cfg.seed)
        examples = records.repeat(cfg.num_epochs).map(self.encoder)
        examples = examples.to_iter_dataset(_READ_OPTIONS)
        stats = DataStats()
        rows = _CountRejected(examples, stats)
        if cfg.packing:
            rows = FirstFitPackIterDataset(
                rows,
                length_struct={"input_ids": cfg.max_length, "loss_mask": cfg.max_length},
                num_packing_bins=self.batch_size,
                shuffle_bins=False,
                meta_features=("loss_mask",),
            ).map(_packed_row)
        batches = rows.batch(
            self.batch_size, drop_remainder=cfg.drop_remainder, batch_fn=self.collate
        )
        identity = {
            "kind": self.kind,
            "num_records": self.num_records,
            "batch_size": self.batch_size,
            "packing": cfg.packing,
            "shuffle": cfg.shuffle,
            "seed": cfg.seed,
        }
        return BatchIterator(batches.__iter__(), stats, identity)
