"""The environment as a configuration source: ``OCIGATE_KEY``, nested ``OCIGATE_A__B``, and an
``OCIGATE_*`` variable naming no setting rejected by name (a typo would else be ignored)."""

from __future__ import annotations

import difflib
import json
import os
import types
import typing
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel
from pydantic_settings import BaseSettings, EnvSettingsSource

from .store_config import OLD_KEYS, map_old_keys

ENV_PREFIX = "OCIGATE_"
# The serve command hands the resolved settings to its worker processes in this variable.
RESOLVED_SETTINGS = "OCIGATE_RESOLVED_SETTINGS"
_INTERNAL = frozenset({RESOLVED_SETTINGS})
ENV_NESTED = "__"


class Environment(EnvSettingsSource):
    """pydantic-settings' environment source, checked first and with the old storage keys
    (``OCIGATE_DATA_DIR``, ``OCIGATE_UPSTREAMS``, …) mapped into ``store``."""

    def __call__(self) -> dict[str, Any]:
        check_names(self.settings_cls, os.environ)
        data = super().__call__()
        # Not fields any more, so the parent source skips them.
        for key in OLD_KEYS:
            value = self.env_vars.get(f"{ENV_PREFIX}{key}".lower())
            if value is not None:
                data[key] = _json(f"{ENV_PREFIX}{key.upper()}", value) if key in _LISTS else value
        return map_old_keys(data)


_LISTS = frozenset({"upstreams"})


def _json(name: str, value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(f"environment variable {name}: not JSON: {error}") from None


def check_names(settings_cls: type[BaseSettings], environ: typing.Mapping[str, str]) -> None:
    """Raise ValueError naming the first ``OCIGATE_*`` variable that sets nothing."""
    known = sorted(_names(settings_cls, ENV_PREFIX)) + [ENV_PREFIX + k.upper() for k in OLD_KEYS]
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in _INTERNAL:
            continue
        if not _sets_something(settings_cls, upper[len(ENV_PREFIX) :].lower().split(ENV_NESTED)):
            near = difflib.get_close_matches(upper, known, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise ValueError(f"environment variable {name} names no setting{hint}")


def _sets_something(model: type[BaseModel], path: list[str]) -> bool:
    if len(path) == 1 and path[0] in OLD_KEYS:
        return True  # mapped into store
    models = [model]
    for i, part in enumerate(path):
        fields = [m.model_fields[part] for m in models if part in m.model_fields]
        if not fields:
            return False
        if i == len(path) - 1:
            return True
        models = [sub for field in fields for sub in _models(field.annotation)]
        if not models:
            return False  # a value (list, mapping, scalar) has no keys to set one by one
    return True


def _names(model: type[BaseModel], prefix: str) -> Iterator[str]:
    for name, field in model.model_fields.items():
        yield prefix + name.upper()
        for sub in _models(field.annotation):
            yield from _names(sub, prefix + name.upper() + ENV_NESTED)


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation may hold: ``X``, ``X | None``, ``Annotated[A | B, …]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [m for arg in typing.get_args(annotation) for m in _models(arg)]
    return []
