"""Entry point: the MNIST teacher study (issue 15): which teacher could the paper have had?

    python -m dfkd.teacher_study                                   # every variant of conf/mnist_teachers.yaml
    python -m dfkd.teacher_study 'variants=[cnn10,cnn10_same]'     # some of them
    make mnist-teachers

Each variant is a teacher yaml (``conf/teacher/cnn10*.yaml``). It is trained once and cached like every
teacher (:class:`dfkd.engine.sources.TrainedCNN`, with its progress bar), so a rerun trains only the
variants not cached yet; its measurements are stored per variant under ``study_dir`` and reused while
their config matches. Per variant and labelling mode (dropout off / on) one row: test MAE, RMSE and
RMSE/MAE; the labels it gives random-pixel images, random images drawn with the pixel variance as the std,
and direct-optimization images made against an untrained student, each against the authors' labels
(``reference_labels``: mean, std, range, two-sample Kolmogorov-Smirnov statistic and p-value). The
table (``tables_dir/mnist_teachers.md`` and ``.csv``) marks the row the selection criterion of
``conf/mnist_teachers.yaml`` picks, the teacher that ``experiment=table5_matched`` is meant to be run with.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dfkd import records
from dfkd.cell import get_teachers, load_data, resolve_device
from dfkd.cli import hydra_entry
from dfkd.core import rng
from dfkd.core.paths import CONF_DIR
from dfkd.core.validate import integer, number, pos_int
from dfkd.engine.distill import predict_rows
from dfkd.engine.perf import tune_process
from dfkd.errors import ConfigError
from dfkd.imports import build
from dfkd.models import build_stack
from dfkd.records import now_utc
from dfkd.settings import build_method, settings_from_dict
from dfkd.store import check_writable

#: Bump when the study's code changes its numbers, so stored numbers are redone.
STUDY_VERSION = 1
#: The paper's teacher (Table 5), the target of the selection criterion.
PAPER_TEACHER = {"MAE": 0.157, "RMSE": 0.165}
#: Image sets labelled by each variant: name -> the authors' method whose labels they are compared with.
IMAGE_SETS = {"random": "random", "random_var": "random", "direct": "direct"}
#: A label within this distance of an integer counts as "near an integer" (the authors' teacher gives 86 % of its
#: random-image labels and 90 % of its direct-optimization labels within it).
NEAR_INT = 0.05
BASELINE = "cnn10"


@dataclass
class StudyOptions:
    """The study's own settings (``conf/mnist_teachers.yaml``), validated."""

    variants: list
    label_dropout: list
    images: int
    direct_images: int
    direct_batch: int
    image_seed: int
    p_min: float
    reference: dict  # authors' method -> np.ndarray of labels
    reference_file: Path
    teacher_overrides: dict
    study_dir: Path
    tables_dir: Path
    recompute: bool


def teacher_yaml(name: str) -> dict:
    """``conf/teacher/<name>.yaml`` as a dict, its ``defaults`` (teacher yamls it extends) merged in first.

    Raises:
        ConfigError: no such yaml (one line listing the MNIST teachers there are).
    """
    from omegaconf import OmegaConf

    folder = CONF_DIR / "teacher"
    path = folder / f"{name}.yaml"
    if not path.is_file():
        there = sorted(p.stem for p in folder.glob("cnn*.yaml"))
        raise ConfigError(f"unknown teacher variant '{name}': no conf/teacher/{name}.yaml; the image teachers are "
                          f"{', '.join(there)}")
    own = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    parents = [d for d in own.pop("defaults", []) if d != "_self_"]
    merged = OmegaConf.create({})
    for parent in parents:
        merged = OmegaConf.merge(merged, teacher_yaml(str(parent)))
    return OmegaConf.to_container(OmegaConf.merge(merged, own), resolve=True)


