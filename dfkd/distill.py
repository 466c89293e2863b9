"""Entry point: distil one cell (or a sweep of cells) of the paper.

    python -m dfkd.distill dataset=pole method=direct alpha=decreasing student=mlp50
    python -m dfkd.distill -m dataset=cpusmall,pole method=direct,generator
    python -m dfkd.distill -m experiment=table3
"""

from __future__ import annotations

import logging

from dfkd.cli import hydra_entry
from dfkd.cell import run_cell
from dfkd.settings import settings_from_dict


def run_config(cfg: dict, log=None) -> dict:
    """Run the cell of a resolved config dict (what ``main`` composes); returns its summary.

    The stable plain-function entry that tests and scripts call instead of Hydra's ``main``.
    """
    return run_cell(settings_from_dict(cfg), log=log or logging.getLogger("dfkd").info)


main, cli = hydra_entry(run_config, "config")  # the `dfkd-distill` command: python -m dfkd.distill

if __name__ == "__main__":
    cli()
