"""Benchmark tables with paired statistics over seeds: records -> Markdown and CSV.

A *benchmark spec* is the ``BENCHMARK`` dict of an ``experiments/*.py`` module (``experiments/methods.py``,
``experiments/scarce.py``):

- ``name``, ``title``; ``students`` (a list: one section per student); ``datasets``;
- ``columns``: one dict per method, as the table specs' (``variant``, ``label``, optional ``color``/``dash``), and for
  a run on a fraction p of the real training rows ``fraction`` (p) and ``base`` (the variant without the fraction);
  its ``variant`` is then the records', ``<method>-<alpha label>-p<p:g>`` (:func:`fraction_variant`);
- ``references``: what every column is tested against, seed by seed: a column's variant, or
  ``dict(variant=<base variant>, same_fraction=True)`` for "that method at the column's own p";
- optionally ``fractions`` (the p's of the columns: average ranks are then taken within each p, the columns without a
  fraction, p = 0, ranked in every group), ``reductions`` (``dict(a=, b=, same_fraction=, label=, paper={p: %},
  paper_text=)``: the % RMSE reduction of a against b, averaged over the datasets, per p), ``metric`` (default
  ``test_rmse``: the best-validation student) and ``last_metric`` (default ``test_rmse_last``: the last epoch's,
  data-free selection).

Every statistic is computed for both selections. Records pair by seed: the same seed shares its teacher and data split
across methods. The numbers: mean, sample std and the 95 % t-interval of each cell; a two-sided Wilcoxon signed-rank
test (``scipy.stats.wilcoxon``) of each column against each reference per dataset, with win / tie / loss at p < 0.05;
average ranks by mean RMSE; and the spec's reductions.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from dfkd import records
from dfkd.errors import ConfigError
from dfkd.report.tables import _atomic_write, _md_table, _describe_experiments, load_experiment_objects, natural_key, \
    validate_columns

#: Significance level of the paired tests (a win or a loss needs p < ALPHA).
ALPHA = 0.05
#: Confidence level of the cells' t-intervals.
LEVEL = 0.95
#: The two checkpoint selections: (key, the spec key naming its record field, its default, its name in the tables).
SELECTIONS = (("best", "metric", "test_rmse", "best-validation"),
              ("last", "last_metric", "test_rmse_last", "last epoch (data-free)"))

_REQUIRED_KEYS = ("name", "title", "students", "datasets", "columns", "references")

#: Columns of the CSV, in order (a row fills those its ``section`` has).
CSV_COLUMNS = [
    "section", "student", "selection", "group", "fraction", "dataset", "column", "variant", "reference",
    "reference_variant", "real_rows", "n_ok", "n_failed", "mean", "std", "ci_low", "ci_high", "n_pairs", "seeds", "p_value",
    "median_diff", "r_plus", "r_minus", "outcome", "wins", "ties", "losses", "n_datasets", "rank", "avg_rank",
    "reduction_pct", "paper_pct",
]


# --------------------------------------------------------------------------- names

def fraction_variant(variant: str, fraction) -> str:
    """The records' name of ``variant`` run on a fraction ``fraction`` of the real training rows:
    ``<variant>-p<fraction:g>`` (``tsm-1``, 0.1 -> ``tsm-1-p0.1``, :func:`dfkd.records.real_label`); ``variant``
    itself for p = 0 or none, and for a name that already carries the suffix."""
    try:
        label = records.real_label(None if isinstance(fraction, bool) else float(fraction), None)
    except (TypeError, ValueError):
        return variant
    if not label or "nan" in label or "inf" in label:
        return variant
    return variant if variant.endswith(f"-{label}") else f"{variant}-{label}"


# --------------------------------------------------------------------------- specs

def validate_benchmark(spec: dict, origin: str = "benchmark spec") -> dict:
    """Check a benchmark spec's shape; raise :class:`ConfigError` naming ``origin`` if wrong. Returns ``spec``."""
    if not isinstance(spec, dict):
        raise ConfigError(f"{origin}: BENCHMARK must be a dict, got {type(spec).__name__}")
    missing = [k for k in _REQUIRED_KEYS if k not in spec]
    if missing:
        raise ConfigError(f"{origin}: BENCHMARK lacks {', '.join(missing)}")
    validate_columns(spec["columns"], origin)
    if any(col["variant"] is None for col in spec["columns"]):
        raise ConfigError(f"{origin}: a benchmark has no teacher column (the teacher's row is added by itself)")
    if not spec["students"] or not spec["datasets"]:
        raise ConfigError(f"{origin}: students and datasets must be non-empty lists")
    variants = set(variant_names(spec))
    fractions = spec.get("fractions", [])
    if any(not isinstance(f, (int, float)) or not 0 < f <= 1 for f in fractions):
        raise ConfigError(f"{origin}: fractions must be numbers in (0, 1], got {fractions!r}")
    for col in spec["columns"]:
        if col.get("fraction") is not None and col["fraction"] not in fractions:
            raise ConfigError(f"{origin}: column {col['label']!r} has fraction {col['fraction']}, not among the "
                              f"fractions {fractions}")
    for ref in spec["references"]:
        base, same = _reference(ref)
        names = [fraction_variant(base, f) for f in fractions] if same else [base]
        unknown = [n for n in names if n not in variants]
        if unknown:
            raise ConfigError(f"{origin}: reference {ref!r} names {', '.join(unknown)}, not a column's variant "
                              f"(columns: {', '.join(sorted(variants))})")
    for red in spec.get("reductions", []):
        if not {"a", "b", "label"} <= set(red):
            raise ConfigError(f"{origin}: each reduction needs a, b and label, got {red!r}")
        if not fractions:
            raise ConfigError(f"{origin}: reductions are per fraction: the spec needs fractions")
        names = [fraction_variant(red["a"], f) for f in fractions]
        names += [fraction_variant(red["b"], f) for f in fractions] if red.get("same_fraction") else [red["b"]]
        unknown = [n for n in names if n not in variants]
        if unknown:
            raise ConfigError(f"{origin}: reduction {red['label']!r} names {', '.join(unknown)}, not a column's "
                              f"variant")
    return spec