def read_reference(path) -> dict:
    """The authors' teacher labels (``method,image,teacher_prediction``) as ``{method: labels}``.

    Raises:
        ConfigError: the file is missing or not of that form.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"reference labels {path} not found: set reference_labels=<the authors' "
                          f"authors_mnist_teacher_labels.csv> (or DFKD_REFERENCE_DIR to its folder)")
    try:
        frame = pd.read_csv(path)
        out = {str(m): g["teacher_prediction"].to_numpy(np.float64) for m, g in frame.groupby("method")}
    except (KeyError, ValueError, pd.errors.ParserError) as exc:
        raise ConfigError(f"reference labels {path} are not a method,image,teacher_prediction table: {exc}") from None
    missing = sorted({m for m in IMAGE_SETS.values()} - set(out))
    if missing:
        raise ConfigError(f"reference labels {path} lack the method(s) {', '.join(missing)}")
    return out


def study_options(cfg: dict, settings) -> StudyOptions:
    """Validate the study's settings (the cell's own are validated by :func:`dfkd.settings.settings_from_dict`).

    Raises:
        ConfigError: one line naming the fix.
    """
    if settings.dataset.inputs != "image":
        raise ConfigError(f"the teacher study is about the MNIST teacher: dataset={settings.dataset.name} holds "
                          f"tables; use dataset=mnist")
    variants = cfg.get("variants") or []
    variants = [variants] if isinstance(variants, str) else [str(v) for v in variants]
    if not variants or len(set(variants)) != len(variants):
        raise ConfigError(f"variants must list distinct teacher yamls, got {cfg.get('variants')!r}: "
                          f"e.g. variants=[cnn10,cnn10_same]")
    modes = cfg.get("label_dropout")
    modes = [modes] if isinstance(modes, bool) else list(modes or [])
    if not modes or not all(isinstance(m, bool) for m in modes):
        raise ConfigError(f"label_dropout must list true/false, got {cfg.get('label_dropout')!r}: e.g. [false,true]")
    p_min = number(cfg.get("p_min"), "p_min", 0.0)
    if p_min >= 1:
        raise ConfigError(f"p_min must lie in [0, 1), got {p_min}")
    ref_file = Path(str(cfg.get("reference_labels")))
    overrides = cfg.get("teacher_overrides") or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"teacher_overrides must map teacher settings to values, got {overrides!r}: "
                          f"e.g. teacher_overrides.epochs=1")
    for name in variants:  # every variant's teacher settings are checked before anything trains
        variant_teacher(name, False, overrides)
    return StudyOptions(
        variants=variants, label_dropout=list(dict.fromkeys(modes)), images=pos_int(cfg.get("images"), "images"),
        direct_images=integer(cfg.get("direct_images"), "direct_images", 0),
        direct_batch=pos_int(cfg.get("direct_batch"), "direct_batch"),
        image_seed=integer(cfg.get("image_seed"), "image_seed", 0), p_min=p_min,
        reference=read_reference(ref_file), reference_file=ref_file, teacher_overrides=dict(overrides),
        study_dir=Path(cfg.get("study_dir") or settings.results_dir / "mnist_teachers"),
        tables_dir=Path(cfg.get("tables_dir") or settings.results_dir / "tables"),
        recompute=bool(cfg.get("recompute", False)))


def variant_settings(name: str, overrides: dict | None = None) -> dict:
    """Variant ``name``'s teacher yaml with the study's ``teacher_overrides`` applied on top."""
    from omegaconf import OmegaConf

    merged = OmegaConf.merge(teacher_yaml(name), OmegaConf.create(dict(overrides or {})))
    return OmegaConf.to_container(merged, resolve=True)


def variant_teacher(name: str, label_dropout: bool = False, overrides: dict | None = None):
    """The teacher source of variant ``name`` (its yaml, then ``overrides``), with dropout on at labelling if asked."""
    cfg = dict(variant_settings(name, overrides), label_dropout=bool(label_dropout))
    return build(cfg, f"teacher '{name}'", f"check conf/teacher/{name}.yaml")


# -- comparisons --------------------------------------------------------------------
def compare(labels, reference) -> dict:
    """Summary of ``labels`` and the two-sample KS test against ``reference`` (scipy.stats.ks_2samp)."""
    from scipy.stats import ks_2samp

    a = np.asarray(labels, dtype=np.float64).ravel()
    b = np.asarray(reference, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("the KS comparison needs non-empty, finite labels on both sides")
    test = ks_2samp(a, b)
    return {"n": int(a.size), "mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()),
            "max": float(a.max()), "near_int": near_int(a), "ks": float(test.statistic), "p": float(test.pvalue)}


def near_int(labels) -> float:
    """Share of labels within :data:`NEAR_INT` of an integer."""
    a = np.asarray(labels, dtype=np.float64).ravel()
    return float((np.abs(a - np.round(a)) < NEAR_INT).mean()) if a.size else math.nan


def distance_to_paper(mae: float, rmse: float) -> float:
    """Relative distance of a teacher's (MAE, RMSE) from the paper's (0.157, 0.165)."""
    return math.hypot((mae - PAPER_TEACHER["MAE"]) / PAPER_TEACHER["MAE"],
                      (rmse - PAPER_TEACHER["RMSE"]) / PAPER_TEACHER["RMSE"])


def choose(rows: pd.DataFrame, p_min: float) -> tuple[int, str]:
    """The selection criterion of ``conf/mnist_teachers.yaml``: ``(index of the chosen row, why)``.

    Eligible: random-image KS p > ``p_min``; among them the smallest :func:`distance_to_paper` (ties: fewer
    epochs, then table order); none eligible: the largest random-image p-value ("no variant matches")."""
    eligible = rows[rows["random_p"] > p_min]
    if len(eligible):
        order = eligible.assign(_d=eligible["distance"]).sort_values(["_d", "epochs"], kind="stable")
        return int(order.index[0]), (f"closest to the paper's teacher among the {len(eligible)} rows whose "
                                     f"random-image labels pass KS p > {p_min}")
    best = rows["random_p"].astype(float).idxmax()
    return int(best), f"no variant matches (no row has random-image KS p > {p_min}): the largest p-value"


# -- the work ---------------------------------------------------------------------
def study_hash(settings, opts: StudyOptions, name: str, teacher_key: str) -> str:
    """Hash of everything that determines one variant's numbers."""
    return records.config_hash({
        "study": STUDY_VERSION, "teacher_key": teacher_key, "variant": name, "modes": opts.label_dropout,
        "images": opts.images, "direct_images": opts.direct_images, "direct_batch": opts.direct_batch,
        "image_seed": opts.image_seed, "student": settings.student_name, "subset": settings.subset,
        "method": [settings.method_target, settings.method_params],
        "reference": {k: v.round(6).tolist() for k, v in sorted(opts.reference.items())}})


