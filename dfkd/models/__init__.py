"""Model stacks: R independent networks ("replicas") trained as one.

Every architecture lives in one module ``dfkd/models/<arch>.py`` that defines
``build_stack(input_shape, generators, device, **params)``; :func:`build_stack`
finds it by name, so adding an architecture is one file (and one yaml), with no
list to update. The protocol a stack answers is in ``docs/engine-contract.md``.
"""

from __future__ import annotations

import inspect
from importlib import import_module

from dfkd.errors import ConfigError


def _module(arch: str):
    try:
        module = import_module(f"dfkd.models.{arch}")
        module.build_stack
    except (ImportError, AttributeError):
        raise ConfigError(f"unknown architecture '{arch}': no dfkd/models/{arch}.py with a build_stack()") from None
    return module


def inputs(arch: str) -> str:
    """The kind of dataset input (``table``, ``image``) that architecture ``arch`` takes (its module's ``INPUTS``)."""
    return getattr(_module(arch), "INPUTS", "table")


def build_stack(arch: str, input_shape, generators, device="cpu", **params):
    """A fresh stack of architecture ``arch`` (module ``dfkd.models.<arch>``), replica r from ``generators[r]``.

    Raises:
        ConfigError: unknown architecture or parameters it does not take.
    """
    builder = _module(arch).build_stack
    try:
        inspect.signature(builder).bind(tuple(input_shape), generators, device, **params)
    except TypeError as exc:
        raise ConfigError(f"architecture '{arch}' does not accept its parameters ({exc})") from None
    return builder(tuple(input_shape), generators, device, **params)
