"""Figures (never trains): paper Figures 5 and 6 from the study's numbers, 7 and 8 from run traces, 9 and 10 for image runs.

A *figure spec* is the ``FIGURE`` dict of an ``experiments/fig*.py`` module, with ``name``, ``title``,
``kind``, ``student`` and ``columns`` (column dicts as in a table spec, :mod:`dfkd.report.tables`: ``variant``,
``label``, for trace figures ``color`` and ``dash``; the paper figures take them from their table's spec, so a
column added to a table is drawn and named in its figures' legends), and per kind:

- ``synthetic_grid`` / ``prediction_hist`` (Figures 9, 10): ``dataset``. Image runs keep a batch of
  synthetic inputs and the teacher's predictions on them in their trace file (``synthetic_x``,
  ``synthetic_t``); each figure takes them from the lowest seed of each variant.
- ``trace_curves`` (Figures 7, 8): ``datasets``, ``trace`` (a per-epoch array of the trace files:
  ``val_rmse``, ``loss_g``), ``ylabel``; optional ``smooth`` (Savitzky-Golay window, default 15),
  ``polyorder`` (2), ``log_y`` (False) and ``band`` (shade the seeds' range; False). One panel per
  dataset, one line per variant: the median over seeds, smoothed.

Figures 5 and 6 come from the synthetic-data study (``python -m dfkd.study``), which trains; their
drawing functions here take its numbers (:func:`loss_violins`, :func:`umap_panels`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dfkd.errors import ConfigError, DataError
from dfkd.report.tables import load_experiment_objects, natural_key, pairs, validate_columns

KINDS = ("synthetic_grid", "prediction_hist", "trace_curves")
_REQUIRED = {"synthetic_grid": ("dataset",), "prediction_hist": ("dataset",),
             "trace_curves": ("datasets", "trace", "ylabel")}

#: How the study's methods and the tables' variants are named and coloured in every figure.
METHOD_LABELS = {"random": "Random sampling", "generator": "Generator", "direct": "Direct optimizer (gradient)",
                 "de": "Direct optimizer (differential evolution)", "real": "Real test rows"}
METHOD_COLORS = {"random": "#7f7f7f", "generator": "#e66100", "direct": "#1f5fbf", "de": "#2ca02c",
                 "real": "#b8b8b8"}


def load_figure_specs(experiments_dir=None) -> dict[str, dict]:
    """Discover the ``FIGURE`` dicts in ``experiments/fig*.py``, by name."""
    specs = {}
    for path, fig in load_experiment_objects("fig*.py", "FIGURE", experiments_dir):
        if fig.get("kind") not in KINDS:
            raise ConfigError(f"{path}: FIGURE lacks a known kind (kinds: {', '.join(KINDS)})")
        missing = [k for k in ("name", "title", "student", "columns") + _REQUIRED[fig["kind"]] if k not in fig]
        if missing:
            raise ConfigError(f"{path}: FIGURE of kind {fig['kind']} lacks {', '.join(missing)}")
        validate_columns(fig["columns"], str(path))
        specs[fig["name"]] = fig
    return {name: specs[name] for name in sorted(specs, key=natural_key)}


def synthetic_batches(df: pd.DataFrame, spec: dict) -> dict[str, dict]:
    """Per column label: ``{"x": (k, C, H, W), "t": (k,), "seed": s, "path": record}`` of the lowest seed run.

    Columns without a finished image run are left out.
    """
    out = {}
    for label, variant in pairs(spec):
        for rec, arrays in _traces(df, spec["dataset"], spec["student"], variant, "synthetic_x"):
            out[label] = {"x": arrays["synthetic_x"], "t": arrays["synthetic_t"], "seed": int(rec.seed),
                          "path": rec.path, "experiment": rec.experiment}
            break
    return out


def _traces(df: pd.DataFrame, dataset: str, student: str, variant: str, key: str):
    """``(record row, trace arrays)`` of the finished runs of one cell whose trace file holds ``key``, by seed."""
    if df.empty:
        return
    rows = df[(df["dataset"] == dataset) & (df["student"] == student) & (df["status"] == "ok")
              & (df["variant"] == variant)]
    for rec in rows.sort_values(["seed", "created"]).itertuples():
        trace = Path(rec.path).parent / str(getattr(rec, "trace_file", "") or "")
        if not trace.is_file():
            continue
        with np.load(trace) as arrays:
            if key in arrays:
                yield rec, {k: arrays[k] for k in arrays.files}


def trace_series(df: pd.DataFrame, spec: dict) -> dict[str, dict]:
    """Figures 7 and 8: ``{dataset: {label: {"y": (seeds, epochs) array, "experiments": set}}}`` of ``spec["trace"]``.

    Only runs of the most common length (ties: the longer) are stacked, so a records folder that also
    holds shorter ad-hoc runs still gives one curve per cell; cells without traces are left out.
    """
    out = {}
    for dataset in spec["datasets"]:
        for label, variant in pairs(spec):
            found = [(rec, arrays[spec["trace"]]) for rec, arrays in
                     _traces(df, dataset, spec["student"], variant, spec["trace"])]
            if not found:
                continue
            lengths = pd.Series([len(y) for _, y in found]).value_counts()
            length = max(lengths[lengths == lengths.max()].index)
            keep = [(rec, y) for rec, y in found if len(y) == length]
            out.setdefault(dataset, {})[label] = {
                "y": np.stack([np.asarray(y, dtype=np.float64) for _, y in keep]),
                "experiments": {str(rec.experiment) for rec, _ in keep}}
    return out


def smooth(y, window: int = 15, polyorder: int = 2, log: bool = False) -> np.ndarray:
    """Savitzky-Golay smoothing (``scipy.signal.savgol_filter``) of a curve, same length as ``y``.

    Non-finite entries (and, with ``log``, entries <= 0) stay NaN and are skipped; with ``log`` the
    filter runs on log10 of the values, so a curve spanning orders of magnitude stays positive. A
    curve shorter than the window gets the longest odd window that fits (none if it is shorter than
    ``polyorder + 2``).
    """
    from scipy.signal import savgol_filter

    y = np.asarray(y, dtype=np.float64)
    out = np.full(y.shape, np.nan)
    ok = np.isfinite(y) & (y > 0) if log else np.isfinite(y)
    values = np.log10(y[ok]) if log else y[ok]
    n = values.shape[0]
    width = min(int(window), n if n % 2 else n - 1)
    if width % 2 == 0:
        width -= 1
    if width > polyorder:
        values = savgol_filter(values, width, polyorder)
    out[ok] = 10.0 ** values if log else values
    return out


def _finish(plt, fig, title: str, out_dir: Path, name: str) -> list[Path]:
    """Title, lay out, write ``<name>.png`` and ``.pdf`` and close a figure; returns the two paths."""
    fig.suptitle(title.strip(), fontsize=11)
    fig.tight_layout()
    paths = _save(fig, out_dir, name)
    plt.close(fig)
    return paths


def _save(fig, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    return paths


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (imported here: it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _subtitle(batches: dict) -> str:
    return runs_note({str(b["experiment"]) for b in batches.values()})


def runs_note(experiments) -> str:
    """``runs: <experiments>`` for a subtitle, with quick runs labelled as a reduced budget."""
    note = "; ".join("quick: reduced budget" if e == "quick" else e for e in sorted(experiments))
    return f"runs: {note}" if note else ""


def synthetic_grid(batches: dict, spec: dict, out_dir: Path, per_row: int = 6) -> list[Path]:
    """Figure 9: a small grid of synthetic images per method, each titled with the teacher's prediction."""
    plt = _pyplot()
    labels = [label for label, _ in pairs(spec)]
    fig, axes = plt.subplots(len(labels), per_row, figsize=(1.5 * per_row + 1.4, 1.75 * len(labels)), squeeze=False)
    for i, label in enumerate(labels):
        batch = batches.get(label)
        for j in range(per_row):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if batch is None or j >= batch["x"].shape[0]:
                if j == 0 and batch is None:
                    ax.text(0.5, 0.5, "not run", ha="center", va="center", fontsize=10, transform=ax.transAxes)
                else:
                    ax.axis("off")
                continue
            ax.imshow(batch["x"][j].reshape(batch["x"].shape[-2:]), cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_title(f"T = {batch['t'][j]:.2f}", fontsize=9)
        axes[i, 0].set_ylabel(label, fontsize=10)
    return _finish(plt, fig, f"{spec['title']}\n{_subtitle(batches)}", Path(out_dir), spec["name"])


def prediction_hist(batches: dict, spec: dict, out_dir: Path) -> list[Path]:
    """Figure 10: histograms of the teacher's predictions on a batch of synthetic images, one panel per method."""
    plt = _pyplot()
    labels = [label for label, _ in pairs(spec)]
    fig, axes = plt.subplots(1, len(labels), figsize=(3.6 * len(labels), 3.2), squeeze=False, sharey=True)
    preds = [batches[label]["t"] for label in labels if label in batches]
    lo = min([-0.5] + [float(np.floor(p.min())) for p in preds])
    hi = max([9.5] + [float(np.ceil(p.max())) for p in preds])
    bins = np.arange(lo, hi + 0.25, 0.25)
    for ax, label in zip(axes[0], labels):
        batch = batches.get(label)
        if batch is None:
            ax.text(0.5, 0.5, "not run", ha="center", va="center", fontsize=10, transform=ax.transAxes)
        else:
            ax.hist(batch["t"], bins=bins, color="#4477aa", edgecolor="white")
            ax.set_title(f"{label} ({batch['t'].shape[0]} images)", fontsize=10)
        ax.set_xlim(lo, hi)
        ax.set_xticks(range(int(np.ceil(lo)), int(np.floor(hi)) + 1))
        ax.set_xlabel("teacher's prediction", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_ylabel("images", fontsize=10)
    return _finish(plt, fig, f"{spec['title']}\n{_subtitle(batches)}", Path(out_dir), spec["name"])


def _panel_grid(plt, n: int, ncols: int = 4, size=(3.6, 3.0)):
    """A grid with at least n panels; returns ``(fig, axes list, spare axes or None)``: a free slot for the legend."""
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows + 0.9), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n + 1:]:
        ax.axis("off")
    spare = flat[n] if len(flat) > n else None
    if spare is not None:
        spare.axis("off")
    return fig, flat[:n], spare


