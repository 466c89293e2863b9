"""Aggregate records into paper tables and render them as Markdown and CSV.

A *table spec* is the ``TABLE`` dict of an ``experiments/table*.py`` module: ``name``, ``title``,
``student``, ``datasets`` and ``columns``, a list with one dict per column:

- ``variant``: the column's one name, ``<method>-<alpha label>`` (``direct-1``, ``de-0.5``): the config's
  ``variant=<name>`` (``conf/variant/<name>.yaml``), the records' ``variant`` field and their folder;
  None for the teacher column;
- ``label``: the table header (and the figures' legend);
- ``paper``: the paper's numbers, ``{dataset: (mean, std or None)}``; for a spec with ``metrics``
  ``{dataset: {metric label: (mean, std or None)}}``;
- optionally ``color`` and ``dash``: its line in trace figures (``dfkd.report.figures``).

Optionally ``metric`` (default ``"test_rmse"``), ``teacher_metric`` (default ``"teacher_" + metric``),
``last_metric`` (default ``"test_rmse_last"``), ``claims`` (SPEC section 5: ``dict(kind="beats" | "degrades",
a=variant, b=variant, text=..., spec=the paper's wording)``), ``note``, and ``metrics``: a list of
``(label, record field)``, e.g. Table 5's MAE and RMSE, for one row per metric instead of per dataset.
``extra_fields``, a list of ``(label, record field)``, are shown as the mean per cell in a section of
their own (Table 6: the teacher queries per run).
"""

from __future__ import annotations

import importlib.util
import re
import sys
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from dfkd.errors import ConfigError

#: Columns of the long-form summary (and of the CSV), in order.
SUMMARY_COLUMNS = [
    "dataset", "column", "variant", "n_ok", "n_failed", "mean", "std",
    "paper_mean", "paper_std", "z", "last_mean", "last_std",
]

#: |z| above which a cell is flagged as far from the paper.
Z_FLAG = 2.0

_TEACHER = "teacher"
_REQUIRED_KEYS = ("name", "title", "student", "columns", "datasets")
_CLAIM_KINDS = ("beats", "degrades")

# --------------------------------------------------------------------------- specs

def validate_spec(spec: dict, origin: str = "table spec") -> dict:
    """Check a table spec's shape; raise :class:`ConfigError` naming ``origin`` if wrong.

    Args:
        spec: The ``TABLE`` dict.
        origin: Where it came from, for the error message.

    Returns:
        The same dict.
    """
    if not isinstance(spec, dict):
        raise ConfigError(f"{origin}: TABLE must be a dict, got {type(spec).__name__}")
    missing = [k for k in _REQUIRED_KEYS if k not in spec]
    if missing:
        raise ConfigError(f"{origin}: TABLE lacks {', '.join(missing)}")
    validate_columns(spec["columns"], origin, datasets=spec["datasets"])
    variants = set(variant_names(spec))
    for claim in spec.get("claims", []):
        if claim.get("kind") not in _CLAIM_KINDS or not {"a", "b", "text", "spec"} <= set(claim):
            raise ConfigError(f"{origin}: each claim needs kind ({' or '.join(_CLAIM_KINDS)}), a, b, text and spec, "
                              f"got {claim!r}")
        unknown = [v for v in (claim["a"], claim["b"]) if v not in variants]
        if unknown:
            raise ConfigError(f"{origin}: claim {claim['text']!r} names {', '.join(unknown)}, not a column's variant "
                              f"(columns: {', '.join(sorted(variants))})")
    return spec