def random_images(context, n: int, seed: int, variance_as_std: bool = False) -> torch.Tensor:
    """``(1, n, C, H, W)`` draws of the dataset's pixel sampler from a fixed stream (the same for every variant);
    ``variance_as_std``: each pixel ~ N(mean, sigma = var) instead of N(mean, sigma = sqrt(var)), clipped alike."""
    from dfkd.data.sampler import PixelSampler

    sampler = context.sampler
    if variance_as_std:
        if not isinstance(sampler, PixelSampler):
            raise ConfigError("the variance-as-std images need the pixel sampler (dataset synthetic.kind: pixel)")
        sampler = PixelSampler(sampler.mean, sampler.std ** 4)  # PixelSampler takes var; its std is then var
    stream = "teacher_study:random_var" if variance_as_std else "teacher_study:random"
    return sampler(rng.generators([seed], stream), n)


def direct_images(settings, opts: StudyOptions, teacher, context, device) -> torch.Tensor:
    """``(1, n, C, H, W)`` images made by the direct method (``settings.method``) against an untrained student,
    ``direct_batch`` at a time, from fixed streams."""
    seeds = [opts.image_seed]
    student = build_stack(settings.student.arch, context.input_shape, rng.generators(seeds, "teacher_study:student"),
                          device, **settings.student.arch_params)
    method = build_method(settings)
    method.set_real(None)
    method.bind(teacher, student, seeds, device, context)
    method.set_noise(rng.generators(seeds, "teacher_study:direct"))
    out, left = [], opts.direct_images
    while left > 0:
        m = min(opts.direct_batch, left)
        method.start_epoch(0, m)
        out.append(method.sample(m).detach())
        left -= m
    return torch.cat(out, 1)


