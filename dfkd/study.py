"""Entry point: the synthetic-data study, paper section 4.1 (Figures 5 and 6).

    python -m dfkd.study                                  # indoorloc, snapshots at epochs 0, 50, 100, 500
    python -m dfkd.study dataset=pole figures=[fig5]      # any tabular dataset; one figure
    python -m dfkd.study epochs=100 snapshots=[0,10,50,100] results_dir=results/quick experiment_name=quick

One student (seed ``first_seed``) is trained with random sampling and probed at each snapshot epoch by
every method under ``probes`` (:mod:`dfkd.engine.snapshots`); real test rows are embedded together with
the generator's and direct optimization's rows by UMAP. The numbers go to ``study_dir/<dataset>/`` as
CSV (``fig5_loss.csv``: every row's loss; ``fig5_summary.csv``: median and quartiles; ``fig6_umap.csv``:
the embedding; ``fig6_spread.csv``: how spread out each method's rows are) with ``study.json``; the
figures go to ``figures_dir``. A rerun whose config matches ``study.json`` redraws from the CSVs without
training (``recompute=true`` forces the work). Settings: ``conf/study.yaml``.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dfkd import records
from dfkd.cli import hydra_entry
from dfkd.engine.perf import tune_process
from dfkd.core.rng import stream_seed
from dfkd.engine.snapshots import check_snapshots, probe_snapshots
from dfkd.errors import ConfigError
from dfkd.data.context import Context
from dfkd.cell import cell_hash, get_teachers, load_data, resolve_device
from dfkd.core.progress import progress_bar, student_progress
from dfkd.core.validate import pos_int
from dfkd.records import now_utc
from dfkd.settings import build_method, settings_from_dict
from dfkd.store import check_writable

FIGURES = ("fig5", "fig6")
#: Methods whose rows Figure 6 embeds with the real rows (the paper's choice).
UMAP_SOURCES = ("generator", "direct")
#: Bump when the study's code changes its numbers, so stored numbers are redone.
STUDY_VERSION = 3
FILES = {"losses": "fig5_loss.csv", "umap": "fig6_umap.csv", "spread": "fig6_spread.csv"}


@dataclass
class StudyOptions:
    """The study's own settings (``conf/study.yaml``), validated."""

    snapshots: list
    rows: int
    real_rows: int
    de_box: float
    umap: dict
    figures: list
    figures_dir: Path
    study_dir: Path
    recompute: bool
    probes: dict  # name -> (target, params)


def study_options(cfg: dict, settings) -> StudyOptions:
    """Validate the study's settings (the cell's own are validated by :func:`dfkd.settings.settings_from_dict`).

    Raises:
        ConfigError: one line naming the fix.
    """
    name = settings.dataset.name
    if settings.dataset.inputs != "table":
        raise ConfigError(f"dataset {name} holds images: the study embeds table rows; use a tabular dataset "
                          f"(e.g. dataset=indoorloc)")
    if not settings.teacher.differentiable:
        raise ConfigError(f"teacher={settings.teacher_name} is a black box: the study's generator and direct probes "
                          f"need the teacher's gradients; use a network teacher (teacher=mlp500)")
    if settings.method_name != "random" or settings.alpha.label != "0":
        raise ConfigError(f"the study trains its student with random sampling, not method={settings.method_name} "
                          f"alpha={settings.alpha.label}: drop those overrides (the probed methods are probes.<name>)")
    if len(settings.seeds) != 1:
        raise ConfigError(f"the study follows one student, got seeds {settings.seeds}: set seeds=1 "
                          f"(first_seed=<s> picks which)")
    probes = cfg.get("probes") or {}
    if not isinstance(probes, dict) or not probes:
        raise ConfigError("probes must map names to method configs: e.g. probes.random=..., see conf/study.yaml")
    parsed = {}
    for key, params in probes.items():
        params = dict(params or {}) if isinstance(params, dict) else None
        if not params or not params.get("_target_"):
            raise ConfigError(f"probes.{key} has no _target_: give a method config (see conf/method/)")
        target = params.pop("_target_")
        params.pop("name", None)
        parsed[str(key)] = (str(target), params)
    rows = pos_int(cfg.get("rows"), "rows")
    if "de" in parsed and rows < 5:
        raise ConfigError(f"rows={rows} is below differential evolution's smallest population: set rows=5 or more")
    figures = cfg.get("figures") or []
    figures = [figures] if isinstance(figures, str) else list(figures)
    unknown = [f for f in figures if f not in FIGURES]
    if unknown:
        raise ConfigError(f"unknown figure {', '.join(map(str, unknown))} for the study: choose from "
                          f"{', '.join(FIGURES)} (e.g. figures=[fig5])")
    try:
        de_box = float(cfg.get("de_box"))
    except (TypeError, ValueError):
        de_box = float("nan")
    if not de_box > 0 or not np.isfinite(de_box):
        raise ConfigError(f"de_box must be a positive number, got {cfg.get('de_box')!r}: set e.g. de_box=3")
    umap = cfg.get("umap") or {}
    if not isinstance(umap, dict):
        raise ConfigError(f"umap must be a mapping of umap.UMAP settings, got {umap!r}")
    return StudyOptions(
        snapshots=check_snapshots(cfg.get("snapshots"), settings.student.epochs), rows=rows,
        real_rows=pos_int(cfg.get("real_rows"), "real_rows"), de_box=de_box, umap=dict(umap), figures=figures,
        figures_dir=Path(cfg.get("figures_dir") or settings.results_dir / "figures"),
        study_dir=Path(cfg.get("study_dir") or settings.results_dir / "study"),
        recompute=bool(cfg.get("recompute", False)), probes=parsed)


