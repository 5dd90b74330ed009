"""Typed settings from the environment.

Each service declares its settings as a frozen dataclass and loads it with
``load_settings``; this is the only place environment variables are read.
Field names map to upper-case variable names (``redis_url`` → ``REDIS_URL``).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _convert(name: str, raw: str, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        if raw == "":
            return None
        return _convert(name, raw, options[0])
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigError(f"{name} must be a boolean, got {raw!r}")
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise ConfigError(f"{name} must be {kind.__name__}, got {raw!r}") from None
    if origin in (tuple, list):
        item = typing.get_args(kind)[0] if typing.get_args(kind) else str
        parts = [p.strip() for p in raw.split(",") if p.strip()]
        return tuple(_convert(name, p, item) for p in parts)
    return raw


def load_settings(cls: type[T], environ: Mapping[str, str] | None = None, **overrides: Any) -> T:
    """Build ``cls`` from the environment, then apply ``overrides``.

    Raises:
      ConfigError: when a variable cannot be converted to its field's type.
    """
    env = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        var = field.name.upper()
        if field.name in overrides:
            values[field.name] = overrides.pop(field.name)
        elif var in env:
            values[field.name] = _convert(var, env[var], hints[field.name])
    if overrides:
        raise ConfigError(f"unknown settings: {', '.join(sorted(overrides))}")
    return cls(**values)