def measure(settings, opts: StudyOptions, name: str, splits, context, device, log=print) -> dict:
    """Train (or load) variant ``name`` and measure it in each labelling mode; returns its stored numbers."""
    t0 = time.perf_counter()
    seeds = [opts.image_seed]
    out = {"variant": name, "modes": []}
    base_x = {"random": random_images(context, opts.images, opts.image_seed),
              "random_var": random_images(context, opts.images, opts.image_seed, variance_as_std=True)}
    for mode in opts.label_dropout:
        source = variant_teacher(name, mode, opts.teacher_overrides)
        teacher, infos = get_teachers(replace(settings, teacher=source), seeds, splits, device, log)
        info = infos[0]
        if "test" not in out:
            x_test = torch.as_tensor(splits[0].X_test).to(device).unsqueeze(0)
            plain = variant_teacher(name, False, opts.teacher_overrides)
            net, _ = get_teachers(replace(settings, teacher=plain), seeds, splits, device, log)
            err = (predict_rows(net, x_test, chunk=200)[0].cpu().double().numpy()
                   - np.asarray(splits[0].y_test, dtype=np.float64))
            mae, rmse = float(np.abs(err).mean()), float(np.sqrt((err * err).mean()))
            out["test"] = {"mae": mae, "rmse": rmse, "ratio": rmse / mae if mae > 0 else math.nan,
                           "miss": float((np.abs(err) > 0.5).mean()), "max_err": float(np.abs(err).max()),
                           "n": int(err.size)}
            out["teacher"] = {"epochs": int(info.get("epochs", 0)), "best_epoch": int(info.get("best_epoch", -1)) + 1,
                              "val_rmse": float(info.get("val_rmse", math.nan)), "key": source.key(
                                  settings.dataset, settings.split_key),
                              "settings": {k: v for k, v in variant_settings(name, opts.teacher_overrides).items()
                                           if k != "_target_"}}
        row = {"label_dropout": bool(mode)}
        for kind, x in base_x.items():
            labels = predict_rows(teacher, x.to(device), chunk=200)[0].cpu().numpy()
            row[kind] = compare(labels, opts.reference[IMAGE_SETS[kind]])
        if opts.direct_images:
            x = direct_images(settings, opts, teacher, context, device)
            labels = predict_rows(teacher, x, chunk=200)[0].cpu().numpy()
            row["direct"] = compare(labels, opts.reference[IMAGE_SETS["direct"]])
        out["modes"].append(row)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    out["created"], out["git_commit"] = now_utc(), records.git_commit()
    log(f"[teacher study] {name}: test MAE {out['test']['mae']:.4f}, RMSE {out['test']['rmse']:.4f}; random-image "
        f"labels mean {out['modes'][0]['random']['mean']:.2f} (KS p {out['modes'][0]['random']['p']:.2g}); "
        f"{out['wall_s']:.0f} s")
    return out


# -- the table --------------------------------------------------------------------
def changes(settings_of: dict, base: dict) -> str:
    """What a variant's yaml sets differently from the baseline's, as ``key=value`` text."""
    flat = lambda d, pre="": {f"{pre}{k}": v for k, v in d.items() if not isinstance(v, dict)} | {  # noqa: E731
        kk: vv for k, v in d.items() if isinstance(v, dict) for kk, vv in flat(v, f"{pre}{k}.").items()}
    a, b = flat(settings_of), flat(base)
    diff = [f"{k}={a[k]}" for k in sorted(a) if k != "name" and a.get(k) != b.get(k)]
    return ", ".join(diff) or "baseline"


