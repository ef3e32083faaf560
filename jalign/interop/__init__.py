"""Hugging Face and GGUF interop: load checkpoints onto a mesh, export, convert."""

from jalign.interop.gguf_import import convert_gguf, unpermute_qk
from jalign.interop.safetensors_io import hf_tensors, load_hf_model, save_hf_model
from jalign.interop.sources import (
    BUNDLED,
    convert,
    load_model_source,
    resolve_model_folder,
    smollm2_gguf_path,
    smollm2_hf_folder,
)

__all__ = [
    "BUNDLED",
    "convert",
    "convert_gguf",
    "hf_tensors",
    "load_hf_model",
    "load_model_source",
    "resolve_model_folder",
    "save_hf_model",
    "smollm2_gguf_path",
    "smollm2_hf_folder",
    "unpermute_qk",
]
