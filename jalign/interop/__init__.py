"""Hugging Face and GGUF interop: load checkpoints onto a mesh, export, convert."""

from jalign.interop.safetensors_io import hf_tensors, load_hf_model, save_hf_model

__all__ = ["hf_tensors", "load_hf_model", "save_hf_model"]
