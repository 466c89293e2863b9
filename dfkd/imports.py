"""Build an object from a dotted class path (a config's ``_target_``), with one-line errors."""

from __future__ import annotations

from importlib import import_module

from dfkd.errors import ConfigError


def instantiate(target: str, params: dict | None, what: str, fix: str):
    """``target(**params)``; a bad path or bad parameters raise ConfigError naming ``what`` and ``fix``."""
    module_name, _, cls_name = str(target).rpartition(".")
    try:
        cls = getattr(import_module(module_name), cls_name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"{what} '{target}' cannot be imported: {fix}") from None
    try:
        return cls(**(params or {}))
    except TypeError as exc:
        raise ConfigError(f"{what} '{target}' does not accept its parameters ({exc}): {fix}") from None