def _reference(ref) -> tuple[str, bool]:
    """``(variant, same_fraction)`` of a spec's reference (a variant, or ``dict(variant=, same_fraction=)``)."""
    if isinstance(ref, str):
        return ref, False
    if isinstance(ref, dict) and isinstance(ref.get("variant"), str):
        return ref["variant"], bool(ref.get("same_fraction", False))
    raise ConfigError(f"a benchmark reference must be a variant or dict(variant=..., same_fraction=...), got {ref!r}")


def variant_names(spec: dict) -> list[str]:
    """The variants of a benchmark's columns, in order (the names its records carry)."""
    return [col["variant"] for col in spec["columns"]]


def load_benchmark_specs(experiments_dir=None) -> dict[str, dict]:
    """The ``BENCHMARK`` specs of ``experiments/*.py``, validated, as ``{name: spec}`` sorted by name."""
    specs = {}
    for path, spec in load_experiment_objects("*.py", "BENCHMARK", experiments_dir):
        validate_benchmark(spec, origin=str(path))
        specs[spec["name"]] = spec
    return {name: specs[name] for name in sorted(specs, key=natural_key)}


def _resolve(ref, col: dict) -> str | None:
    """The variant ``col`` is compared with for reference ``ref``; None where it has none (itself, or a same-p
    reference for a column without p)."""
    base, same = _reference(ref)
    if same:
        if col.get("fraction") is None:
            return None
        target = fraction_variant(base, col["fraction"])
    else:
        target = base
    return None if target == col["variant"] else target


def _ref_label(spec: dict, ref) -> str:
    base, same = _reference(ref)
    by = {col["variant"]: col for col in spec["columns"]}
    if same:
        col = next(c for c in spec["columns"] if c.get("base") == base)
        return f"{col['label'].rsplit(', p = ', 1)[0]} at the same p"
    return by[base]["label"]


def rank_groups(spec: dict) -> list[tuple[str, list[str]]]:
    """``(group label, variants)`` within which average ranks are taken: all columns, or with ``fractions`` one group
    per p of its columns and the columns without a fraction (p = 0)."""
    if not spec.get("fractions"):
        return [("all", variant_names(spec))]
    free = [c["variant"] for c in spec["columns"] if c.get("fraction") is None]
    return [(f"p = {f:g}", [c["variant"] for c in spec["columns"] if c.get("fraction") == f] + free)
            for f in spec["fractions"]]