def study_hash(settings, opts: StudyOptions) -> str:
    """Hash of everything that determines the study's numbers (the studied cell's hash plus the probes)."""
    seed = settings.seeds[0]
    return records.config_hash({
        "study": STUDY_VERSION, "cell": cell_hash(settings, seed, settings.alpha.default_batch_size()),
        "snapshots": opts.snapshots, "rows": opts.rows, "real_rows": opts.real_rows, "de_box": opts.de_box,
        "umap": opts.umap, "probes": opts.probes})


# -- the work ---------------------------------------------------------------------
def embed(parts: dict, params: dict) -> dict:
    """2-D UMAP (umap-learn) of several row sets fitted together; returns each set's ``(n, 2)`` coordinates."""
    import umap

    names = list(parts)
    X = np.concatenate([np.asarray(parts[n], dtype=np.float32).reshape(len(parts[n]), -1) for n in names])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap notes that a fixed random_state makes it single-threaded
        coords = umap.UMAP(n_components=2, **params).fit_transform(X)
    out, start = {}, 0
    for n in names:
        out[n] = coords[start:start + len(parts[n])]
        start += len(parts[n])
    return out


def spread(rows: np.ndarray, real: np.ndarray) -> tuple[float, float, float]:
    """How spread out rows are and how near the real rows, in input space (Euclidean distances).

    Returns:
        ``(mean pairwise distance of the rows, mean distance from each row to its nearest other row,
        mean distance from each row to its nearest real row)``; for the real rows themselves the
        nearest *other* real row counts.
    """
    x = torch.as_tensor(np.asarray(rows, dtype=np.float64))
    r = torch.as_tensor(np.asarray(real, dtype=np.float64))
    n = x.shape[0]
    pair = torch.cdist(x, x)
    mean_pair = float(pair.sum() / (n * (n - 1))) if n > 1 else float("nan")
    nearest = float(pair.fill_diagonal_(float("inf")).min(1).values.mean()) if n > 1 else float("nan")
    to_real = torch.cdist(x, r)
    if x.shape == r.shape and torch.equal(x, r):
        to_real.fill_diagonal_(float("inf"))
    return mean_pair, nearest, float(to_real.min(1).values.mean())


