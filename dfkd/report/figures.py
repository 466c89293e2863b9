"""Figures from run records (never trains): paper Figures 9 and 10 for image runs.

A *figure spec* is the ``FIGURE`` dict of an ``experiments/fig*.py`` module:
``name``, ``title``, ``kind`` (``synthetic_grid`` or ``prediction_hist``),
``dataset``, ``student`` and ``columns`` (list of ``(label, variant)``). Image
runs keep a batch of synthetic inputs and the teacher's predictions on them in
their trace file (``synthetic_x``, ``synthetic_t``); each figure takes them from
the lowest seed of each variant.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

from dfkd.errors import ConfigError

KINDS = ("synthetic_grid", "prediction_hist")


def load_figure_specs(experiments_dir=None) -> dict[str, dict]:
    """Discover the ``FIGURE`` dicts in ``experiments/fig*.py``, by name."""
    if experiments_dir is None:
        import dfkd

        experiments_dir = Path(dfkd.__file__).resolve().parents[1] / "experiments"
    specs = {}
    for path in sorted(Path(experiments_dir).glob("fig*.py")):
        mod_spec = importlib.util.spec_from_file_location(f"_dfkd_experiment_{path.stem}", path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
        fig = getattr(module, "FIGURE", None)
        if fig is None:
            continue
        missing = [k for k in ("name", "title", "kind", "dataset", "student", "columns") if k not in fig]
        if missing or fig.get("kind") not in KINDS:
            raise ConfigError(f"{path}: FIGURE lacks {', '.join(missing) or 'a known kind'} (kinds: {', '.join(KINDS)})")
        specs[fig["name"]] = fig
    return dict(sorted(specs.items()))


def synthetic_batches(df: pd.DataFrame, spec: dict) -> dict[str, dict]:
    """Per column label: ``{"x": (k, C, H, W), "t": (k,), "seed": s, "path": record}`` of the lowest seed run.

    Columns without a finished image run are left out.
    """
    out = {}
    if df.empty:
        return out
    rows = df[(df["dataset"] == spec["dataset"]) & (df["student"] == spec["student"]) & (df["status"] == "ok")]
    for label, variant in spec["columns"]:
        v = rows[rows["variant"] == variant]
        for rec in v.sort_values(["seed", "created"]).itertuples():
            trace = Path(rec.path).parent / str(getattr(rec, "trace_file", "") or "")
            if not trace.is_file():
                continue
            with np.load(trace) as arrays:
                if "synthetic_x" not in arrays:
                    continue
                out[label] = {"x": arrays["synthetic_x"], "t": arrays["synthetic_t"], "seed": int(rec.seed),
                              "path": rec.path, "experiment": rec.experiment}
            break
    return out


def _save(fig, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    return paths


def _subtitle(batches: dict) -> str:
    experiments = sorted({str(b["experiment"]) for b in batches.values()})
    note = "; ".join("quick: reduced budget" if e == "quick" else e for e in experiments)
    return f"runs: {note}" if note else ""


def synthetic_grid(batches: dict, spec: dict, out_dir: Path, per_row: int = 6) -> list[Path]:
    """Figure 9: a small grid of synthetic images per method, each titled with the teacher's prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label for label, _ in spec["columns"]]
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
    fig.suptitle(f"{spec['title']}\n{_subtitle(batches)}".strip(), fontsize=11)
    fig.tight_layout()
    paths = _save(fig, Path(out_dir), spec["name"])
    plt.close(fig)
    return paths


def prediction_hist(batches: dict, spec: dict, out_dir: Path) -> list[Path]:
    """Figure 10: histograms of the teacher's predictions on a batch of synthetic images, one panel per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label for label, _ in spec["columns"]]
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
    fig.suptitle(f"{spec['title']}\n{_subtitle(batches)}".strip(), fontsize=11)
    fig.tight_layout()
    paths = _save(fig, Path(out_dir), spec["name"])
    plt.close(fig)
    return paths


def write_figure(df: pd.DataFrame, spec: dict, out_dir) -> tuple[list[Path], int]:
    """Draw one figure spec from records; returns its files and how many columns had data."""
    batches = synthetic_batches(df, spec)
    draw = synthetic_grid if spec["kind"] == "synthetic_grid" else prediction_hist
    return draw(batches, spec, Path(out_dir)), len(batches)
