"""Command line: rebuild the paper tables from records, without training.

Usage::

    python -m dfkd.report [--records results/records] [--out results/tables]
                          [--tables table3,table4] [--data-dir data]
    python -m dfkd.report --tables methods,scarce    # the benchmarks (experiments/*.py with BENCHMARK)
    python -m dfkd.report --figures fig7,fig8,fig9,fig10 [--figures-out results/figures]
    python -m dfkd.report --list-datasets table3,table4     # the tables' datasets, comma-separated (Makefile)

A records folder that is missing or holds no readable record is refused (one ``error:`` line, status 2)
and no table or figure is written, so a mistyped ``--records`` never replaces finished tables.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from dfkd.errors import ConfigError, DataError, DfkdError
from dfkd.report.benchmark import load_benchmark_specs, run_counts, write_benchmark
from dfkd.report.records import RecordWarning, load_records
from dfkd.report.tables import fidelity, load_table_specs, render_markdown, summarize, write_table


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line, like every other user error."""

    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")


def _parse(argv):
    parser = _Parser(prog="python -m dfkd.report",
                     description="Rebuild the paper's tables (Markdown and CSV) from distillation records.")
    parser.add_argument("--records", default="results/records", type=Path,
                        help="records root, searched recursively for *.json (default: %(default)s)")
    parser.add_argument("--out", default="results/tables", type=Path,
                        help="output folder for <table>.md and <table>.csv (default: %(default)s)")
    parser.add_argument("--tables", default=None,
                        help="comma-separated table names (default: every experiments/table*.py and every "
                             "benchmark, an experiments/*.py with BENCHMARK: methods, scarce)")
    parser.add_argument("--figures", default=None,
                        help="comma-separated figure names (experiments/fig*.py) to draw instead of tables, "
                             "or 'all'")
    parser.add_argument("--figures-out", default="results/figures", type=Path,
                        help="output folder for figures (default: %(default)s)")
    parser.add_argument("--list-datasets", default=None, metavar="TABLES",
                        help="print the datasets of these tables (comma-separated names, or 'all'), comma-separated, "
                             "and exit")
    parser.add_argument("--data-dir", default="data", type=Path,
                        help="dataset folder, to tell 'not run' from 'data missing' (default: %(default)s)")
    return parser.parse_args(argv)


def _data_status(datasets, data_dir: Path) -> dict[str, bool]:
    """Which datasets have their files; a dataset whose status is unknown is left out."""
    try:
        from dfkd.data import load_spec
    except ImportError:
        return {}
    status = {}
    for name in datasets:
        try:
            status[name] = bool(load_spec(name).available(data_dir))
        except Exception:  # noqa: BLE001
            # The report must not fail on a registry problem; leaving the dataset
            # out makes its empty row read "not run" instead of claiming missing data.
            continue
    return status


def _load(records_root: Path):
    """The records under ``records_root``; refuses (:class:`DataError`) a folder without any, before anything is
    written."""
    # Collect the loader's warnings so each prints as one "warning:" line, not
    # the two-line file:lineno form of the default handler.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RecordWarning)
        df = load_records(records_root)
    for w in caught:
        if issubclass(w.category, RecordWarning):
            print(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if df.empty:
        where = "does not exist" if not records_root.is_dir() else "holds no readable record"
        raise DataError(f"{records_root} {where}: produce records with `make table3` / `make table4` (full protocol) "
                        "or `make quick` (reduced budget), or pass --records <folder of records> (the committed run: "
                        "--records results/reference/records); no table or figure was written")
    return df


def run_figures(args) -> int:
    """Draw the requested figures from records; return the exit status."""
    from dfkd.report.figures import load_figure_specs, write_figure

    specs = load_figure_specs()
    names = list(specs) if args.figures.strip() == "all" else [n.strip() for n in args.figures.split(",") if n.strip()]
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise ConfigError(f"unknown figure {', '.join(unknown)}; known: {', '.join(specs)}")
    df = _load(args.records)
    for name in names:
        paths, n = write_figure(df, specs[name], args.figures_out)
        total = len(specs[name]["columns"])
        make = "make table4" if specs[name]["kind"] == "trace_curves" else "make table5"
        note = "" if n == total else f" ({total - n} of {total} methods not run: produce records with `make quick` " \
                                     f"or `{make}`)"
        print(f"{name}: {n} of {total} methods drawn{note} -> {', '.join(map(str, paths))}")
    return 0


def _table_names(specs: dict, requested: str | None) -> list[str]:
    """The tables named in ``requested`` (comma-separated; None or 'all': every one), checked against ``specs``."""
    if not requested or requested.strip() == "all":
        return list(specs)
    names = [n.strip() for n in requested.split(",") if n.strip()]
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise ConfigError(f"unknown table {', '.join(unknown)}; known: {', '.join(specs)}")
    return names


def list_datasets(specs: dict, names: list[str]) -> list[str]:
    """The datasets of the tables ``names``, each once, in the order their specs list them."""
    out = []
    for name in names:
        out += [d for d in specs[name]["datasets"] if d not in out]
    return out


def run(args) -> int:
    """Build and write the requested tables; return the exit status."""
    if getattr(args, "list_datasets", None):
        specs = {**load_table_specs(), **load_benchmark_specs()}
        print(",".join(list_datasets(specs, _table_names(specs, args.list_datasets))))
        return 0
    if getattr(args, "figures", None):
        return run_figures(args)
    tables, benchmarks = load_table_specs(), load_benchmark_specs()
    specs = {**tables, **benchmarks}
    if not specs:
        raise ConfigError("no table specs found in experiments/table*.py")
    names = _table_names(specs, args.tables)

    df = _load(args.records)

    datasets = sorted({d for n in names for d in specs[n]["datasets"]})
    status = _data_status(datasets, args.data_dir)
    for name in names:
        spec = specs[name]
        if name in benchmarks:
            md_path, csv_path, result = write_benchmark(df, spec, args.out, status)
            n_run, n_cells = run_counts(result)
            print(f"{name}: {n_run} of {n_cells} cells run -> {md_path}, {csv_path}")
            continue
        summary = summarize(df, spec)
        md_path, csv_path = write_table(render_markdown(summary, spec, status), summary, args.out, name)
        fid = fidelity(summary)
        if fid["n_run"] == 0:
            line = f"{name}: no cells run ({fid['n_cells']} not run)"
        else:
            line = (f"{name}: {fid['within']} of {fid['n_run']} run cells within 2 paper stds "
                    f"({fid['n_cells'] - fid['n_run']} of {fid['n_cells']} not run)")
        print(f"{line} -> {md_path}, {csv_path}")
    return 0


def main(argv=None) -> int:
    """Entry point; user mistakes print one ``error:`` line and return 2."""
    args = _parse(argv)
    try:
        return run(args)
    except DfkdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
