"""Package layout (the metadata is in pyproject.toml).

The repository keeps ``conf/`` (Hydra configs) and ``experiments/`` (the paper's table and figure
specs) at its top level, beside ``dfkd/``. A wheel maps them into the package as ``dfkd/conf`` and
``dfkd/experiments``, so a non-editable ``pip install .`` carries them; ``dfkd.cli.CONF_DIR`` and
``dfkd.cli.EXPERIMENTS_DIR`` find either layout. This lives in setup.py rather than pyproject.toml
only because pyproject.toml cannot both discover ``dfkd``'s subpackages and add mapped ones.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["dfkd", "dfkd.*"]) + ["dfkd.conf", "dfkd.experiments"],
    package_dir={"dfkd.conf": "conf", "dfkd.experiments": "experiments"},
    package_data={"dfkd.conf": ["**/*.yaml"]},
    include_package_data=False,
)
