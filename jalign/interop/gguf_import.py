"""Import a llama-architecture GGUF file (llama.cpp's format) as an HF folder.

Weights are dequantized to float32 with the `gguf` package. llama.cpp's converter permutes the
rows of q_proj and k_proj (it stores RoPE's rotated halves interleaved); `unpermute_qk` undoes
that exactly. The tokenizer (a GPT-2-style byte-level BPE: tokens, merges, special tokens, chat
template) is rebuilt with the `tokenizers` library and saved as tokenizer.json.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from jalign.errors import JalignError
from jalign.interop.safetensors_format import write_safetensors

_LAYER_TENSORS = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_CONTROL_TOKEN = 3


def unpermute_qk(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Invert llama.cpp's `permute`: rows (heads, 2, half, ...) were stored as (heads, half, 2, ...)."""
    rows = weight.shape[0]
    return (
        weight.reshape(n_heads, rows // n_heads // 2, 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def _open(path: Path):
    import gguf

    if not path.is_file():
        raise JalignError(f"{path}: no such GGUF file")
    try:
        return gguf.GGUFReader(str(path))
    except Exception as exc:  # the reader raises many types on a damaged file
        raise JalignError(
            f"{path}: not a readable GGUF file ({type(exc).__name__}: {exc})"
        ) from None


def _field(reader, key: str, path: Path, default: Any = None) -> Any:
    field = reader.fields.get(key)
    if field is None:
        if default is None:
            raise JalignError(f"{path}: GGUF metadata lacks {key!r}")
        return default
    return field.contents()


def gguf_config(reader, path: Path) -> dict[str, Any]:
    """GGUF metadata -> an HF `config.json` dict (LlamaConfig, transformers-5 layout)."""
    arch = _field(reader, "general.architecture", path)
    if arch != "llama":
        raise JalignError(f"{path}: GGUF architecture {arch!r} is not supported; supported: llama")
    names = {t.name for t in reader.tensors}
    heads = int(_field(reader, f"{arch}.attention.head_count", path))
    hidden = int(_field(reader, f"{arch}.embedding_length", path))
    tokens = _field(reader, "tokenizer.ggml.tokens", path)
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": int(_field(reader, f"{arch}.vocab_size", path, len(tokens))),
        "hidden_size": hidden,
        "intermediate_size": int(_field(reader, f"{arch}.feed_forward_length", path)),
        "num_hidden_layers": int(_field(reader, f"{arch}.block_count", path)),
        "num_attention_heads": heads,
        "num_key_value_heads": int(_field(reader, f"{arch}.attention.head_count_kv", path, heads)),
        "head_dim": hidden // heads,
        "max_position_embeddings": int(_field(reader, f"{arch}.context_length", path)),
        "rms_norm_eps": float(_field(reader, f"{arch}.attention.layer_norm_rms_epsilon", path)),
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": float(_field(reader, f"{arch}.rope.freq_base", path, 10000.0)),
        },
        "hidden_act": "silu",
        "tie_word_embeddings": "output.weight" not in names,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": int(_field(reader, "tokenizer.ggml.bos_token_id", path, -1)),
        "eos_token_id": int(_field(reader, "tokenizer.ggml.eos_token_id", path, -1)),
        "pad_token_id": int(_field(reader, "tokenizer.ggml.padding_token_id", path, -1)),
        "torch_dtype": "float32",
    }


def gguf_tensors(reader, config: dict[str, Any], path: Path) -> dict[str, np.ndarray]:
    """Dequantized float32 tensors under HF names, q/k rows un-permuted."""
    from gguf.quants import dequantize

    out = {}
    for tensor in reader.tensors:
        try:
            array = np.asarray(dequantize(tensor.data, tensor.tensor_type), np.float32)
        except Exception as exc:
            raise JalignError(f"{path}: cannot dequantize tensor {tensor.name} ({exc})") from None
        expected = tuple(int(d) for d in reversed(tensor.shape))
        array = array.reshape(expected)
        name = tensor.name
        if name == "token_embd.weight":
            out["model.embed_tokens.weight"] = array
        elif name == "output_norm.weight":
            out["model.norm.weight"] = array
        elif name == "output.weight":
            out["lm_head.weight"] = array
        elif name.startswith("blk."):
            _, layer, kind, suffix = name.split(".", 3)
            if kind not in _LAYER_TENSORS:
                raise JalignError(f"{path}: unexpected GGUF tensor {name}")
            if kind == "attn_q":
                array = unpermute_qk(array, config["num_attention_heads"])
            elif kind == "attn_k":
                array = unpermute_qk(array, config["num_key_value_heads"])
            out[f"model.layers.{layer}.{_LAYER_TENSORS[kind]}.{suffix}"] = array
        else:
            raise JalignError(f"{path}: unexpected GGUF tensor {name}")
    return out


def gguf_tokenizer(reader, path: Path, folder: Path) -> None:
    """Rebuild the byte-level BPE tokenizer and save it as an HF tokenizer folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    kind = _field(reader, "tokenizer.ggml.model", path)
    if kind != "gpt2":
        raise JalignError(
            f"{path}: tokenizer model {kind!r} is not supported; supported: gpt2 (BPE)"
        )
    tokens = list(_field(reader, "tokenizer.ggml.tokens", path))
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges", path)]
    types = list(_field(reader, "tokenizer.ggml.token_type", path, [1] * len(tokens)))
    vocab = {token: i for i, token in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    pre = _field(reader, "tokenizer.ggml.pre", path, "gpt2")
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in ("smollm", "starcoder", "refact", "qwen2"):  # digits are split one by one
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level]
        )
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    specials = [t for t, ty in zip(tokens, types, strict=True) if ty == _CONTROL_TOKEN]
    tok.add_special_tokens(specials)

    def special(key: str) -> str | None:
        index = int(_field(reader, key, path, -1))
        return tokens[index] if 0 <= index < len(tokens) else None

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=special("tokenizer.ggml.bos_token_id"),
        eos_token=special("tokenizer.ggml.eos_token_id"),
        unk_token=special("tokenizer.ggml.unknown_token_id"),
        pad_token=special("tokenizer.ggml.padding_token_id"),
        clean_up_tokenization_spaces=False,
    )
    template = reader.fields.get("tokenizer.chat_template")
    if template is not None:
        fast.chat_template = template.contents()
    fast.save_pretrained(folder)


def convert_gguf(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """GGUF file -> HF folder (config.json, model.safetensors in float32, tokenizer)."""
    src, dst = Path(src), Path(dst)
    reader = _open(src)
    try:
        config = gguf_config(reader, src)
        tensors = gguf_tensors(reader, config, src)
    except (ValueError, KeyError, IndexError) as exc:
        raise JalignError(f"{src}: damaged GGUF metadata or tensor data ({exc})") from None
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    write_safetensors(dst / "model.safetensors", tensors, {"format": "pt"})
    gguf_tokenizer(reader, src, dst)
    return dst