def validate_columns(columns, origin: str, datasets=None) -> None:
    """Check that ``columns`` is a list of column dicts (``variant``, ``label``; optional ``paper``, ``color``,
    ``dash``) with distinct labels and variants, whose paper numbers name only ``datasets``."""
    if not isinstance(columns, (list, tuple)) or not columns:
        raise ConfigError(f"{origin}: columns must be a non-empty list of dict(variant=..., label=...)")
    for col in columns:
        if not (isinstance(col, dict) and "variant" in col and isinstance(col.get("label"), str)):
            raise ConfigError(f"{origin}: each column must be dict(variant=<method>-<alpha> or None, label=..., "
                              f"paper=..., color=..., dash=...), got {col!r}")
        if datasets is not None:
            extra = [d for d in col.get("paper", {}) if d not in datasets]
            if extra:
                raise ConfigError(f"{origin}: column {col['label']!r} has paper numbers for {', '.join(extra)}, "
                                  f"not among the datasets {', '.join(datasets)}")
    for key in ("label", "variant"):
        names = [col[key] for col in columns if col[key] is not None]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"{origin}: two columns share the {key} {', '.join(map(str, twice))}")


def pairs(spec: dict) -> list[tuple[str, str | None]]:
    """``(label, variant)`` of each column of a table or figure spec, in order."""
    return [(col["label"], col["variant"]) for col in spec["columns"]]


def variant_names(spec: dict) -> list[str]:
    """The variants (``<method>-<alpha label>``) of a spec's columns, in order, without the teacher."""
    return [col["variant"] for col in spec["columns"] if col["variant"] is not None]


def _paper(col: dict, dataset: str, metric: str | None = None) -> tuple[float, float]:
    """The paper's (mean, std) of one column and dataset (and metric); NaN where the paper gives none."""
    cell = col.get("paper", {}).get(dataset)
    if metric is not None and cell is not None:
        cell = cell.get(metric)
    if cell is None:
        return math.nan, math.nan
    mean, std = cell
    return float(mean), math.nan if std is None else float(std)