def table_rows(numbers: list[dict], p_min: float) -> pd.DataFrame:
    """One row per variant and labelling mode, with the selection's distance and the chosen mark."""
    base = next((n["teacher"]["settings"] for n in numbers if n["variant"] == BASELINE), None)
    base = base or {k: v for k, v in teacher_yaml(BASELINE).items() if k != "_target_"}
    rows = []
    for n in numbers:
        t = n["test"]
        for mode in n["modes"]:
            row = {"variant": n["variant"], "label_dropout": mode["label_dropout"],
                   "changes": changes(n["teacher"]["settings"], base), "epochs": n["teacher"]["epochs"],
                   "best_epoch": n["teacher"]["best_epoch"], "test_mae": t["mae"], "test_rmse": t["rmse"],
                   "rmse_over_mae": t["ratio"], "test_miss_share": t["miss"], "test_n": t["n"],
                   "distance": distance_to_paper(t["mae"], t["rmse"])}
            for kind in ("random", "random_var", "direct"):
                for stat in ("mean", "std", "min", "max", "near_int", "ks", "p"):
                    row[f"{kind}_{stat}"] = mode.get(kind, {}).get(stat, math.nan)
            rows.append(row)
    frame = pd.DataFrame(rows)
    frame["chosen"] = False
    idx, why = choose(frame, p_min)
    frame.loc[idx, "chosen"] = True
    frame.attrs["why"] = why
    return frame


def _fmt(v, digits=3) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def _p(v) -> str:
    return "-" if not math.isfinite(v) else (f"{v:.3f}" if v >= 1e-3 else f"{v:.1e}")


