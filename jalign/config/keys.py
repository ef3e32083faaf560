"""Dotted config keys: resolving `optimizer.lr` inside a ConfigDict, with helpful errors.

An unknown key is the most common config mistake, so its error names the full dotted key,
where it came from, a "did you mean" suggestion and every key allowed at that level.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator

from ml_collections import ConfigDict

from jalign.errors import JalignError


def iter_leaves(cfg: ConfigDict, prefix: str = "") -> Iterator[tuple[str, object]]:
    """Yield `(dotted_key, value)` for every non-section value, in sorted key order."""
    for name in sorted(cfg.keys()):
        value = cfg[name]
        if isinstance(value, ConfigDict):
            yield from iter_leaves(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


def _suggestion(name: str, prefix: str, level_keys: list[str], all_keys: list[str]) -> str | None:
    """Closest key at the same level; failing that, a leaf elsewhere whose last part is close."""
    same_level = difflib.get_close_matches(name, level_keys, n=1, cutoff=0.6)
    if same_level:
        return prefix + same_level[0]
    by_last = {key.rsplit(".", 1)[-1]: key for key in all_keys}
    elsewhere = difflib.get_close_matches(name, list(by_last), n=1, cutoff=0.8)
    return by_last[elsewhere[0]] if elsewhere else None


def _unknown_key_error(root: ConfigDict, dotted: str, where: str) -> JalignError:
    """The error for `dotted` not existing in `root` (reported at its deepest existing section)."""
    parts = dotted.split(".")
    section, depth = root, 0
    while depth < len(parts) - 1 and isinstance(section.get(parts[depth]), ConfigDict):
        section = section[parts[depth]]
        depth += 1
    parent = ".".join(parts[:depth])
    prefix = f"{parent}." if parent else ""
    level_keys = sorted(section.keys())
    all_keys = [key for key, _ in iter_leaves(root)]
    guess = _suggestion(parts[depth], prefix, level_keys, all_keys)
    hint = f"; did you mean '{guess}'?" if guess else ";"
    level = f"under '{parent}'" if parent else "at top level"
    return JalignError(
        f"{where}: unknown config key '{dotted}'{hint} allowed keys {level}: {', '.join(level_keys)}"
    )


def resolve(root: ConfigDict, dotted: str, where: str) -> tuple[ConfigDict, str]:
    """Return `(section, name)` such that `section[name]` is the value at `dotted`."""
    parts = dotted.split(".")
    section = root
    for depth, part in enumerate(parts[:-1]):
        if part not in section:
            raise _unknown_key_error(root, dotted, where)
        child = section[part]
        if not isinstance(child, ConfigDict):
            value_key = ".".join(parts[: depth + 1])
            raise JalignError(
                f"{where}: '{value_key}' is a value, not a section, so '{dotted}' does not exist"
            )
        section = child
    if parts[-1] not in section:
        raise _unknown_key_error(root, dotted, where)
    return section, parts[-1]