# ------------------------------------------------------------------- statistics

def t_interval(values, level: float = LEVEL) -> tuple[float, float]:
    """The ``level`` t-interval of the mean of ``values``: mean ± t(1 - (1 - level)/2, n - 1) · s / √n with the
    sample std s; NaN for fewer than two values."""
    values = np.asarray(values, dtype=float)
    n = values.size
    if n < 2:
        return math.nan, math.nan
    mean, sd = float(values.mean()), float(values.std(ddof=1))
    if sd == 0:
        return mean, mean
    lo, hi = stats.t.interval(level, n - 1, loc=mean, scale=sd / math.sqrt(n))
    return float(lo), float(hi)


def cell_stats(values) -> dict:
    """``n_ok``, ``mean``, ``std`` (sample, ddof 1) and the t-interval ``ci_low``/``ci_high`` of ``values``."""
    values = np.asarray(values, dtype=float)
    n = int(values.size)
    mean = float(values.mean()) if n else math.nan
    std = float(values.std(ddof=1)) if n > 1 else math.nan
    lo, hi = t_interval(values)
    return dict(n_ok=n, mean=mean, std=std, ci_low=lo, ci_high=hi)


def paired_test(a: pd.Series, b: pd.Series, alpha: float = ALPHA) -> dict:
    """Wilcoxon signed-rank test of ``a`` against ``b`` (values indexed by seed) over their common seeds.

    Returns ``n_pairs``, ``seeds`` (the common seeds, sorted), ``p_value`` (two-sided, ``scipy.stats.wilcoxon``'s
    defaults: zero differences dropped; NaN without pairs), ``median_diff`` (of a - b), ``r_plus``/``r_minus`` (rank
    sums of the positive and negative non-zero differences) and ``outcome``: ``W`` (p < alpha and a lower: the
    negative differences hold the larger rank sum), ``L`` (p < alpha and a higher), ``T`` otherwise, ``""`` without
    pairs.
    """
    seeds = sorted(set(a.index) & set(b.index))
    out = dict(n_pairs=len(seeds), seeds=seeds, p_value=math.nan, median_diff=math.nan, r_plus=math.nan,
               r_minus=math.nan, outcome="")
    if not seeds:
        return out
    x = a.loc[seeds].to_numpy(dtype=float)
    y = b.loc[seeds].to_numpy(dtype=float)
    d = x - y
    nz = d[d != 0]
    ranks = stats.rankdata(np.abs(nz)) if nz.size else np.array([])
    r_plus, r_minus = float(ranks[nz > 0].sum()), float(ranks[nz < 0].sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # all differences zero: scipy warns and answers p = 1
        try:
            p = float(stats.wilcoxon(x, y).pvalue)
        except ValueError:
            p = math.nan
    significant = math.isfinite(p) and p < alpha
    outcome = "W" if significant and r_minus > r_plus else "L" if significant and r_plus > r_minus else "T"
    out.update(p_value=p, median_diff=float(np.median(d)), r_plus=r_plus, r_minus=r_minus, outcome=outcome)
    return out


def ranks(means: dict[str, dict[str, float]]) -> tuple[dict[str, dict[str, float]], dict[str, tuple[float, int]]]:
    """Rank methods by mean within each dataset and average the ranks.

    Args:
        means: ``{dataset: {variant: mean}}``; NaN means "not run" and the method is left out of that dataset.

    Returns:
        ``({dataset: {variant: rank}}, {variant: (average rank, datasets ranked)})``; rank 1 is the lowest mean,
        ties share their mean rank.
    """
    per_dataset, collected = {}, {}
    for dataset, by_variant in means.items():
        run = [(v, m) for v, m in by_variant.items() if m is not None and math.isfinite(m)]
        if not run:
            continue
        r = stats.rankdata([m for _, m in run], method="average")
        per_dataset[dataset] = {v: float(x) for (v, _), x in zip(run, r)}
        for v, x in per_dataset[dataset].items():
            collected.setdefault(v, []).append(x)
    return per_dataset, {v: (float(np.mean(xs)), len(xs)) for v, xs in collected.items()}


# ----------------------------------------------------------------------- records

def benchmark_rows(df: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """The distillation records of the spec's students and datasets, the newest per (dataset, student, variant, seed),
    with ``variant`` the records' full name: a record with ``real_fraction`` > 0 whose variant lacks the
    ``-p<fraction>`` suffix gets it (records written before the suffix reached :class:`dfkd.records.Record`)."""
    if df.empty or "student" not in df.columns:
        return df.iloc[0:0].copy()
    kind = df["kind"] if "kind" in df.columns else pd.Series(None, index=df.index, dtype=object)
    mask = (kind.isna() | (kind == "distill")) & df["student"].isin(spec["students"]) & \
        df["dataset"].isin(spec["datasets"])
    rows = df[mask].copy()
    if rows.empty:
        return rows
    fractions = rows["real_fraction"] if "real_fraction" in rows.columns else pd.Series(None, index=rows.index)
    rows["variant"] = [fraction_variant(v, f) if isinstance(v, str) else v
                       for v, f in zip(rows["variant"], fractions)]
    created = rows["created"].fillna("").astype(str) if "created" in rows.columns else ""
    path = rows["path"].fillna("").astype(str) if "path" in rows.columns else ""
    rows = rows.assign(_created=created, _path=path).sort_values(["_created", "_path"], kind="stable")
    rows = rows.drop_duplicates(["dataset", "student", "variant", "seed"], keep="last")
    return rows.drop(columns=["_created", "_path"])


def _finite(series: pd.Series) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce").astype(float)
    return values.where(np.isfinite(values))


def _per_seed(rows: pd.DataFrame, field: str) -> tuple[pd.Series, int]:
    """``(value by seed of the ok records with a finite field, number of records that are not ok)``."""
    if rows.empty or field not in rows.columns:
        return pd.Series(dtype=float), 0 if rows.empty else int((rows["status"] != "ok").sum())
    values = _finite(rows[field])
    good = (rows["status"] == "ok") & values.notna()
    series = pd.Series(values[good].to_numpy(), index=rows.loc[good, "seed"].astype(int).to_numpy(), dtype=float)
    return series.sort_index(), int((rows["status"] != "ok").sum())


# ----------------------------------------------------------------------- analysis

def analyse(df: pd.DataFrame, spec: dict) -> dict:
    """Every number of a benchmark table, as DataFrames.

    Args:
        df: Output of :func:`dfkd.report.load_records` (or a frame of record dicts).
        spec: A ``BENCHMARK`` dict.

    Returns:
        ``dict(cells, teacher, tests, wtl, ranks, avg_ranks, reductions, avg_reductions, source)``: one row per
        (student, selection, dataset, column) cell; per (student, dataset) teacher; per (student, selection,
        reference, dataset, column) paired test; per (student, selection, reference, column) wins/ties/losses over
        the datasets; per (student, selection, group, dataset, column) rank and per (student, selection, group,
        column) average rank; per (reduction, p, student, selection, dataset) reduction and its average; and the
        provenance of the records.
    """
    spec = validate_benchmark(spec)
    rows = benchmark_rows(df, spec)
    cells, teacher, tests, wtl, rank_rows, avg_rank_rows, red_rows, avg_red_rows = ([] for _ in range(8))
    selections = [(key, spec.get(spec_key, default)) for key, spec_key, default, _ in SELECTIONS]
    # values[(student, selection, dataset, variant)] = Series by seed
    values, n_records = {}, {}
    for student in spec["students"]:
        s_rows = rows[rows["student"] == student] if not rows.empty else rows
        for dataset in spec["datasets"]:
            d_rows = s_rows[s_rows["dataset"] == dataset] if not s_rows.empty else s_rows
            n_records[(student, dataset)] = len(d_rows)
            if d_rows.empty or "teacher_test_rmse" not in d_rows.columns:
                t_values = []
            else:
                t_values = _finite(d_rows["teacher_test_rmse"]).groupby(d_rows["seed"]).mean().dropna().to_numpy()
            teacher.append(dict(student=student, dataset=dataset, column="Teacher", variant="teacher", n_failed=0,
                                **cell_stats(t_values)))
            for col in spec["columns"]:
                v_rows = d_rows[d_rows["variant"] == col["variant"]] if not d_rows.empty else d_rows
                real_rows = (float(_finite(v_rows["real_rows"]).mean())
                             if "real_rows" in v_rows.columns and not v_rows.empty else math.nan)
                for selection, field in selections:
                    series, n_failed = _per_seed(v_rows, field)
                    values[(student, selection, dataset, col["variant"])] = series
                    cells.append(dict(student=student, selection=selection, dataset=dataset, column=col["label"],
                                      variant=col["variant"], fraction=col.get("fraction", 0.0) or 0.0,
                                      n_failed=n_failed, real_rows=real_rows, **cell_stats(series.to_numpy())))
    cells_df = pd.DataFrame(cells)
    means = {(r.student, r.selection, r.dataset, r.variant): r.mean for r in cells_df.itertuples()}

    for student in spec["students"]:
        for selection, _ in selections:
            for ref in spec["references"]:
                for col in spec["columns"]:
                    target = _resolve(ref, col)
                    if target is None:
                        continue
                    counts = dict(W=0, T=0, L=0)
                    for dataset in spec["datasets"]:
                        res = paired_test(values[(student, selection, dataset, col["variant"])],
                                          values[(student, selection, dataset, target)])
                        if res["outcome"]:
                            counts[res["outcome"]] += 1
                        tests.append(dict(student=student, selection=selection, reference=_ref_label(spec, ref),
                                          reference_variant=target, dataset=dataset, column=col["label"],
                                          variant=col["variant"], **res))
                    wtl.append(dict(student=student, selection=selection, reference=_ref_label(spec, ref),
                                    reference_variant=target, column=col["label"], variant=col["variant"],
                                    wins=counts["W"], ties=counts["T"], losses=counts["L"],
                                    n_datasets=sum(counts.values())))
            labels = {col["variant"]: col["label"] for col in spec["columns"]}
            for group, members in rank_groups(spec):
                per_dataset, avg = ranks({ds: {v: means[(student, selection, ds, v)] for v in members}
                                          for ds in spec["datasets"]})
                for ds, by in per_dataset.items():
                    rank_rows += [dict(student=student, selection=selection, group=group, dataset=ds,
                                       column=labels[v], variant=v, rank=r) for v, r in by.items()]
                avg_rank_rows += [dict(student=student, selection=selection, group=group, column=labels[v], variant=v,
                                       avg_rank=avg[v][0] if v in avg else math.nan,
                                       n_datasets=avg[v][1] if v in avg else 0) for v in members]

    for red in spec.get("reductions", []):
        for f in spec.get("fractions", []):
            a = fraction_variant(red["a"], f)
            b = fraction_variant(red["b"], f) if red.get("same_fraction") else red["b"]
            paper = red.get("paper", {}).get(f, math.nan)
            for student in spec["students"]:
                for selection, _ in selections:
                    pcts = []
                    for ds in spec["datasets"]:
                        ma, mb = means[(student, selection, ds, a)], means[(student, selection, ds, b)]
                        if math.isfinite(ma) and math.isfinite(mb) and mb != 0:
                            pct = (mb - ma) / mb * 100.0
                            pcts.append(pct)
                            red_rows.append(dict(student=student, selection=selection, group=red["label"],
                                                 fraction=f, dataset=ds, variant=a, reference_variant=b,
                                                 reduction_pct=pct))
                    avg_red_rows.append(dict(student=student, selection=selection, group=red["label"], fraction=f,
                                             variant=a, reference_variant=b,
                                             reduction_pct=float(np.mean(pcts)) if pcts else math.nan,
                                             n_datasets=len(pcts), paper_pct=float(paper)))

    experiments = sorted({str(x) for x in rows["experiment"].dropna()}) if "experiment" in rows.columns else []
    source = dict(root=df.attrs.get("root"), n_total=len(df), n_records=len(rows), experiments=experiments,
                  n_records_by=n_records)
    return dict(cells=cells_df, teacher=pd.DataFrame(teacher), tests=pd.DataFrame(tests), wtl=pd.DataFrame(wtl),
                ranks=pd.DataFrame(rank_rows), avg_ranks=pd.DataFrame(avg_rank_rows),
                reductions=pd.DataFrame(red_rows), avg_reductions=pd.DataFrame(avg_red_rows), source=source)


def benchmark_frame(result: dict) -> pd.DataFrame:
    """Every number of :func:`analyse` in one long frame with :data:`CSV_COLUMNS`, ``section`` naming its kind."""
    parts = []
    for section, key in (("cell", "cells"), ("teacher", "teacher"), ("paired_test", "tests"),
                         ("wins_ties_losses", "wtl"), ("rank", "ranks"), ("average_rank", "avg_ranks"),
                         ("reduction", "reductions"), ("average_reduction", "avg_reductions")):
        frame = result[key]
        if frame.empty:
            continue
        frame = frame.copy()
        if "seeds" in frame.columns:
            frame["seeds"] = [" ".join(map(str, s)) for s in frame["seeds"]]
        frame.insert(0, "section", section)
        parts.append(frame)
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CSV_COLUMNS)
    for col in CSV_COLUMNS:
        if col not in out.columns:
            out[col] = np.nan
    for col in ("n_ok", "n_failed", "n_pairs", "wins", "ties", "losses", "n_datasets"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("Int64")  # counts print as counts, blanks blank
    return out[CSV_COLUMNS]


# ------------------------------------------------------------------------- render

def _num(x: float) -> str:
    return f"{x:.4f}" if x is not None and math.isfinite(x) else "–"


def _p(x: float) -> str:
    if not math.isfinite(x):
        return "p n/a"
    return f"p={x:.3f}" if x >= 0.001 else f"p={x:.1e}"


def _stat_text(r, failed: bool = True) -> str:
    """``mean ± std [ci_low, ci_high] (n)`` of one cells row (or "all k failed"; ``None`` when not run)."""
    if r.n_ok == 0:
        return f"all {r.n_failed} failed" if failed and r.n_failed else None
    n = f"{r.n_ok}, {r.n_failed} failed" if failed and r.n_failed else f"{r.n_ok}"
    return f"{_num(r['mean'])} ± {_num(r['std'])} [{_num(r.ci_low)}, {_num(r.ci_high)}] ({n})"


def _not_run(source: dict, student: str, dataset: str, data_status: dict) -> str:
    """"not run (data missing)" for a dataset with no record of this student whose data is known absent."""
    none = source.get("n_records_by", {}).get((student, dataset), 0) == 0
    return "not run (data missing)" if none and data_status.get(dataset, True) is False else "not run"


def _header(spec: dict, result: dict) -> list[str]:
    source = result["source"]
    root = source.get("root") or "?"
    students = ", ".join(spec["students"])
    if source.get("n_records", 0) == 0:
        src = (f"Source: no records for student {students} under `{root}`; every cell is not run. Produce records with "
               f"`make {spec['name']}`, then `python -m dfkd.report --tables {spec['name']}`.")
    else:
        src = (f"Source: {source['n_records']} records for student {students} (of {source.get('n_total', '?')}) "
               f"under `{root}`; experiment: {_describe_experiments(source.get('experiments', []))}.")
    lines = [f"# {spec['title']}", "", src]
    if "quick" in source.get("experiments", []):
        lines += ["", "> **quick: reduced budget.**"]
    rank_scope = (", student and p (the data-free columns, p = 0, ranked in each p)" if spec.get("fractions")
                  else " and student")
    lines += [
        "",
        "What each number is (test RMSE on the standardized target; every statistic for both checkpoint selections):",
        "",
        "- **best**: the student of the epoch with the best validation RMSE (the published protocol; it uses real "
        "validation labels); **last**: the last epoch's student (data-free selection).",
        f"- **Cells**: mean ± std (sample std, ddof 1) [{LEVEL * 100:g} % confidence interval of the mean: mean ± "
        "t(0.975, n − 1) · std / √n] (n seeds run; \"n, k failed\": k more runs diverged). \"not run\": no record "
        "yet; fewer than 10 seeds: a partial run.",
        "- **Paired tests**: against a reference method, the two-sided Wilcoxon signed-rank test "
        "(`scipy.stats.wilcoxon`, zero differences dropped) on the RMSE of the seeds both ran; pairs are by seed "
        "(a seed shares its teacher and data split across methods). "
        f"**W** (win): p < {ALPHA:g} and lower RMSE (the negative differences hold the larger rank sum); **L** "
        f"(loss): p < {ALPHA:g} and higher RMSE; **T** (tie): otherwise, which includes every test on 5 pairs or "
        f"fewer (where p < {ALPHA:g} cannot be reached). W/T/L: the outcomes counted over the datasets with pairs.",
        f"- **Average rank**: within each dataset{rank_scope}, the methods run are ranked by mean RMSE (1 = "
        "lowest, ties share their mean rank), then the ranks are averaged over the datasets (k: datasets ranked; a "
        "dataset where a method has not run ranks the others among themselves).",
    ]
    if spec.get("fractions"):
        lines.append("- **p**: the fraction of the training split the student is given, with its labels (config "
                     "`real_fraction`; records `<method>-<alpha>-p<p>`); p = 0: data-free, the teacher is all it sees.")
    if spec.get("reductions"):
        lines.append("- **Reduction**: (RMSE of the reference − RMSE of the method) / RMSE of the reference × 100, "
                     "from the cells' mean RMSE on each dataset, averaged over the datasets where both ran (positive: "
                     "the method's RMSE is lower).")
    return lines


def render_benchmark(result: dict, spec: dict, data_status: dict[str, bool] | None = None) -> str:
    """Markdown of a benchmark: per student the cells (best and last side by side), the average ranks, a paired-test
    table per reference, then the spec's reductions. ``data_status``: ``{dataset: data available}`` (absent: available),
    to tell "not run (data missing)" from "not run"."""
    data_status = data_status or {}
    source = result["source"]
    cells = result["cells"].set_index(["student", "selection", "dataset", "variant"])
    teacher = result["teacher"].set_index(["student", "dataset"])
    tests = result["tests"].set_index(["student", "reference_variant", "dataset", "variant", "selection"]) \
        if not result["tests"].empty else None
    wtl = result["wtl"].set_index(["student", "reference_variant", "variant", "selection"]) \
        if not result["wtl"].empty else None
    avg_ranks = result["avg_ranks"].set_index(["student", "group", "variant", "selection"]) \
        if not result["avg_ranks"].empty else None
    datasets = spec["datasets"]
    lines = _header(spec, result)

    for student in spec["students"]:
        lines += ["", f"## Student {student}", "", "### Test RMSE", "",
                  "Each cell: best-validation, then last epoch (data-free selection).", ""]
        body = []
        t_row = ["Teacher"]
        for ds in datasets:
            r = teacher.loc[(student, ds)]
            t_row.append(_stat_text(r) or _not_run(source, student, ds, data_status))
        body.append(t_row)
        for col in spec["columns"]:
            row = [col["label"]]
            for ds in datasets:
                best = _stat_text(cells.loc[(student, "best", ds, col["variant"])])
                last = _stat_text(cells.loc[(student, "last", ds, col["variant"])], failed=False)
                if best is None and last is None:
                    row.append(_not_run(source, student, ds, data_status))
                else:
                    row.append(f"best {best or '–'}<br>last {last or '–'}")
            body.append(row)
        lines += _md_table(["Method"] + datasets, body)

        groups = rank_groups(spec)
        lines += ["", "### Average rank", "",
                  "Average rank by mean test RMSE over the datasets (k datasets ranked), best-validation / last epoch.",
                  ""]
        header = ["Method"]
        for g, _ in groups:
            header += [f"{g}, best" if len(groups) > 1 else "best", f"{g}, last" if len(groups) > 1 else "last"]
        body = []
        for col in spec["columns"]:
            row = [col["label"]]
            for g, members in groups:
                for selection in ("best", "last"):
                    if col["variant"] not in members or avg_ranks is None:
                        row.append("")
                        continue
                    r = avg_ranks.loc[(student, g, col["variant"], selection)]
                    row.append(f"{r.avg_rank:.2f} ({int(r.n_datasets)})" if r.n_datasets else "not run")
            body.append(row)
        lines += _md_table(header, body)

        for ref in spec["references"]:
            label = _ref_label(spec, ref)
            lines += ["", f"### Paired tests against {label}", "",
                      "Each cell: best-validation · last epoch, outcome (W/T/L) and Wilcoxon p-value (pairs: seeds "
                      "both ran); the last two columns count the outcomes over the datasets (W/T/L).", ""]
            body = []
            for col in spec["columns"]:
                target = _resolve(ref, col)
                if target is None:
                    continue
                row = [col["label"]]
                for ds in datasets:
                    parts = []
                    for selection in ("best", "last"):
                        t = tests.loc[(student, target, ds, col["variant"], selection)]
                        parts.append(f"{t.outcome} {_p(t.p_value)}" if t.n_pairs else "–")
                    n = tests.loc[(student, target, ds, col["variant"], "best")].n_pairs
                    if parts == ["–", "–"]:
                        row.append(_not_run(source, student, ds, data_status))
                    else:
                        row.append(f"{parts[0]} · {parts[1]} ({n})")
                for selection in ("best", "last"):
                    w = wtl.loc[(student, target, col["variant"], selection)]
                    row.append(f"{w.wins}/{w.ties}/{w.losses}" if w.n_datasets else "not run")
                body.append(row)
            lines += _md_table(["Method"] + datasets + ["W/T/L best", "W/T/L last"], body)

    avg_red = result["avg_reductions"]
    for red in spec.get("reductions", []):
        lines += ["", f"## RMSE reduction: {red['label']}", ""]
        header = ["Student", "p", "best-validation", "last epoch", "datasets", "paper"]
        body = []
        for student in spec["students"]:
            for f in spec["fractions"]:
                row = [student, f"{f:g}"]
                sel = avg_red[(avg_red["group"] == red["label"]) & (avg_red["student"] == student)
                              & (avg_red["fraction"] == f)].set_index("selection")
                for selection in ("best", "last"):
                    r = sel.loc[selection]
                    row.append(f"{r.reduction_pct:.2f} %" if r.n_datasets else "not run")
                row.append(str(int(sel.loc["best"].n_datasets)))
                paper = sel.loc["best"].paper_pct
                row.append(f"{paper:.2f} %" if math.isfinite(paper) else "–")
                body.append(row)
        lines += _md_table(header, body)
        if red.get("paper_text"):
            lines += ["", f"Paper (Kang & Kang 2024): \"{red['paper_text']}\"."]
        # per dataset
        per = result["reductions"]
        lines += ["", "Per dataset (best-validation / last epoch):", ""]
        header = ["Student", "p"] + datasets
        body = []
        for student in spec["students"]:
            for f in spec["fractions"]:
                row = [student, f"{f:g}"]
                for ds in datasets:
                    parts = []
                    for selection in ("best", "last"):
                        hit = per[(per["group"] == red["label"]) & (per["student"] == student) & (per["fraction"] == f)
                                  & (per["dataset"] == ds) & (per["selection"] == selection)] if not per.empty else per
                        parts.append(f"{hit.iloc[0].reduction_pct:.2f} %" if len(hit) else "–")
                    row.append("not run" if parts == ["–", "–"] else " / ".join(parts))
                body.append(row)
        lines += _md_table(header, body)
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------- write

def write_benchmark(df: pd.DataFrame, spec: dict, out_dir, data_status: dict[str, bool] | None = None) -> tuple:
    """Analyse ``df`` for ``spec`` and write ``<out_dir>/<name>.md`` and ``.csv`` atomically.

    Returns:
        ``(md path, csv path, result of analyse)``.
    """
    result = analyse(df, spec)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, csv_path = out_dir / f"{spec['name']}.md", out_dir / f"{spec['name']}.csv"
    _atomic_write(md_path, render_benchmark(result, spec, data_status))
    _atomic_write(csv_path, benchmark_frame(result).to_csv(index=False, lineterminator="\n"))
    return md_path, csv_path, result


def run_counts(result: dict) -> tuple[int, int]:
    """``(cells run, cells)`` of the best-validation selection."""
    best = result["cells"][result["cells"]["selection"] == "best"]
    return int((best["n_ok"] > 0).sum()), len(best)
