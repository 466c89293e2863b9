"""Where the shipped configs and experiment specs are, in a source checkout and in an installed wheel."""

from __future__ import annotations

from pathlib import Path


def _shipped(name: str) -> Path:
    """A top-level folder of the repository (``conf``, ``experiments``), wherever dfkd is installed.

    A wheel carries it inside the package (``dfkd/<name>``, mapped by setup.py); a source
    checkout or an editable install has it beside the package.
    """
    package = Path(__file__).resolve().parents[1]
    inside = package / name
    return inside if inside.is_dir() else package.parent / name


CONF_DIR = _shipped("conf")  # the Hydra configs: every entry point's config_path
EXPERIMENTS_DIR = _shipped("experiments")  # the paper's table and figure specs (dfkd.report)
