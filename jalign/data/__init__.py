"""Data: user files -> validated records -> token ids -> fixed-shape numpy batches.

    tokenizer = load_tokenizer("path/to/model")
    pipeline = DataPipeline("train.jsonl", "sft", tokenizer, DataConfig(max_length=512), 16)
    for batch in pipeline.iterator(): ...

See `jalign.data.batching` for the batch keys and shapes of each kind of data and
`jalign.data.schemas` for the record formats.
"""

from jalign.data.batching import bucket_width
from jalign.data.config import DataConfig
from jalign.data.pipeline import BatchIterator, DataPipeline
from jalign.data.readers import RawRecord, RecordSource, open_records, parse_record
from jalign.data.schemas import KINDS, PREFERENCE, PROMPT, RANKED, SFT, UNPAIRED, Example
from jalign.data.stats import DataStats
from jalign.data.tokenizer import (
    encode_prompt,
    load_tokenizer,
    pad_token_id,
    render_chat,
    stop_token_ids,
)

__all__ = [
    "KINDS",
    "PREFERENCE",
    "PROMPT",
    "RANKED",
    "SFT",
    "UNPAIRED",
    "BatchIterator",
    "DataConfig",
    "DataPipeline",
    "DataStats",
    "Example",
    "RawRecord",
    "RecordSource",
    "bucket_width",
    "encode_prompt",
    "load_tokenizer",
    "open_records",
    "pad_token_id",
    "parse_record",
    "render_chat",
    "stop_token_ids",
]
