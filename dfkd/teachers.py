"""Entry point: train (or verify the cache of) the teachers of one dataset or a sweep.

    python -m dfkd.teachers dataset=pole
    python -m dfkd.teachers -m dataset=indoorloc,pole,mv hydra/launcher=local
"""

from __future__ import annotations

import logging

from dfkd.cli import hydra_entry
from dfkd.cell import run_teachers
from dfkd.settings import settings_from_dict


def run(cfg: dict) -> dict:
    """Train or load every seed's teacher for the selected dataset."""
    return run_teachers(settings_from_dict(cfg), log=logging.getLogger("dfkd").info)


main, cli = hydra_entry(run, "config")  # the `dfkd-teachers` command: python -m dfkd.teachers

if __name__ == "__main__":
    cli()