def load_experiment_objects(pattern: str, attr: str, experiments_dir=None) -> list[tuple[Path, dict]]:
    """``(path, module.<attr>)`` for every ``experiments/<pattern>`` file that defines ``attr``.

    Each module is loaded from its file (the folder need not be importable;
    its parent goes on ``sys.path`` so artefact files can share helpers such as
    ``experiments/_tabular.py``) under a private module name that keeps these
    data files out of ``sys.modules``' namespace; modules without ``attr`` are skipped.

    Args:
        experiments_dir: Folder to scan; default ``experiments/`` at the
            repository root (beside the ``dfkd`` package).
    """
    if experiments_dir is None:
        from dfkd.core.paths import EXPERIMENTS_DIR

        experiments_dir = EXPERIMENTS_DIR
    experiments_dir = Path(experiments_dir)
    _register_experiments_package(experiments_dir)
    found = []
    for path in sorted(experiments_dir.glob(pattern)):
        mod_spec = importlib.util.spec_from_file_location(f"_dfkd_experiment_{path.stem}", path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
        obj = getattr(module, attr, None)
        if obj is not None:
            found.append((path, obj))
    return found


def _register_experiments_package(folder: Path) -> None:
    """Make ``import experiments.<x>`` (the specs' shared helpers) resolve to ``folder`` without putting its
    parent on ``sys.path`` (in a wheel that parent is the dfkd package, whose subpackages must not become
    top-level names)."""
    current = sys.modules.get("experiments")
    if current is not None and Path(getattr(current, "__path__", [""])[0]).resolve() == folder.resolve():
        return
    init = folder / "__init__.py"
    spec = importlib.util.spec_from_file_location("experiments", init, submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["experiments"] = module
    spec.loader.exec_module(module)
    for name in [n for n in sys.modules if n.startswith("experiments.")]:
        del sys.modules[name]  # helpers of another folder (tests load fabricated specs) are re-read


def natural_key(name: str) -> list:
    """Sort key that orders numbered names by number: fig5, fig9, fig10 (not fig10, fig5, fig9)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def load_table_specs(experiments_dir=None) -> dict[str, dict]:
    """The ``TABLE`` specs of ``experiments/table*.py``, validated, as ``{name: spec}`` sorted by name."""
    specs = {}
    for path, table in load_experiment_objects("table*.py", "TABLE", experiments_dir):
        validate_spec(table, origin=str(path))
        specs[table["name"]] = table
    return {name: specs[name] for name in sorted(specs, key=natural_key)}


# ----------------------------------------------------------------------- summarize

def _table_rows(df: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """Records belonging to this table: distillation runs of its student and datasets."""
    if df.empty:
        return df
    kind = df["kind"]
    mask = (kind.isna() | (kind == "distill")) & (df["student"] == spec["student"])
    return df[mask & df["dataset"].isin(spec["datasets"])]


def _latest_per_run(rows: pd.DataFrame) -> pd.DataFrame:
    """Keep the newest record per (dataset, student, variant, seed).

    A rerun of a failed or stale seed writes a newer record; counting both
    would show "n=10, 1 failed" for a seed that has since succeeded.
    """
    if rows.empty:
        return rows
    order = rows.assign(_created=rows["created"].fillna("").astype(str)).sort_values(["_created", "path"])
    return order.drop_duplicates(["dataset", "student", "variant", "seed"], keep="last").drop(columns="_created")


def _finite(series: pd.Series) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce").astype(float)
    return values.where(np.isfinite(values))


def _mean_std(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return math.nan, math.nan
    # Population std (ddof 0): the paper's convention, so z compares like with like.
    return float(values.mean()), float(values.std(ddof=0))


def summarize(df: pd.DataFrame, table_spec: dict) -> pd.DataFrame:
    """Aggregate records into one row per (dataset, column) of a table.

    Only records of the table's student, datasets and kind ``distill`` count.
    Per (dataset, student, variant, seed) the newest record wins. For a variant
    column, records with status ``ok`` and a finite metric are averaged and
    every other record counts as failed. The Teacher column takes one value
    per distinct seed (the teacher is shared by all variants of a seed).

    Args:
        df: Output of :func:`dfkd.report.load_records`.
        table_spec: A ``TABLE`` dict.

    Returns:
        Long form with :data:`SUMMARY_COLUMNS`: ``mean``/``std`` (population)
        of the metric, the paper's ``paper_mean``/``paper_std``,
        ``z = (mean - paper_mean) / paper_std``, and ``last_mean``/``last_std``
        of the last-epoch student (SPEC section 6). ``attrs["source"]`` holds
        provenance for :func:`render_markdown`.
    """
    spec = validate_spec(table_spec)
    if spec.get("metrics"):
        return _summarize_metrics(df, spec)
    return _summarize(df, spec)


def _summarize(df: pd.DataFrame, spec: dict, paper_metric: str | None = None) -> pd.DataFrame:
    """:func:`summarize` of one metric; ``paper_metric``: the metric label whose paper numbers to show."""
    metric = spec.get("metric", "test_rmse")
    teacher_metric = spec.get("teacher_metric", f"teacher_{metric}")
    last_metric = spec.get("last_metric", "test_rmse_last")

    rows = _table_rows(df, spec)
    n_found = len(rows)
    rows = _latest_per_run(rows)
    extra_fields = [field for _, field in spec.get("extra_fields", [])]

    out = []
    for dataset in spec["datasets"]:
        d = rows[rows["dataset"] == dataset] if not rows.empty else rows
        for col in spec["columns"]:
            label, variant = col["label"], col["variant"]
            last_values, extras = [], {f: math.nan for f in extra_fields}
            if variant is None:
                if d.empty:
                    values, n_failed = [], 0
                else:
                    per_seed = _finite(d[teacher_metric]).groupby(d["seed"]).mean()
                    values = per_seed.dropna().to_numpy()
                    n_failed = int(per_seed.isna().sum())
            else:
                v = d[d["variant"] == variant] if not d.empty else d
                if v.empty:
                    values, n_failed = [], 0
                else:
                    metric_values = _finite(v[metric])
                    good = (v["status"] == "ok") & metric_values.notna()
                    values = metric_values[good].to_numpy()
                    n_failed = int((~good).sum())
                    last_values = _finite(v.loc[good, last_metric]).dropna().to_numpy() \
                        if last_metric in v.columns else []
                    for f in extra_fields:
                        if f in v.columns and good.any():
                            extras[f] = float(_finite(v.loc[good, f]).mean())
            mean, std = _mean_std(values)
            last_mean, last_std = _mean_std(last_values)
            paper_mean, paper_std = _paper(col, dataset, paper_metric)
            z = (mean - paper_mean) / paper_std if paper_std and paper_std > 0 else math.nan
            out.append(dict(
                dataset=dataset, column=label, variant=_TEACHER if variant is None else variant,
                n_ok=len(values), n_failed=n_failed, mean=mean, std=std,
                paper_mean=float(paper_mean), paper_std=float(paper_std),
                z=float(z) if math.isfinite(z) else math.nan,
                last_mean=last_mean, last_std=last_std, **extras,
            ))
    summary = pd.DataFrame(out, columns=SUMMARY_COLUMNS + [f for f in extra_fields if f not in SUMMARY_COLUMNS])

    def _distinct(col):
        if rows.empty or col not in rows.columns:
            return []
        return sorted({str(x) for x in rows[col].dropna()})

    summary.attrs["source"] = dict(
        root=df.attrs.get("root"),
        n_total=len(df),
        n_records=len(rows),
        n_superseded=n_found - len(rows),
        n_skipped=len(df.attrs.get("skipped", [])),
        experiments=_distinct("experiment"),
        epochs=_distinct("epochs"),
        student=spec["student"],
    )
    return summary


def _summarize_metrics(df: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """:func:`summarize` once per metric of a multi-metric spec, stacked with a ``metric`` column."""
    parts = []
    for label, field in spec["metrics"]:
        one = {k: v for k, v in spec.items() if k not in ("metrics", "claims")}
        one.update(metric=field, teacher_metric=f"teacher_{field}", last_metric=f"{field}_last")
        part = _summarize(df, one, paper_metric=label)
        part.insert(1, "metric", label)
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out.attrs["source"] = parts[0].attrs.get("source", {})
    return out


# ------------------------------------------------------------- fidelity and claims

def fidelity(summary: pd.DataFrame, threshold: float = Z_FLAG) -> dict:
    """How many run cells lie within ``threshold`` paper stds of the paper's mean.

    Args:
        summary: Output of :func:`summarize`.
        threshold: Allowed |z|.

    Returns:
        ``dict(within, n_run, n_cells, outside)``; ``outside`` lists
        ``(dataset, column, z)``. Cells count as run when they have a z; a
        cell without a positive paper std (a teacher the paper printed as a
        single value, Tables 5 and 6) can have no z and is not counted at all.
    """
    run = summary[summary["z"].notna()]
    outside_rows = run[run["z"].abs() > threshold]
    return dict(
        within=int(len(run) - len(outside_rows)),
        n_run=int(len(run)),
        n_cells=int((summary["paper_std"] > 0).sum()),
        outside=[(r.dataset, r.column, float(r.z)) for r in outside_rows.itertuples()],
    )


def _compare(pairs, kind):
    """Count wins (beats) or degradations, and the median relative change in percent."""
    if not pairs:
        return 0, math.nan
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    k = int(np.sum(a < b)) if kind == "beats" else int(np.sum(a > b))
    return k, float(np.median((a - b) / b * 100.0))


def evaluate_claims(summary: pd.DataFrame, table_spec: dict) -> list[dict]:
    """Evaluate the SPEC section 5 claims on our numbers and on the paper's.

    A claim is skipped when the table lacks one of its two variants. Ours
    are counted over the datasets where both variants were run; the paper's
    over the same datasets (``paper_k``) and over all its datasets
    (``paper_k_all`` of ``paper_n_all``).

    Args:
        summary: Output of :func:`summarize`.
        table_spec: The same table spec.

    Returns:
        One dict per claim: ``text``, ``kind``, ``a``, ``b``, ``spec`` (the
        paper's wording), ``datasets`` (run), ``n``, ``k``, ``median_pct``,
        ``paper_k``, ``paper_median_pct``, ``paper_k_all``, ``paper_n_all``,
        ``paper_median_pct_all``. ``k`` counts a < b for "beats" and a > b for
        "degrades"; medians are of (a - b) / b in percent.
    """
    variants = set(variant_names(table_spec))
    results = []
    for claim in table_spec.get("claims", []):
        if claim["a"] not in variants or claim["b"] not in variants:
            continue
        by = summary.set_index(["dataset", "variant"])
        ours, paper_same, paper_all, run = [], [], [], []
        for dataset in table_spec["datasets"]:
            ra, rb = by.loc[(dataset, claim["a"])], by.loc[(dataset, claim["b"])]
            has_paper = np.isfinite([ra.paper_mean, rb.paper_mean]).all()
            if has_paper:
                paper_all.append((ra.paper_mean, rb.paper_mean))
            if ra.n_ok > 0 and rb.n_ok > 0:
                run.append(dataset)
                ours.append((ra["mean"], rb["mean"]))
                if has_paper:
                    paper_same.append((ra.paper_mean, rb.paper_mean))
        k, med = _compare(ours, claim["kind"])
        pk, pmed = _compare(paper_same, claim["kind"])
        pk_all, pmed_all = _compare(paper_all, claim["kind"])
        results.append(dict(
            claim, datasets=run, n=len(ours), k=k, median_pct=med,
            paper_k=pk, paper_n=len(paper_same), paper_median_pct=pmed,
            paper_k_all=pk_all, paper_n_all=len(paper_all), paper_median_pct_all=pmed_all,
        ))
    return results


# -------------------------------------------------------------------------- render

def _num(x: float) -> str:
    return f"{x:.4f}"


def _paper_num(x: float) -> str:
    # Four decimals like the paper, but never drop a digit it printed (0.15534).
    x = float(x)  # a numpy scalar's repr would print np.float64(...)
    s = f"{x:.4f}"
    return s if float(s) == x else repr(x)


def _pct(x: float) -> str:
    return f"{x:+.1f} %" if math.isfinite(x) else "n/a"


def _describe_experiments(labels: list[str]) -> str:
    if not labels:
        return "none"
    parts = []
    for label in labels:
        if label == "quick":
            parts.append("quick: reduced budget, not comparable to the paper")
        else:
            parts.append(label)
    return "; ".join(parts)


def _cell(row, not_run_text: str) -> str:
    if row.n_ok > 0:
        n = f"{row.n_ok}, {row.n_failed} failed" if row.n_failed else f"{row.n_ok}"
        ours = f"{_num(row['mean'])} ± {_num(row['std'])} ({n})"
    elif row.n_failed > 0:
        ours = f"all {row.n_failed} failed"
    else:
        ours = not_run_text
    if not math.isfinite(row.paper_mean):
        return ours
    if not math.isfinite(row.paper_std):  # the paper printed a single value (a teacher): no std, no z
        return f"{ours}<br>paper {_paper_num(row.paper_mean)}"
    paper = f"paper {_paper_num(row.paper_mean)} ± {_paper_num(row.paper_std)}"
    if math.isfinite(row.z):
        # "or 0.0" turns a rounded -0.0 into +0.0, which reads as agreement.
        z = f"{(round(row.z, 1) or 0.0):+.1f}σ"
        if abs(row.z) > Z_FLAG:
            z = f"**{z}** ⚠"
        paper += f" · {z}"
    return f"{ours}<br>{paper}"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def render_markdown(summary: pd.DataFrame, table_spec: dict, data_status: dict[str, bool],
                    source: dict | None = None) -> str:
    """Render a summarized table, its fidelity, the claims and the §6 comparison.

    Args:
        summary: Output of :func:`summarize`.
        table_spec: The same table spec.
        data_status: ``{dataset: data available}``; a dataset absent from it
            counts as available. Decides "not run (data missing)" against
            "not run" for datasets without any record.
        source: Provenance (records root, counts, experiment labels); default
            ``summary.attrs["source"]``.

    Returns:
        Markdown text ending in a newline.
    """
    spec = table_spec
    source = source if source is not None else summary.attrs.get("source", {})
    if spec.get("metrics"):
        return _render_metrics(summary, spec, data_status, source)
    by = summary.set_index(["dataset", "column"])

    lines = [f"# {spec['title']}", ""] + _source_lines(spec, source)
    lines += [
        "",
        "Each cell: our mean ± population std (seeds run) over the paper's mean ± std, and our "
        f"difference in paper stds; **bold** ⚠ where it exceeds {Z_FLAG:g}σ.",
        "",
    ]

    header = ["Dataset"] + [label for label, _ in pairs(spec)]
    body = []
    for dataset in spec["datasets"]:
        d = summary[summary["dataset"] == dataset]
        not_run = _not_run_text(d, data_status.get(dataset, True))
        body.append([dataset] + [_cell(by.loc[(dataset, label)], not_run) for label, _ in pairs(spec)])
    lines += _md_table(header, body)

    fid = fidelity(summary)
    lines += ["", _fidelity_line(fid, [f"{ds} / {col} ({z:+.1f}σ)" for ds, col, z in fid["outside"]])]

    for label, field in spec.get("extra_fields", []):
        lines += ["", f"## {label}", "", f"Mean of `{field}` over the runs of each cell.", ""]
        variant_cols = [(lab, v) for lab, v in pairs(spec) if v is not None]
        rows = []
        for dataset in spec["datasets"]:
            cells = []
            for lab, _ in variant_cols:
                value = by.loc[(dataset, lab)][field] if field in summary.columns else math.nan
                cells.append(f"{value:,.0f}" if math.isfinite(value) else "–")
            rows.append([dataset] + cells)
        lines += _md_table(["Dataset"] + [lab for lab, _ in variant_cols], rows)

    claims = evaluate_claims(summary, spec)
    if claims:
        lines += ["", "## Claims (SPEC section 5)", ""]
        for c in claims:
            lines.append(f"- {_claim_line(c)}")

    lines += _datafree_header("Mean test RMSE over the seeds run")
    variant_cols = [(label, v) for label, v in pairs(spec) if v is not None]
    rows = []
    for dataset in spec["datasets"]:
        row = [dataset]
        for label, _ in variant_cols:
            r = by.loc[(dataset, label)]
            row.append(_datafree_cell(r))
        rows.append(row)
    lines += _md_table(["Dataset"] + [label for label, _ in variant_cols], rows)
    return "\n".join(lines) + "\n"


def _datafree_header(what: str) -> list[str]:
    """The heading and explanation of the SPEC section 6 comparison."""
    return ["", "## Data-free checkpoint selection (SPEC §6)", "",
            "The published protocol picks the student checkpoint on real validation labels "
            f"(best-validation); the last-epoch student uses no real data. {what}: "
            "best-validation / last epoch (relative change of last vs best).", ""]


def _datafree_cell(r) -> str:
    """``best / last (change)`` for one summary row; dashes where a value is missing."""
    if r.n_ok == 0:
        return "–"
    if not math.isfinite(r.last_mean):
        return f"{_num(r['mean'])} / –"
    rel = (r.last_mean - r["mean"]) / r["mean"] * 100.0
    return f"{_num(r['mean'])} / {_num(r.last_mean)} ({_pct(rel)})"


def _source_lines(spec: dict, source: dict) -> list[str]:
    root = source.get("root") or "?"
    if source.get("n_records", 0) == 0:
        return [f"Source: no records for student {spec['student']} under `{root}`; every cell is not run. "
                f"Produce records with `make {spec['name']}` (full protocol) or `make quick` (reduced budget), "
                "then `python -m dfkd.report`."]
    extras = []
    if source.get("epochs"):
        extras.append(f"configured epochs {', '.join(source['epochs'])}")
    if source.get("n_superseded"):
        extras.append(f"{source['n_superseded']} older records superseded by reruns")
    if source.get("n_skipped"):
        extras.append(f"{source['n_skipped']} unreadable files skipped")
    lines = [f"Source: {source['n_records']} records for student {spec['student']} "
             f"(of {source.get('n_total', '?')}) under `{root}`; experiment: "
             f"{_describe_experiments(source.get('experiments', []))}"
             + (f" ({'; '.join(extras)})" if extras else "") + "."]
    if "quick" in source.get("experiments", []):
        lines += ["", "> **quick: reduced budget, not comparable to the paper.**"]
    return lines


def _metric_cell(row, not_run_text: str) -> str:
    if math.isfinite(row.paper_mean) and not math.isfinite(row.paper_std):
        # The paper printed a single value (its teacher): no std, so no difference in stds.
        bare = row.copy()
        bare["paper_mean"] = math.nan
        return _cell(bare, not_run_text) + f"<br>paper {_paper_num(row.paper_mean)}"
    return _cell(row, not_run_text)


def _render_metrics(summary: pd.DataFrame, spec: dict, data_status: dict[str, bool], source: dict) -> str:
    """Markdown of a multi-metric table (one row per metric, as paper Table 5)."""
    lines = [f"# {spec['title']}", ""] + _source_lines(spec, source)
    lines += ["", "Each cell: our mean ± population std (runs) over the paper's mean ± std, and our difference in "
              f"paper stds; **bold** ⚠ where it exceeds {Z_FLAG:g}σ."]
    if spec.get("note"):
        lines += ["", spec["note"]]
    lines.append("")
    multi = len(spec["datasets"]) > 1
    header = (["Dataset"] if multi else []) + ["Metric"] + [label for label, _ in pairs(spec)]
    body = []
    for dataset in spec["datasets"]:
        for metric, _ in spec["metrics"]:
            d = summary[(summary["dataset"] == dataset) & (summary["metric"] == metric)]
            not_run = _not_run_text(d, data_status.get(dataset, True))
            by = d.set_index("column")
            cells = [_metric_cell(by.loc[label], not_run) for label, _ in pairs(spec)]
            body.append(([dataset] if multi else []) + [metric] + cells)
    lines += _md_table(header, body)

    fid = fidelity(summary)
    outside = []
    if fid["outside"]:
        rows = summary.set_index(["dataset", "column", "metric"])
        outside = [f"{m} / {col} ({float(rows.loc[(ds, col, m)].z):+.1f}σ)" for ds, col, m in rows.index
                   if math.isfinite(rows.loc[(ds, col, m)].z) and abs(rows.loc[(ds, col, m)].z) > Z_FLAG]
    lines += ["", _fidelity_line(fid, outside, none="no cells with a paper std run",
                                 not_run="not run or without a paper std")]

    if spec.get("claims"):
        lines += ["", "## Claims (SPEC section 5)", ""]
        for claim in spec["claims"]:
            for metric, _ in spec["metrics"]:
                for dataset in spec["datasets"]:
                    d = summary[(summary["dataset"] == dataset) & (summary["metric"] == metric)].set_index("variant")
                    ra, rb = d.loc[claim["a"]], d.loc[claim["b"]]
                    paper = "beats" if ra.paper_mean < rb.paper_mean else "does not beat"
                    paper_txt = (f"paper {_paper_num(ra.paper_mean)} against {_paper_num(rb.paper_mean)} "
                                 f"({_pct((ra.paper_mean - rb.paper_mean) / rb.paper_mean * 100)}: {paper})")
                    if ra.n_ok == 0 or rb.n_ok == 0:
                        ours = "not evaluated, a column is not run"
                    else:
                        verdict = "holds" if ra["mean"] < rb["mean"] else "does not hold"
                        ours = (f"ours {_num(ra['mean'])} against {_num(rb['mean'])} "
                                f"({_pct((ra['mean'] - rb['mean']) / rb['mean'] * 100)}): {verdict}")
                    where = f"{dataset}, " if multi else ""
                    lines.append(f"- {claim['text']} (SPEC §5: {claim['spec']}), {where}{metric}: {ours}; {paper_txt}.")

    lines += _datafree_header("Mean over the runs")
    variant_cols = [(label, v) for label, v in pairs(spec) if v is not None]
    rows = []
    for dataset in spec["datasets"]:
        for metric, _ in spec["metrics"]:
            d = summary[(summary["dataset"] == dataset) & (summary["metric"] == metric)].set_index("column")
            row = ([dataset] if multi else []) + [metric]
            for label, _ in variant_cols:
                r = d.loc[label]
                row.append(_datafree_cell(r))
            rows.append(row)
    lines += _md_table((["Dataset"] if multi else []) + ["Metric"] + [label for label, _ in variant_cols], rows)
    return "\n".join(lines) + "\n"


def _not_run_text(rows: pd.DataFrame, data_available: bool) -> str:
    """What an empty cell of a dataset says: "not run (data missing)" when none of the dataset's ``rows``
    (summary rows) has a record and its data file is known to be absent, else "not run"."""
    no_records = int((rows["n_ok"] + rows["n_failed"]).sum()) == 0
    return "not run (data missing)" if no_records and data_available is False else "not run"


def _fidelity_line(fid: dict, outside: list[str], none: str = "no cells run", not_run: str = "not run") -> str:
    """The table's one-line fidelity summary; ``outside`` names the cells beyond the flag threshold."""
    if fid["n_run"] == 0:
        return f"**Fidelity:** {none} (0 of {fid['n_cells']})."
    text = (f"**Fidelity:** {fid['within']} of {fid['n_run']} run cells within {Z_FLAG:g} paper stds "
            f"of the paper's mean ({fid['n_cells'] - fid['n_run']} of {fid['n_cells']} {not_run}).")
    return text + (" Outside: " + ", ".join(outside) + "." if outside else "")


def _claim_line(c: dict) -> str:
    paper_all = f"paper, all {c['paper_n_all']} datasets: {c['paper_k_all']} of {c['paper_n_all']}"
    if c["kind"] == "degrades":
        paper_all += f", median {_pct(c['paper_median_pct_all'])}"
    head = f"{c['text']} (SPEC §5: {c['spec']})"
    if c["n"] == 0:
        return f"{head}: not evaluated, no dataset has both columns run ({paper_all})."
    if c["kind"] == "beats":
        return (f"{head}: ours: {c['k']} of {c['n']} datasets run; paper on the same datasets: "
                f"{c['paper_k']} of {c['paper_n']} ({paper_all}).")
    return (f"{head}: ours: worse on {c['k']} of {c['n']} datasets run, median change "
            f"{_pct(c['median_pct'])}; paper on the same datasets: worse on {c['paper_k']} of "
            f"{c['paper_n']}, median {_pct(c['paper_median_pct'])} ({paper_all}).")

# --------------------------------------------------------------------------- write

def _atomic_write(path: Path, text: str) -> None:
    # Temp file in the same folder so os.replace is a rename on one filesystem:
    # a reader never sees a half-written table.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_table(summary_md: str, summary_df: pd.DataFrame, out_dir, name: str) -> tuple[Path, Path]:
    """Write ``<out_dir>/<name>.md`` and ``<out_dir>/<name>.csv`` atomically.

    Args:
        summary_md: Output of :func:`render_markdown`.
        summary_df: Output of :func:`summarize` (written in long form).
        out_dir: Folder, created if missing.
        name: File stem, e.g. ``"table3"``.

    Returns:
        Paths of the Markdown and CSV files.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, csv_path = out_dir / f"{name}.md", out_dir / f"{name}.csv"
    columns = [c for c in SUMMARY_COLUMNS if c in summary_df.columns]
    if "metric" in summary_df.columns:  # multi-metric tables (Table 5)
        columns.insert(1, "metric")
    columns += [c for c in summary_df.columns if c not in columns]
    _atomic_write(md_path, summary_md)
    _atomic_write(csv_path, summary_df[columns].to_csv(index=False, lineterminator="\n"))
    return md_path, csv_path
