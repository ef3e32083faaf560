"""Bad model input gives one-line errors that name the file and the problem."""

import json
import shutil

import pytest

from jalign.errors import JalignError
from jalign.interop import load_hf_model, load_model_source
from jalign.interop.safetensors_format import SafetensorsFile


def test_missing_folder(tmp_path):
    with pytest.raises(JalignError, match="nope: no such model folder"):
        load_model_source(tmp_path / "nope")


def test_config_without_model_type_lists_supported(tmp_path, hf_checkpoint):
    folder = shutil.copytree(hf_checkpoint("llama"), tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    del config["model_type"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        JalignError,
        match=r"config\.json: no 'model_type' key; supported model types: llama, mistral, qwen2, qwen3, gemma2, gpt2",
    ):
        load_hf_model(folder)


def test_unsupported_model_type(tmp_path, hf_checkpoint):
    folder = shutil.copytree(hf_checkpoint("llama"), tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "mamba"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(JalignError, match="model_type 'mamba' is not supported"):
        load_hf_model(folder)


def test_shape_mismatch_names_tensor_and_file(tmp_path, hf_checkpoint):
    folder = shutil.copytree(hf_checkpoint("llama"), tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 48
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        JalignError,
        match=r"model\.safetensors: tensor model\.layers\.0\.mlp\.down_proj\.weight has shape \(32, 64\) but config\.json implies \(32, 48\)",
    ):
        load_hf_model(folder)


def test_missing_weights_and_missing_tensors(tmp_path, hf_checkpoint):
    folder = shutil.copytree(hf_checkpoint("llama"), tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        JalignError,
        match=r"checkpoint lacks \d+ tensors config\.json implies, e\.g\. model\.layers\.2\.",
    ):
        load_hf_model(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(
        JalignError, match=r"no model\.safetensors or model\.safetensors\.index\.json"
    ):
        load_hf_model(folder)


def test_garbage_safetensors(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(JalignError, match="not a readable safetensors file"):
        SafetensorsFile(bad)
