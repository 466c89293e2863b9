"""Entry point: distil one cell (or a sweep of cells) of the paper.

    python -m dfkd.distill dataset=pole method=direct alpha=decreasing student=mlp50
    python -m dfkd.distill -m dataset=cpusmall,pole method=direct,generator
    python -m dfkd.distill -m experiment=table3
"""

from __future__ import annotations

import logging

import hydra

from dfkd.cli import CONF_PATH, guarded, main_with_checks
from dfkd.cell import run_cell
from dfkd.settings import settings_from_dict


def run_config(cfg: dict, log=None) -> dict:
    """Run the cell of a resolved config dict (what ``main`` composes); returns its summary.

    The stable plain-function entry that tests and scripts call instead of Hydra's ``main``.
    """
    return run_cell(settings_from_dict(cfg), log=log or logging.getLogger("dfkd").info)


@hydra.main(config_path=CONF_PATH, config_name="config", version_base="1.3")
@guarded
def main(cfg: dict):
    """Validate the composed config and run the cell; returns its summary."""
    return run_config(cfg)


def cli() -> None:
    """The ``dfkd-distill`` command: ``python -m dfkd.distill`` (the command line is checked before Hydra sees it)."""
    main_with_checks(main)


if __name__ == "__main__":
    cli()
