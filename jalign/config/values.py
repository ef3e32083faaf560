"""Typed config values: parsing command-line text and coercing to a field's declared type.

A field's type is the one ml_collections records for it (`ConfigDict.get_type`): the type of
its default, or the type given to `config_dict.placeholder(T)`. A field whose default is a bare
`None` accepts any value.
"""

from __future__ import annotations

import ast
from typing import Any

from jalign.errors import JalignError

_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0")
_NONE = ("none", "null")


def parse_text(text: str, declared: type) -> Any:
    """Parse override text: a Python literal (`1e-5`, `[64,128]`, `True`), else the raw string.

    A `str` field takes the text verbatim (so `--config.name=123` is the string "123"), and
    `none`/`null` mean None for any other field.
    """
    if declared is str:
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None if text.strip().lower() in _NONE else text


def _type_name(value: Any) -> str:
    return type(value).__name__


def coerce(value: Any, declared: type, default: Any, key: str, where: str) -> Any:
    """Return `value` converted to `declared` (int -> float, "true" -> True, list <-> tuple).

    `default` supplies the element type of a list/tuple field (that of its first element).
    Raises JalignError naming the key when no faithful conversion exists.
    """

    def reject(expected: str) -> JalignError:
        return JalignError(
            f"{where}: config key '{key}' expects {expected}, got {value!r} ({_type_name(value)})"
        )

    if value is None or declared is type(None):
        return value
    if declared is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if isinstance(value, str | int) and text in (*_TRUE, *_FALSE):
            return text in _TRUE
        raise reject("a bool (true/false)")
    if declared is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise reject("an int")
    if declared is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise reject("a float")
    if declared in (list, tuple):
        if not isinstance(value, list | tuple):
            raise reject(f"a {declared.__name__} such as [1, 2]")
        if default:
            element_type = type(default[0])
            value = [
                coerce(v, element_type, None, f"{key}[{i}]", where) for i, v in enumerate(value)
            ]
        return declared(value)
    if not isinstance(value, declared):
        raise reject(f"a {declared.__name__}")
    return value
