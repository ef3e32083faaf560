"""A lazy reader and a writer for the safetensors format, on numpy (bfloat16 via ml_dtypes).

The format: an 8-byte little-endian header length, a JSON header mapping each tensor name to
its dtype, shape and byte offsets, then the raw little-endian data. Reading memory-maps the file
and returns views, so only the tensors asked for are ever read.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path

import ml_dtypes
import numpy as np

from jalign.errors import JalignError

DTYPES = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_NAMES = {dtype: name for name, dtype in DTYPES.items()}


class SafetensorsFile:
    """Tensors of one .safetensors file, read on demand."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                (header_len,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(header_len))
        except (OSError, struct.error, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise JalignError(f"{self.path}: not a readable safetensors file ({exc})") from None
        header.pop("__metadata__", None)
        self.header: dict[str, dict] = header
        self.data_start = 8 + header_len
        self._map = np.memmap(self.path, dtype=np.uint8, mode="r")

    def keys(self) -> list[str]:
        return list(self.header)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.header[name]["shape"])

    def get(self, name: str) -> np.ndarray:
        info = self.header[name]
        if info["dtype"] not in DTYPES:
            raise JalignError(f"{self.path}: tensor {name} has unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        raw = self._map[self.data_start + start : self.data_start + end]
        return raw.view(DTYPES[info["dtype"]]).reshape(info["shape"])


def write_safetensors(
    path: str | Path, tensors: Mapping[str, np.ndarray], metadata: dict | None = None
) -> None:
    """Write `tensors` (C-contiguous copies) to `path` in the safetensors format."""
    header: dict[str, dict] = {}
    offset = 0
    arrays = {}
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        if array.dtype not in _NAMES:
            raise JalignError(f"cannot write tensor {name} of dtype {array.dtype} to safetensors")
        arrays[name] = array
        header[name] = {
            "dtype": _NAMES[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    if metadata:
        header["__metadata__"] = metadata
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # align the data section to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for array in arrays.values():
            f.write(array.tobytes())
