"""Shared plumbing of the Hydra entry points: early checks and one-line errors.

Hydra reports an unknown config option in a dozen lines; a researcher should get
one that names the fix. :func:`check_overrides` looks at ``sys.argv`` before
Hydra does, and :func:`guarded` turns every :class:`~dfkd.errors.DfkdError`
raised inside a job into ``error: <message>`` on stderr and exit status 2.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from pathlib import Path

from omegaconf import OmegaConf

from dfkd.errors import ConfigError, DfkdError


def _shipped(name: str) -> Path:
    """A top-level folder of the repository (``conf``, ``experiments``), wherever dfkd is installed.

    A wheel carries it inside the package (``dfkd/<name>``, mapped by setup.py); a source
    checkout or an editable install has it beside the package.
    """
    package = Path(__file__).resolve().parent
    inside = package / name
    return inside if inside.is_dir() else package.parent / name


CONF_DIR = _shipped("conf")  # the Hydra configs: every entry point's config_path
CONF_PATH = str(CONF_DIR)  # absolute, for @hydra.main(config_path=...): independent of cwd and of how dfkd runs
EXPERIMENTS_DIR = _shipped("experiments")  # the paper's table and figure specs (dfkd.report)
_SWEEP_FN = re.compile(r"^\w+\(.*\)$")  # choice(...), range(...), glob(...): left to Hydra


def options(group: str) -> list[str]:
    """The option names of a config group (the yaml files of ``conf/<group>/``)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def groups() -> list[str]:
    """Our config groups (not Hydra's own)."""
    return sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra")


def check_overrides(argv: list[str]) -> None:
    """Reject unknown group options in command-line overrides with a one-line ConfigError."""
    known = set(groups())
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, _, value = arg.partition("=")
        key = key.lstrip("+~").split("@")[0]
        if key == "results_dir" and value and "," not in value and "$" not in value:
            from dfkd.run import check_writable

            check_writable(Path(value))  # Hydra writes its logs there before any of our code runs
        if key not in known or not value or _SWEEP_FN.match(value):
            continue
        valid = options(key)
        for choice in value.split(","):
            if choice not in valid and choice != "null":
                raise ConfigError(f"unknown {key} '{choice}': choose one of {', '.join(valid)} (conf/{key}/)")


def report(exc: DfkdError) -> None:
    """Print a user error as one line on stderr."""
    print(f"error: {exc}", file=sys.stderr, flush=True)


def guarded(task):
    """Wrap a Hydra task function: DfkdError -> one line on stderr and exit 2."""

    @functools.wraps(task)
    def wrapper(cfg):
        try:
            return task(OmegaConf.to_container(cfg, resolve=True))
        except DfkdError as exc:
            logging.getLogger("dfkd").debug("user error", exc_info=True)
            report(exc)
            sys.exit(2)

    return wrapper


def main_with_checks(hydra_main) -> None:
    """Run a ``@hydra.main`` function after checking the command line."""
    try:
        check_overrides(sys.argv[1:])
    except DfkdError as exc:
        report(exc)
        sys.exit(2)
    hydra_main()


# -- console scripts (pyproject.toml [project.scripts]): the Hydra entry points with the early checks --
def distill() -> None:
    """``dfkd-distill``: ``python -m dfkd.distill``."""
    from dfkd import distill as module

    main_with_checks(module.main)


def teachers() -> None:
    """``dfkd-teachers``: ``python -m dfkd.teachers``."""
    from dfkd import teachers as module

    main_with_checks(module.main)


def study() -> None:
    """``dfkd-study``: ``python -m dfkd.study``."""
    from dfkd import study as module

    main_with_checks(module.main)