def compute(settings, opts: StudyOptions, log=print) -> dict:
    """Train the student, probe it at the snapshots, embed and measure the rows; returns the study's numbers."""
    t0 = time.perf_counter()
    tune_process(settings.threads)
    device = resolve_device(settings.device)
    seeds, name = settings.seeds, settings.dataset.name
    splits, context = load_data(settings, seeds)
    teacher, tinfo = get_teachers(settings, seeds, splits, device, log)
    probes = {key: build_method(replace(settings, method_name=key, method_target=target, method_params=params))
              for key, (target, params) in opts.probes.items()}
    box = context.bounds
    if box is None:
        box = (torch.full(context.input_shape, -opts.de_box), torch.full(context.input_shape, opts.de_box))
    contexts = {key: Context(context.input_shape, context.sampler, box) for key in probes if key == "de"}
    log(f"[{name}] study: student {settings.student_name} seed {seeds[0]}, {settings.student.epochs} epochs of random "
        f"sampling; probes {', '.join(probes)} draw {opts.rows} rows at epochs {opts.snapshots}")
    bar = progress_bar(settings.progress, settings.student.epochs, f"{name} study")
    snaps, _ = probe_snapshots(teacher, splits, seeds, probes, opts.snapshots, opts.rows, settings.student, device,
                               context, contexts, progress=student_progress(bar))
    if bar is not None:
        bar.close()
    t_probe = time.perf_counter() - t0

    X_test = np.asarray(splits[0].X_test)
    pick = np.random.default_rng(stream_seed(seeds[0], "study:real_rows")).choice(len(X_test), min(opts.real_rows, len(X_test)),
                                                                 replace=False)
    real = X_test[np.sort(pick)]
    losses, points, spreads = [], [], []
    for snap in snaps:
        for key, loss in snap.losses.items():
            losses.append(pd.DataFrame({"epoch": snap.epoch, "method": key, "row": np.arange(loss.shape[1]),
                                        "loss": loss[0].numpy().astype(np.float64)}))
        batches = {key: snap.batches[key][0].reshape(opts.rows, -1).numpy() for key in snap.batches}
        for key, rows in [("real", real)] + list(batches.items()):
            pair, neighbour, near = spread(rows, real)
            spreads.append({"epoch": snap.epoch, "source": key, "rows": len(rows), "mean_pairwise_distance": pair,
                            "nearest_neighbour_distance": neighbour, "nearest_real_distance": near})
        parts = {"real": real, **{k: batches[k] for k in UMAP_SOURCES if k in batches}}
        for key, xy in embed(parts, opts.umap).items():
            points.append(pd.DataFrame({"epoch": snap.epoch, "source": key, "row": np.arange(len(xy)),
                                        "umap1": xy[:, 0], "umap2": xy[:, 1]}))
    spreads = pd.DataFrame(spreads)
    real_pair = spreads[spreads["source"] == "real"].set_index("epoch")["mean_pairwise_distance"]
    spreads["spread_vs_real"] = spreads["mean_pairwise_distance"] / spreads["epoch"].map(real_pair)
    meta = {"dataset": name, "student": settings.student_name, "seed": seeds[0], "experiment": settings.experiment,
            "snapshots": opts.snapshots, "rows": opts.rows, "real_rows": int(len(real)),
            "val_rmse": {str(s.epoch): float(s.val_rmse[0]) for s in snaps},
            "teacher_test_rmse": float(tinfo[0]["test_rmse"]), "probes": {k: list(v) for k, v in opts.probes.items()},
            "de_box": opts.de_box, "umap": opts.umap, "probe_s": round(t_probe, 1),
            "wall_s": round(time.perf_counter() - t0, 1), "created": now_utc(), "git_commit": records.git_commit(),
            "device": str(device)}
    log(f"[{name}] study: trained and probed in {t_probe:.0f} s, embedded in {meta['wall_s'] - t_probe:.0f} s")
    return {"losses": pd.concat(losses, ignore_index=True), "umap": pd.concat(points, ignore_index=True),
            "spread": spreads, "meta": meta}


# -- stored numbers -----------------------------------------------------------------
def summarize(losses: pd.DataFrame) -> pd.DataFrame:
    """Median, quartiles, mean and max of the loss per snapshot epoch and method (the numbers behind Figure 5)."""
    grouped = losses.groupby(["epoch", "method"], sort=False)["loss"]
    out = grouped.agg(rows="count", median="median", q1=lambda v: v.quantile(0.25),
                      q3=lambda v: v.quantile(0.75), mean="mean", max="max").reset_index()
    return out


