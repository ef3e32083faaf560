"""Loading run configs: `configs/*.py` files exposing `get_config() -> ConfigDict`.

    cfg = load_config("configs/dpo.py", ["--config.optimizer.lr=1e-5"], schema=DPO_SCHEMA)

The file is imported by path, its values are laid onto the schema's defaults (when a schema is
given), command-line overrides are applied in order, enum choices and range checks are
validated, and the result is locked: setting or reading a key that does not exist raises, in
code as well as on the command line.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
from ml_collections import ConfigDict

from jalign.config.keys import iter_leaves, resolve
from jalign.config.schema import Schema, validate
from jalign.config.values import coerce, parse_text
from jalign.errors import JalignError

CONFIG_JSON = "config.json"
_OVERRIDE = re.compile(r"--config\.([A-Za-z_][\w.]*)=(.*)", re.DOTALL)


def _import_config(path: Path) -> ConfigDict:
    if not path.is_file():
        raise JalignError(f"config file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"jalign_run_config_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise JalignError(f"config file {path} cannot be imported; it must be a .py file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise JalignError(f"{path}:{e.lineno}: syntax error in config file: {e.msg}") from e
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise JalignError(f"{path}: a config file must define get_config() returning a ConfigDict")
    cfg = get_config()
    if not isinstance(cfg, ConfigDict):
        raise JalignError(
            f"{path}: get_config() returned {type(cfg).__name__}; it must return an "
            "ml_collections.ConfigDict"
        )
    return cfg


def _locate(path: Path, key: str) -> str:
    """`file:line` of the first line mentioning the key's last part, else just the file."""
    name = re.compile(rf"\b{re.escape(key.rsplit('.', 1)[-1])}\b")
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if name.search(line):
            return f"{path}:{lineno}"
    return str(path)


def _set(section: ConfigDict, name: str, value: Any, key: str, where: str) -> None:
    current = section[name]
    if isinstance(current, ConfigDict):
        raise JalignError(
            f"{where}: config key '{key}' is a section; set its keys instead: "
            f"{', '.join(sorted(current.keys()))}"
        )
    section[name] = coerce(value, section.get_type(name), current, key, where)


def _onto_defaults(defaults: ConfigDict, file_cfg: ConfigDict, path: Path) -> ConfigDict:
    cfg = copy.deepcopy(defaults)
    cfg.unlock()
    for key, value in iter_leaves(file_cfg):
        where = _locate(path, key)
        section, name = resolve(cfg, key, where)
        _set(section, name, value, key, where)
    return cfg


def apply_override(cfg: ConfigDict, text: str) -> str:
    """Apply one `--config.a.b=value` override in place; return the dotted key it set."""
    match = _OVERRIDE.fullmatch(text)
    if match is None:
        raise JalignError(
            f"override {text!r} must look like --config.KEY=VALUE, e.g. --config.optimizer.lr=1e-5"
        )
    key, raw = match.groups()
    where = f"override {text}"
    section, name = resolve(cfg, key, where)
    _set(section, name, parse_text(raw, section.get_type(name)), key, where)
    return key


def load_config(
    path: str | os.PathLike, overrides: Sequence[str] = (), schema: Schema | None = None
) -> ConfigDict:
    """Import `path`, lay it onto `schema.defaults`, apply `overrides`, validate and lock.

    Without a schema the file's own keys are the allowed keys. Raises JalignError for a
    missing file, an unknown key, a value of the wrong type, a bad enum value or a failed check.
    """
    path = Path(path)
    file_cfg = _import_config(path)
    cfg = _onto_defaults(schema.defaults, file_cfg, path) if schema else file_cfg
    overridden = {apply_override(cfg, text): f"override {text}" for text in overrides}
    if schema:
        validate(cfg, schema, where=lambda key: overridden.get(key) or _locate(path, key))
    cfg.lock()
    return cfg


def config_to_dict(cfg: ConfigDict) -> dict:
    """The resolved config as plain JSON-compatible data (tuples become lists)."""
    return json.loads(cfg.to_json(sort_keys=True))


def config_hash(cfg: ConfigDict) -> str:
    """A short stable fingerprint of the resolved config (for checkpoint metadata)."""
    canonical = json.dumps(config_to_dict(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def save_config(cfg: ConfigDict, run_dir: str | os.PathLike) -> Path:
    """Write the resolved config to `run_dir/config.json` (process 0 only; atomic replace)."""
    target = Path(run_dir) / CONFIG_JSON
    if jax.process_index() == 0:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(config_to_dict(cfg), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, target)
    return target
