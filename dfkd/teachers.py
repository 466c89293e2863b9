"""Entry point: train (or verify the cache of) the teachers of one dataset or a sweep.

    python -m dfkd.teachers dataset=pole
    python -m dfkd.teachers -m dataset=indoorloc,pole,mv hydra/launcher=local
"""

from __future__ import annotations

import logging

import hydra

from dfkd.cli import CONF_PATH, guarded, main_with_checks
from dfkd.cell import run_teachers
from dfkd.settings import settings_from_dict


@hydra.main(config_path=CONF_PATH, config_name="config", version_base="1.3")
@guarded
def main(cfg: dict):
    """Train or load every seed's teacher for the selected dataset."""
    return run_teachers(settings_from_dict(cfg), log=logging.getLogger("dfkd").info)


def cli() -> None:
    """The ``dfkd-teachers`` command: ``python -m dfkd.teachers`` (the command line is checked before Hydra sees it)."""
    main_with_checks(main)


if __name__ == "__main__":
    cli()