def save_numbers(folder: Path, key: str, numbers: dict) -> None:
    """Write the CSVs and ``study.json`` (last: its presence with ``key`` means the CSVs are complete)."""
    for part, file in FILES.items():
        records.atomic_write_bytes(folder / file, numbers[part].to_csv(index=False, float_format="%.6g").encode())
    records.atomic_write_bytes(folder / "fig5_summary.csv",
                               summarize(numbers["losses"]).to_csv(index=False, float_format="%.6g").encode())
    records.write_json(folder / "study.json", dict(numbers["meta"], config_hash=key))


def load_numbers(folder: Path, key: str) -> dict | None:
    """The stored numbers of config ``key``, or None when absent, of another config or incomplete."""
    try:
        meta = json.loads((folder / "study.json").read_text())
        if meta.get("config_hash") != key:
            return None
        return {part: pd.read_csv(folder / file) for part, file in FILES.items()} | {"meta": meta}
    except (OSError, ValueError):
        return None


def draw(numbers: dict, opts: StudyOptions) -> list[Path]:
    """Figures 5 and 6 (those in ``opts.figures``) from the study's numbers."""
    from dfkd.report.figures import loss_violins, runs_note, umap_panels

    meta = numbers["meta"]
    who = f"{meta['dataset']}, student {meta['student']}, seed {meta['seed']}"
    note = f"{meta['rows']} rows per method and snapshot; {runs_note({meta['experiment']})}"
    paths = []
    if "fig5" in opts.figures:
        paths += loss_violins(numbers["losses"], opts.figures_dir, "fig5",
                              f"Figure 5: student loss of synthetic data at snapshots of training ({who})", note,
                              val_rmse={int(k): v for k, v in meta["val_rmse"].items()})
    if "fig6" in opts.figures:
        sp = numbers["spread"]
        notes = {}
        for epoch, at in sp.groupby("epoch"):
            at = at.set_index("source")
            shown = [k for k in UMAP_SOURCES if k in at.index]
            notes[epoch] = "\n".join(
                f"{what}: " + ", ".join(f"{k} {at.loc[k, column]:.1f}" for k in shown) + f" (real {at.loc['real', column]:.1f})"
                for what, column in (("nearest own row", "nearest_neighbour_distance"),
                                     ("nearest real row", "nearest_real_distance")))
        paths += umap_panels(numbers["umap"], opts.figures_dir, "fig6",
                             f"Figure 6: real test rows and synthetic rows, 2-D UMAP per snapshot ({who})",
                             f"{meta['real_rows']} real rows; {note}\nunder each panel: mean distance in input "
                             f"space from a row to the nearest other row of its method, and to the nearest real row",
                             notes=notes)
    return paths


def run_study(cfg: dict, log=print) -> dict:
    """Run (or reuse) the study for a resolved config dict (``conf/study.yaml``) and draw its figures.

    Returns:
        ``{"status": "done"|"reused", "figures": [paths], "numbers": folder}``.
    """
    settings = settings_from_dict(cfg)
    opts = study_options(cfg, settings)
    folder = opts.study_dir / settings.dataset.name
    for out in (opts.figures_dir, folder):
        check_writable(out)
    key = study_hash(settings, opts)
    numbers = None if opts.recompute else load_numbers(folder, key)
    status = "reused"
    if numbers is None:
        numbers = compute(settings, opts, log)
        save_numbers(folder, key, numbers)
        status = "done"
    else:
        log(f"[{settings.dataset.name}] study: numbers of this config found in {folder}: redrawing "
            f"(recompute=true redoes them)")
    paths = draw(numbers, opts)
    log(f"study: {', '.join(map(str, paths)) or 'no figures asked'}; numbers in {folder}")
    return {"status": status, "figures": [str(p) for p in paths], "numbers": str(folder)}


# the `dfkd-study` command: python -m dfkd.study
main, cli = hydra_entry(lambda cfg: run_study(cfg, log=logging.getLogger("dfkd").info), "study")

if __name__ == "__main__":
    cli()
