"""Checks of user-given values, each failing as a one-line ConfigError that names the key and a fix."""

from __future__ import annotations

import dataclasses
import math

from dfkd.errors import ConfigError


def integer(value, name: str, minimum: int = 1) -> int:
    """``value`` as an integer >= ``minimum`` (a bool, a fraction or text is refused)."""
    example = max(minimum, 10) if minimum > 0 else 0
    what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"{name} must be {what}, got {value!r}: set e.g. {name}={example}")
    try:
        as_int = int(value)
        if float(value) != as_int:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name} must be {what}, got {value!r}: set e.g. {name}={example}") from None
    if as_int < minimum:
        raise ConfigError(f"{name} must be {what}, got {as_int}: set e.g. {name}={example}")
    return as_int


def pos_int(value, name: str) -> int:
    """``value`` as a positive integer."""
    return integer(value, name, 1)


def number(value, name: str, minimum: float | None = 0.0) -> float:
    """``value`` as a finite float (>= ``minimum`` unless that is None)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(out) or (minimum is not None and out < minimum):
        raise ConfigError(f"{name} must be a finite number >= {minimum}, got {value!r}")
    return out


def typed_fields(cls, values: dict, where: str) -> dict:
    """``values`` checked against the fields of dataclass ``cls``: unknown keys are refused, ints are integers
    >= the field's ``metadata['min']`` (default 1), floats finite numbers >= ``metadata['min']`` (default 0)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    for key, value in values.items():
        f = fields.get(key)
        if f is None:
            raise ConfigError(f"{where}{key} is not a setting of {cls.__name__}: use one of {', '.join(fields)}")
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        if kind == "int":
            value = integer(value, f"{where}{key}", f.metadata.get("min", 1))
        elif kind == "float":
            value = number(value, f"{where}{key}", f.metadata.get("min", 0.0))
        elif kind == "str":
            value = str(value)
        out[key] = value
    return out
