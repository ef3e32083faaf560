"""Readers: a data path -> a random-access source of raw records, each with its location.

    source = open_records("prefs.jsonl")       # or .parquet, a folder of shards, a save_to_disk folder
    len(source); source[3] -> RawRecord(where="prefs.jsonl:4", value=b'{"prompt": ...}')

JSONL lines are kept as bytes and parsed lazily by `parse_record`, so a malformed line is
reported (or skipped) with its file and 1-based line number when the pipeline reaches it.
Parquet and `datasets` rows are located as "<file> row <0-based index>".
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jalign.data.stats import MALFORMED, RecordError
from jalign.errors import JalignError

ALLOWED_PATHS = (
    "a .jsonl or .parquet file, a folder of .jsonl or .parquet files, or a folder written by "
    "datasets' save_to_disk"
)


@dataclasses.dataclass(frozen=True)
class RawRecord:
    """One record as read: `where` locates it ("file:line" or "file row i"); `value` is a
    parsed dict, or a JSONL line (bytes) still to parse."""

    where: str
    value: dict[str, Any] | bytes
    index: int = -1  # position in its source: keys per-record caches (reference logprobs)


def parse_record(raw: RawRecord) -> dict[str, Any]:
    """The record as a dict; raises RecordError(MALFORMED) for a line that is not a JSON object."""
    if isinstance(raw.value, dict):
        return raw.value
    try:
        value = json.loads(raw.value)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RecordError(
            MALFORMED, f"invalid JSON ({e}); expected one JSON object per line"
        ) from None
    if not isinstance(value, dict):
        raise RecordError(
            MALFORMED, f"a JSON {type(value).__name__} is not a record; expected a JSON object"
        )
    return value


class _JsonlFile:
    def __init__(self, path: Path):
        self.path = path
        lines = path.read_bytes().split(b"\n")
        numbered = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
        self.line_numbers = np.array([n for n, _ in numbered], dtype=np.int64)
        self.lines = [line for _, line in numbered]

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, i: int) -> RawRecord:
        return RawRecord(f"{self.path}:{self.line_numbers[i]}", self.lines[i], i)


class _ParquetFile:
    def __init__(self, path: Path):
        import pyarrow.parquet as pq

        self.path = path
        try:
            self.table = pq.read_table(path)
        except Exception as e:  # pyarrow raises several types for unreadable files
            raise JalignError(
                f"{path}: cannot read as parquet ({e}); allowed: {ALLOWED_PATHS}"
            ) from e

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, i: int) -> RawRecord:
        return RawRecord(f"{self.path} row {i}", self.table.slice(i, 1).to_pylist()[0], i)


class _DiskDataset:
    def __init__(self, path: Path):
        import datasets

        self.path = path
        try:
            self.dataset = datasets.load_from_disk(str(path))
        except Exception as e:  # datasets raises several types for unreadable folders
            raise JalignError(f"{path}: cannot load with datasets.load_from_disk ({e})") from e

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> RawRecord:
        return RawRecord(f"{self.path} row {i}", self.dataset[i], i)


_FILE_READERS = {".jsonl": _JsonlFile, ".parquet": _ParquetFile}


class RecordSource(Sequence[RawRecord]):
    """The records of one or more files, in order, as one random-access sequence."""

    def __init__(self, path: Path, parts: Sequence[_JsonlFile | _ParquetFile | _DiskDataset]):
        self.path = path
        self._parts = list(parts)
        self._starts = np.cumsum([0] + [len(part) for part in self._parts]).tolist()

    def __len__(self) -> int:
        return self._starts[-1]

    def __getitem__(self, index: int) -> RawRecord:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(index)
        part = bisect.bisect_right(self._starts, index) - 1
        return self._parts[part][index - self._starts[part]]


def _read_folder(path: Path) -> list[_JsonlFile | _ParquetFile | _DiskDataset]:
    if (path / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in path.iterdir() if p.is_dir())
        raise JalignError(
            f"{path} is a datasets DatasetDict with splits {', '.join(splits)}; allowed: the "
            f"folder of one split, e.g. {path / splits[0]}"
            if splits
            else f"{path} is an empty datasets DatasetDict; allowed: {ALLOWED_PATHS}"
        )
    if (path / "state.json").is_file():
        return [_DiskDataset(path)]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _FILE_READERS)
    suffixes = {p.suffix for p in files}
    if len(suffixes) != 1:
        found = "both .jsonl and .parquet files" if suffixes else "no .jsonl or .parquet file"
        raise JalignError(f"data folder {path} has {found}; allowed: {ALLOWED_PATHS}")
    return [_FILE_READERS[p.suffix](p) for p in files]


def open_records(path: str | os.PathLike) -> RecordSource:
    """Open a data path, picking the reader by suffix (file) or layout (folder).

    Raises JalignError for a missing path, an unknown kind of file, or no records at all.
    """
    path = Path(path)
    if not path.exists():
        raise JalignError(f"data path {path} does not exist; allowed: {ALLOWED_PATHS}")
    if path.is_dir():
        parts = _read_folder(path)
    elif path.suffix in _FILE_READERS:
        parts = [_FILE_READERS[path.suffix](path)]
    else:
        raise JalignError(f"data file {path} has an unknown suffix; allowed: {ALLOWED_PATHS}")
    source = RecordSource(path, parts)
    if len(source) == 0:
        raise JalignError(f"data path {path} holds no records; allowed: at least one record")
    return source