def _legend(fig, spare, handles, labels, **kw):
    """The figure's one legend: in the spare panel if there is one, else centred below the panels."""
    if spare is not None:
        spare.legend(handles, labels, loc="center", frameon=False, fontsize=10, **kw)
    else:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), frameon=False, fontsize=10,
                   bbox_to_anchor=(0.5, -0.02), **kw)


def _log_axis(ax) -> None:
    """A logarithmic y axis; within two decades its ticks read as plain numbers (0.2, 0.3), not 2 x 10^-1."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    if hi / lo < 100:
        subs = (1.0, 2.0, 3.0, 5.0) if hi / lo < 10 else (1.0, 2.0, 5.0)
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())


def trace_curves(series: dict, spec: dict, out_dir: Path) -> list[Path]:
    """Figures 7 and 8: per dataset, one smoothed curve per variant (median over seeds) against epoch."""
    plt = _pyplot()
    fig, title = draw_trace_curves(series, spec)
    return _finish(plt, fig, title, Path(out_dir), spec["name"])


def draw_trace_curves(series: dict, spec: dict):
    """The figure of :func:`trace_curves`, not saved: ``(matplotlib figure, its title)``; one legend entry per
    column drawn, labelled with the column's label."""
    plt = _pyplot()
    window, order, log = int(spec.get("smooth", 15)), int(spec.get("polyorder", 2)), bool(spec.get("log_y", False))
    datasets = list(spec["datasets"])
    fig, axes, spare = _panel_grid(plt, len(datasets))
    handles, seeds = {}, set()
    for ax, dataset in zip(axes, datasets):
        cells = series.get(dataset, {})
        ax.set_title(dataset, fontsize=11)
        if not cells:
            ax.text(0.5, 0.5, "not run (no records)", ha="center", va="center", fontsize=10, transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        ax.set_xlabel("epoch", fontsize=10)
        ax.grid(alpha=0.3)
        for col in spec["columns"]:
            label = col["label"]
            if label not in cells:
                continue
            y = cells[label]["y"]
            seeds.add(y.shape[0])
            smoothed = np.stack([smooth(row, window, order, log) for row in y])
            epochs = np.arange(1, y.shape[1] + 1)
            color, dash = col.get("color"), col.get("dash", "-")
            with np.errstate(all="ignore"):
                mid = np.nanmedian(smoothed, 0)
            (line,) = ax.plot(epochs, mid, color=color, linestyle=dash, linewidth=1.4)
            if spec.get("band"):
                ax.fill_between(epochs, np.nanmin(smoothed, 0), np.nanmax(smoothed, 0), color=line.get_color(),
                                alpha=0.15, linewidth=0)
            handles[label] = line
        if log:
            _log_axis(ax)
        ax.tick_params(labelsize=9)
    for row_start in range(0, len(axes), 4):
        axes[row_start].set_ylabel(spec["ylabel"], fontsize=10)
    labels = [label for label, _ in pairs(spec) if label in handles]
    _legend(fig, spare, [handles[label] for label in labels], labels)
    experiments = {e for cells in series.values() for cell in cells.values() for e in cell["experiments"]}
    n_seeds = "/".join(str(n) for n in sorted(seeds))
    band = "; band: their range" if spec.get("band") else ""
    note = (f"line: median over {n_seeds} seeds{band}; Savitzky-Golay window {window}, order {order}"
            f"{' (on log10)' if log else ''}")
    return fig, f"{spec['title']}\n{note}; {runs_note(experiments)}"


def _epoch_label(epoch: int, val_rmse: dict | None) -> str:
    rmse = (val_rmse or {}).get(int(epoch))
    return f"epoch {int(epoch)}" + (f"\n(val RMSE {rmse:.3f})" if rmse is not None and np.isfinite(rmse) else "")


def loss_violins(losses: pd.DataFrame, out_dir, name: str = "fig5", title: str = "", subtitle: str = "",
                 val_rmse: dict | None = None, floor: float = 1e-12) -> list[Path]:
    """Figure 5: violins of the student loss (T(x) - S(x))^2 of each method's rows, grouped by snapshot epoch.

    Args:
        losses: one row per synthetic row, with columns ``epoch``, ``method`` and ``loss``.
        val_rmse: optional ``{epoch: student's validation RMSE}`` shown under each group.
        floor: losses below it are drawn at it (the axis is logarithmic).
    """
    plt = _pyplot()
    from matplotlib.patches import Patch

    epochs = sorted(losses["epoch"].unique())
    methods = [m for m in METHOD_LABELS if m in set(losses["method"])] + \
        sorted(set(losses["method"]) - set(METHOD_LABELS))
    width = len(methods) + 1
    fig, ax = plt.subplots(figsize=(max(7.0, 1.9 * len(epochs) + 1.5), 5.4))
    for j, method in enumerate(methods):
        data, positions = [], []
        for i, epoch in enumerate(epochs):
            values = losses.loc[(losses["epoch"] == epoch) & (losses["method"] == method), "loss"].to_numpy(float)
            if values.size:
                data.append(np.log10(np.maximum(values, floor)))
                positions.append(i * width + j)
        if not data:
            continue
        parts = ax.violinplot(data, positions=positions, widths=0.85, showmedians=True, showextrema=False)
        color = METHOD_COLORS.get(method, f"C{j}")
        for body in parts["bodies"]:
            body.set_facecolor(color)
            body.set_edgecolor(color)
            body.set_alpha(0.55)
        parts["cmedians"].set_color("black")
    ax.set_xticks([i * width + (len(methods) - 1) / 2 for i in range(len(epochs))])
    ax.set_xticklabels([_epoch_label(e, val_rmse) for e in epochs], fontsize=10)
    lo, hi = ax.get_ylim()
    ticks = np.arange(np.floor(lo), np.ceil(hi) + 1)
    ax.set_yticks(ticks)
    ax.set_yticklabels([f"$10^{{{int(t)}}}$" for t in ticks], fontsize=9)
    ax.set_ylim(lo, hi)
    ax.set_ylabel("student loss $(T(x) - S(x))^2$ per row\n(squared target std, log scale)", fontsize=10)
    ax.set_xlabel("snapshot of the student trained with random sampling", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend([Patch(facecolor=METHOD_COLORS.get(m, f"C{j}"), alpha=0.55) for j, m in enumerate(methods)],
              [METHOD_LABELS.get(m, m) for m in methods], fontsize=9, loc="upper center", ncol=2,
              bbox_to_anchor=(0.5, -0.27), frameon=False, title="black bar: median", title_fontsize=9)
    return _finish(plt, fig, f"{title}\n{subtitle}", Path(out_dir), name)


def umap_panels(points: pd.DataFrame, out_dir, name: str = "fig6", title: str = "", subtitle: str = "",
                notes: dict | None = None) -> list[Path]:
    """Figure 6: one 2-D UMAP panel per snapshot epoch: real rows with the synthetic rows of each method.

    Args:
        points: columns ``epoch``, ``source`` (``real`` or a method name), ``umap1`` and ``umap2``.
        notes: optional ``{epoch: text}`` printed under each panel (e.g. the rows' spread).
    """
    plt = _pyplot()
    epochs = sorted(points["epoch"].unique())
    sources = ["real"] + [m for m in METHOD_LABELS if m != "real" and m in set(points["source"])]
    fig, axes = plt.subplots(1, len(epochs), figsize=(4.4 * len(epochs), 4.8), squeeze=False)
    handles = {}
    for ax, epoch in zip(axes[0], epochs):
        at = points[points["epoch"] == epoch]
        for source in sources:
            xy = at[at["source"] == source]
            if xy.empty:
                continue
            real = source == "real"
            handles[source] = ax.scatter(xy["umap1"], xy["umap2"], s=5 if real else 12, alpha=0.6 if real else 0.8,
                                         color=METHOD_COLORS.get(source), linewidths=0, zorder=1 if real else 2,
                                         label=f"{METHOD_LABELS.get(source, source)} ({len(xy)})")
        ax.set_title(f"epoch {int(epoch)}", fontsize=11)
        ax.set_xlabel("UMAP 1", fontsize=10)
        ax.tick_params(labelsize=8)
        if notes and epoch in notes:
            ax.text(0.5, -0.16, notes[epoch], ha="center", va="top", fontsize=9, transform=ax.transAxes)
    axes[0, 0].set_ylabel("UMAP 2", fontsize=10)
    fig.legend(list(handles.values()), [h.get_label() for h in handles.values()], loc="lower center",
               ncol=len(handles), frameon=False, fontsize=10, markerscale=2.0, bbox_to_anchor=(0.5, -0.07))
    return _finish(plt, fig, f"{title}\n{subtitle}", Path(out_dir), name)


def write_figure(df: pd.DataFrame, spec: dict, out_dir) -> tuple[list[Path], int]:
    """Draw one figure spec from records; returns its files and how many columns had data.

    Raises:
        DataError: a ``trace_curves`` figure found no trace at all (one line naming how to make them).
    """
    if spec["kind"] == "trace_curves":
        series = trace_series(df, spec)
        if not series:
            root = df.attrs.get("root", "the records folder")
            raise DataError(f"no traces for {spec['name']} (student {spec['student']}) under {root}: train them with "
                            f"`make table4` (or `make quick`), or draw the committed full run with "
                            f"--records results/reference/records")
        drawn = {label for cells in series.values() for label in cells}
        return trace_curves(series, spec, Path(out_dir)), len(drawn)
    batches = synthetic_batches(df, spec)
    draw = synthetic_grid if spec["kind"] == "synthetic_grid" else prediction_hist
    return draw(batches, spec, Path(out_dir)), len(batches)