def write_table(frame: pd.DataFrame, opts: StudyOptions, settings) -> list[Path]:
    """``mnist_teachers.md`` and ``.csv`` under ``tables_dir``."""
    ref = {k: v for k, v in opts.reference.items()}
    lines = [
        "# MNIST teacher study (issue 15): teacher variants against the paper's teacher", "",
        f"Each row: one teacher variant (`conf/teacher/<variant>.yaml`, cnn10 with the choices shown changed), "
        f"labelling with dropout off or on. Test metrics on {int(frame['test_n'].iloc[0])} test images "
        f"(paper: MAE {PAPER_TEACHER['MAE']}, RMSE {PAPER_TEACHER['RMSE']}, RMSE/MAE "
        f"{PAPER_TEACHER['RMSE'] / PAPER_TEACHER['MAE']:.2f}); miss = share of test images off by more than 0.5. "
        f"Labels of {opts.images} random-pixel images (the dataset's sampler), of {opts.images} drawn with the pixel "
        f"variance as the std, and of {opts.direct_images} direct-optimization images (eq. 8, against an untrained "
        f"student {settings.student_name}), each against the authors' 50 "
        f"(`{opts.reference_file.name}`: random mean {ref['random'].mean():.2f}, std {ref['random'].std():.2f}, "
        f"int {near_int(ref['random']):.2f}; direct mean {ref['direct'].mean():.2f}, std {ref['direct'].std():.2f}, "
        f"int {near_int(ref['direct']):.2f}): mean ± std (range; int = share within {NEAR_INT} of an integer), "
        f"two-sample KS statistic D and p-value.", "",
        f"Selection (fixed before any student result, `conf/mnist_teachers.yaml`): among rows with random-image "
        f"KS p > {opts.p_min}, the smallest relative distance to the paper's (MAE, RMSE); none: the largest p. "
        f"**Chosen**: {frame.attrs.get('why', '')}.", "",
        "| variant | label dropout | changes | epochs (best) | test MAE | test RMSE | RMSE/MAE | miss | distance "
        "| random labels | D, p | var-as-std labels | D, p | direct labels | D, p |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in frame.iterrows():
        name = f"**{r['variant']}** (chosen)" if r["chosen"] else r["variant"]
        cells = [name, "on" if r["label_dropout"] else "off", r["changes"], f"{r['epochs']} ({r['best_epoch']})",
                 _fmt(r["test_mae"], 4), _fmt(r["test_rmse"], 4), _fmt(r["rmse_over_mae"], 2),
                 _fmt(r["test_miss_share"], 4), _fmt(r["distance"], 2)]
        for kind in ("random", "random_var", "direct"):
            if not math.isfinite(r[f"{kind}_mean"]):
                cells += ["not run", "-"]
                continue
            cells += [f"{r[f'{kind}_mean']:.2f} ± {r[f'{kind}_std']:.2f} ({r[f'{kind}_min']:.2f}-{r[f'{kind}_max']:.2f}; "
                      f"int {r[f'{kind}_near_int']:.2f})",
                      f"{r[f'{kind}_ks']:.2f}, {_p(r[f'{kind}_p'])}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "Run: `make mnist-teachers` (or `python -m dfkd.teacher_study`); Table 5 with the chosen teacher: "
              "`make table5-matched TEACHER=<variant> [LABEL_DROPOUT=true]` (experiment=table5_matched)."]
    opts.tables_dir.mkdir(parents=True, exist_ok=True)
    md, csv = opts.tables_dir / "mnist_teachers.md", opts.tables_dir / "mnist_teachers.csv"
    records.atomic_write_bytes(md, ("\n".join(lines) + "\n").encode())
    records.atomic_write_bytes(csv, frame.to_csv(index=False, float_format="%.6g").encode())
    return [md, csv]


def run_study(cfg: dict, log=print) -> dict:
    """Train what is missing, measure (or reuse) every variant, write the table.

    Returns:
        ``{"table": [paths], "chosen": {"variant", "label_dropout"}, "measured": [names], "reused": [names]}``.
    """
    settings = settings_from_dict(cfg)
    opts = study_options(cfg, settings)
    for out in (opts.study_dir, opts.tables_dir):
        check_writable(out)
    tune_process(settings.threads)
    device = resolve_device(settings.device)
    splits, context = load_data(settings, settings.seeds[:1])
    numbers, measured, reused = [], [], []
    for i, name in enumerate(opts.variants):
        key = variant_teacher(name, False, opts.teacher_overrides).key(settings.dataset, settings.split_key)
        h = study_hash(settings, opts, name, key)
        path = opts.study_dir / f"{name}.json"
        stored = None
        if not opts.recompute and path.is_file():
            try:
                stored = json.loads(path.read_text())
            except (OSError, ValueError):
                stored = None
            if stored is not None and stored.get("config_hash") != h:
                stored = None
        if stored is None:
            log(f"[teacher study] variant {i + 1} of {len(opts.variants)}: {name}")
            stored = dict(measure(settings, opts, name, splits, context, device, log), config_hash=h)
            records.write_json(path, stored)
            measured.append(name)
        else:
            reused.append(name)
        numbers.append(stored)
    frame = table_rows(numbers, opts.p_min)
    paths = write_table(frame, opts, settings)
    pick = frame[frame["chosen"]].iloc[0]
    log(f"[teacher study] measured {len(measured)}, reused {len(reused)}; chosen {pick['variant']} (label dropout "
        f"{'on' if pick['label_dropout'] else 'off'}): {frame.attrs['why']}; table {paths[0]}")
    return {"table": [str(p) for p in paths], "measured": measured, "reused": reused,
            "chosen": {"variant": str(pick["variant"]), "label_dropout": bool(pick["label_dropout"])}}


# the `dfkd-teacher-study` command: python -m dfkd.teacher_study
main, cli = hydra_entry(lambda cfg: run_study(cfg, log=logging.getLogger("dfkd").info), "mnist_teachers")

if __name__ == "__main__":
    cli()
