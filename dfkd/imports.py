"""Build objects from configs (a dict with ``_target_``) through Hydra's instantiate, with one-line errors."""

from __future__ import annotations

import inspect

from dfkd.core.state import one_line
from dfkd.errors import ConfigError, DfkdError


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def build(cfg: dict, what: str, fix: str):
    """``cfg['_target_'](**rest)`` via :func:`hydra.utils.instantiate` (nested dicts stay plain dicts).

    A ``name`` key that the target does not take is set on the object after it is built (the yaml's name of,
    e.g., a method class used under several names).

    Raises:
        ConfigError: the target cannot be imported, or refuses its parameters or their values (one line naming
            ``what`` and ``fix``); a DfkdError the constructor raises passes through.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import get_class, instantiate

    cfg = dict(cfg)
    target = cfg.get("_target_")
    if not target:
        raise ConfigError(f"{what} has no _target_: {fix}")
    try:
        cls = get_class(str(target)) if not callable(target) else target
    except Exception:  # noqa: BLE001 - Hydra wraps import failures of every kind
        raise ConfigError(f"{what}: class {target} cannot be imported: {fix}") from None
    name = None
    try:
        params = inspect.signature(cls).parameters
        takes_name = "name" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    except (TypeError, ValueError):
        takes_name = True
    if "name" in cfg and not takes_name:
        name = cfg.pop("name")
    try:
        obj = instantiate(cfg, _convert_="all")
    except InstantiationException as exc:
        cause = _root_cause(exc)
        if isinstance(cause, DfkdError):
            raise cause from None
        raise ConfigError(f"{what} ({target}) does not accept its parameters ({one_line(cause)}): {fix}") from None
    if name is not None:
        obj.name = str(name)
    return obj


def instantiate(target: str, params: dict | None, what: str, fix: str):
    """``target(**params)`` for a dotted class path; the same one-line errors as :func:`build`."""
    return build({"_target_": target, **(params or {})}, what, fix)
