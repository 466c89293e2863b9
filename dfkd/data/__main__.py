"""Install and verify the registered datasets: ``python -m dfkd.data``.

``make data`` runs this. Files come from a mirror folder when one is given
(``--mirror`` or $DFKD_DATA_MIRROR), else from their canonical URLs. A dataset
that cannot be had (CTScan on an offline machine) is reported in one line and
does not fail the command unless ``--strict``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dfkd.data.fetch import MIRROR_ENV, install_dataset, resolve_mirror
from dfkd.data.registry import list_datasets, load_spec
from dfkd.errors import DataMissingError, DfkdError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dfkd.data",
        description="Install and verify the data files of the registered datasets (conf/dataset/*.yaml).")
    p.add_argument("--mirror", default=None,
                   help=f"folder laid out like the data dir to copy files from (default: ${MIRROR_ENV}; "
                        "an empty string means none)")
    p.add_argument("--data-dir", default="data", help="where to install the files (default: data)")
    p.add_argument("--datasets", default=None,
                   help="comma-separated dataset names (default: every registered dataset)")
    p.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                   help="download files that no mirror has from their canonical URLs (default: on)")
    p.add_argument("--strict", action="store_true", help="fail (exit 2) if any dataset stays missing")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no download progress bars")
    return p


def run(mirror: str | None, data_dir: str, datasets: Sequence[str] | None, download: bool,
        strict: bool, progress: bool = True) -> int:
    """Installs and verifies datasets, printing one line per file and a summary.

    Args:
        mirror: Mirror folder, None for $DFKD_DATA_MIRROR, "" for none.
        data_dir: The data directory.
        datasets: Names to process; None means all registered datasets.
        download: Whether files may be downloaded from their URLs.
        strict: Whether a missing dataset is an error.
        progress: Show download progress bars.

    Returns:
        The exit status, 0.

    Raises:
        DfkdError: On an unknown dataset, a bad mirror, a checksum mismatch,
            or (with ``strict``) a missing dataset.
    """
    names = list(datasets) if datasets else list_datasets()
    specs = [load_spec(n) for n in names]
    mirror_dir = resolve_mirror(mirror)
    print(f"data dir {data_dir}; mirror {mirror_dir or 'none'}; downloads {'on' if download else 'off'}")
    missing = []
    for spec in specs:
        statuses = install_dataset(spec, data_dir, mirror_dir if mirror_dir is not None else "",
                                   allow_download=download, progress=progress)
        for s in statuses:
            if s.state == "missing":
                print(f"missing    {s.message}")
            elif s.state == "installed":
                print(f"installed  {s.path}  (from {s.source})")
            else:
                print(f"ok         {s.path}" + ("" if s.sha256 else "  (no pinned sha256)"))
        if any(s.state == "missing" for s in statuses):
            missing.append(spec.name)
    ready = len(specs) - len(missing)
    summary = f"{ready} of {len(specs)} datasets ready in {data_dir}"
    if missing:
        summary += f"; missing: {', '.join(missing)} (their runs are skipped; see the lines above)"
    print(summary)
    if missing and strict:
        raise DataMissingError(f"--strict: datasets missing: {', '.join(missing)} (see the lines above)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on a user-fixable error)."""
    args = _parser().parse_args(argv)
    datasets = [n.strip() for n in args.datasets.split(",") if n.strip()] if args.datasets else None
    try:
        return run(args.mirror, args.data_dir, datasets, args.download, args.strict, args.progress)
    except DfkdError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
