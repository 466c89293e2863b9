"""The synthetic-data study (Figures 5 and 6) and the trace figures (Figures 7 and 8)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dfkd.core import rng
from dfkd.engine.distill import StudentConfig
from dfkd.engine.snapshots import check_snapshots, probe_snapshots
from dfkd.errors import ConfigError
from dfkd.data.context import Context
from dfkd.methods.de import DifferentialEvolution
from dfkd.methods.direct import Direct
from dfkd.methods.generator import Generator
from dfkd.methods.random import Random
from dfkd.models.mlp import MLPStack
from dfkd.report.figures import load_figure_specs, loss_violins, smooth, umap_panels, write_figure
from dfkd.study import spread, summarize
from conftest import REPO_ROOT, toy_split

PNG = b"\x89PNG\r\n\x1a\n"


def assert_images(paths, stem):
    assert [p.name for p in paths] == [f"{stem}.png", f"{stem}.pdf"]
    assert paths[0].read_bytes()[:8] == PNG and all(p.stat().st_size > 5000 for p in paths)


# -- Savitzky-Golay smoothing ----------------------------------------------------------------
@pytest.mark.parametrize("n", [2000, 15, 14, 4, 2])
def test_smoothing_keeps_the_curve_length(n):
    y = np.exp(-np.arange(n) / 50.0) + np.random.default_rng(0).normal(0, 0.01, n) + 0.1
    for log in (False, True):
        out = smooth(y, 15, 2, log=log)
        assert out.shape == y.shape and np.isfinite(out).all()
    if n >= 15:  # smoothing reduces the noise around the trend
        trend = np.exp(-np.arange(n) / 50.0) + 0.1
        assert np.abs(smooth(y) - trend).mean() < np.abs(y - trend).mean()


def test_smoothing_leaves_gaps_and_keeps_log_curves_positive():
    y = np.r_[np.logspace(0, -8, 100), np.nan]  # a loss trace whose last epoch has alpha 0 (no x_g)
    y[40] = 5.0  # a spike
    out = smooth(y, 15, 2, log=True)
    assert out.shape == y.shape and np.isnan(out[-1]) and (out[:-1] > 0).all()


# -- figures from fabricated numbers and traces ---------------------------------------------------
def fake_records(root: Path, epochs: int = 40):
    """Records with trace files for two datasets and every Table 4 variant, three seeds each."""
    gen = np.random.default_rng(0)
    for dataset in ("pole", "mv"):
        for variant in ("random-0", "generator-decreasing", "generator-1", "direct-decreasing", "direct-1"):
            method, alpha = variant.rsplit("-", 1)
            folder = root / dataset / "mlp50" / f"{method}-{alpha}"
            folder.mkdir(parents=True)
            for seed in (1, 2, 3):
                decay = np.exp(-np.arange(epochs) / 10.0)
                loss_g = np.full(epochs, np.nan) if alpha == "0" else decay * gen.lognormal(0, 1, epochs)
                np.savez(folder / f"seed{seed:02d}.trace.npz", val_rmse=0.2 + decay + gen.normal(0, 0.01, epochs),
                         loss_g=loss_g.astype(np.float32), loss_p=np.ones(epochs, np.float32))
                (folder / f"seed{seed:02d}.json").write_text(json.dumps(dict(
                    schema=1, kind="distill", experiment="quick", dataset=dataset, method=method, alpha=alpha,
                    variant=variant, student="mlp50", seed=seed, status="ok", test_rmse=0.3, epochs=epochs,
                    created="2024-01-01", trace_file=f"seed{seed:02d}.trace.npz")))


def test_figures_7_and_8_from_fabricated_traces(tmp_path):
    from dfkd.report import load_records

    fake_records(tmp_path / "records")
    df = load_records(tmp_path / "records")
    specs = load_figure_specs()
    for name, n_variants in (("fig7", 5), ("fig8", 2)):
        paths, n = write_figure(df, specs[name], tmp_path / "figures")
        assert n == n_variants
        assert_images(paths, name)


def test_figures_5_and_6_from_fabricated_numbers(tmp_path):
    gen = np.random.default_rng(1)
    losses = pd.DataFrame([{"epoch": e, "method": m, "row": i, "loss": float(gen.lognormal(-e / 100, 2))}
                           for e in (0, 50, 500) for m in ("random", "generator", "direct", "de") for i in range(30)])
    losses.loc[0, "loss"] = 0.0  # an exact zero is drawn at the floor of the log axis
    assert_images(loss_violins(losses, tmp_path, "fig5", "Figure 5", "fabricated", val_rmse={50: 0.3}), "fig5")
    points = pd.DataFrame([{"epoch": e, "source": s, "umap1": gen.normal(), "umap2": gen.normal()}
                           for e in (0, 50, 500) for s, n in (("real", 60), ("generator", 20), ("direct", 20))
                           for _ in range(n)])
    assert_images(umap_panels(points, tmp_path, "fig6", "Figure 6", "fabricated", notes={0: "spread"}), "fig6")


def test_numbers_behind_the_figures():
    losses = pd.DataFrame({"epoch": [0] * 5, "method": ["direct"] * 5, "loss": [1.0, 2.0, 3.0, 4.0, 5.0]})
    row = summarize(losses).iloc[0]
    assert (row["rows"], row["median"], row["q1"], row["q3"]) == (5, 3.0, 2.0, 4.0)
    same = np.zeros((4, 3))
    assert spread(same, same + 1.0) == (0.0, 0.0, pytest.approx(np.sqrt(3)))  # collapsed rows: no spread
    real = np.eye(3)
    assert spread(real, real) == pytest.approx((np.sqrt(2),) * 3)  # the nearest *other* row counts


# -- snapshots and probes ---------------------------------------------------------------------
def test_snapshots_and_probes_give_batches_of_the_right_shape():
    d, seeds, rows = 6, [1, 2], 8
    splits = [toy_split(s, d=d, n_val=30) for s in seeds]
    teacher = MLPStack.init(d, 20, 1, rng.generators(seeds, "teacher"))
    box = (torch.full((d,), -3.0), torch.full((d,), 3.0))
    probes = {"random": Random(), "generator": Generator(hidden=16), "direct": Direct(),
              "de": DifferentialEvolution(objective={"disagreement": 1.0, "gamma": 1e-5}, generations=3)}
    cfg = StudentConfig(hidden=5, epochs=6)
    snaps, traces = probe_snapshots(teacher, splits, seeds, probes, [0, 3, 6], rows, cfg, contexts={
        "de": Context((d,), bounds=box)})
    assert [s.epoch for s in snaps] == [0, 3, 6]
    for snap in snaps:
        assert set(snap.batches) == set(probes) == set(snap.losses)
        for name in probes:
            assert snap.batches[name].shape == (2, rows, d)
            assert snap.losses[name].shape == (2, rows) and (snap.losses[name] >= 0).all()
        assert snap.batches["de"].abs().max() <= 3.0  # differential evolution stays in its box
    # the snapshot is the engine's student after that many epochs (its validation RMSE is the trace's)
    torch.testing.assert_close(snaps[1].val_rmse, traces["val_rmse"][2])
    torch.testing.assert_close(snaps[2].val_rmse, traces["val_rmse"][5])
    # the generator trains alongside (one round per epoch), so its rows change between snapshots
    assert not torch.equal(snaps[0].batches["generator"], snaps[1].batches["generator"])


@pytest.mark.parametrize("snapshots,match", [
    ([0, 100, 50], "increasing"), ([50, 50], "increasing"), ([-1, 5], "increasing"),
    ([0, 600], "beyond epochs=500"), ([], "empty"), (["a"], "list of epochs"), ([0.5], "list of epochs")])
def test_bad_snapshots_are_refused(snapshots, match):
    with pytest.raises(ConfigError, match=match):
        check_snapshots(snapshots, 500)
    assert check_snapshots([0, 50, 100, 500], 500) == [0, 50, 100, 500]


# -- bad input from the shell: one line naming the fix, exit 2, no traceback ----------------------
def run_module(module, args, tmp: Path):
    env = dict(os.environ, HYDRA_FULL_ERROR="0", PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env,
                          cwd=tmp, timeout=300)  # ~3 CPU s; generous for a busy machine


@pytest.mark.parametrize("args,message", [
    (["dataset=nope"], "unknown dataset 'nope': choose one of"),
    (["snapshots=[0,100,50]"], "snapshots must be increasing"),
    (["snapshots=[0,50,600]"], "snapshot epoch 600 lies beyond epochs=500: set epochs=600"),
])
def test_study_bad_input_is_one_line(args, message, tmp_path):
    proc = run_module("dfkd.study", [f"results_dir={tmp_path / 'results'}", "data_mirror=null", *args], tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_trace_figure_without_traces_is_one_line(tmp_path):
    (tmp_path / "records").mkdir()
    proc = run_module("dfkd.report", ["--records", str(tmp_path / "records"), "--figures", "fig7",
                                      "--figures-out", str(tmp_path / "figures")], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "holds no readable record" in lines[0] and "--records" in lines[0]
    assert not (tmp_path / "figures").exists()
    # records without their trace files: the figure names what makes them
    import json

    cell = tmp_path / "records" / "cpusmall" / "mlp50" / "random-0"
    cell.mkdir(parents=True)
    (cell / "seed01.json").write_text(json.dumps({"schema": 1, "kind": "distill", "dataset": "cpusmall", "method": "random",
                                                  "alpha": "0", "student": "mlp50", "seed": 1, "status": "ok",
                                                  "test_rmse": 0.2, "trace_file": "seed01.trace.npz"}))
    proc = run_module("dfkd.report", ["--records", str(tmp_path / "records"), "--figures", "fig7",
                                      "--figures-out", str(tmp_path / "figures")], tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: no traces for fig7") and "make table4" in lines[0]


@pytest.mark.slow
def test_study_end_to_end_on_real_data_then_redraws_without_training(tmp_path, data_mirror):
    """A tiny real study (indoorloc, cached or freshly trained teacher): numbers, figures, then reuse."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from dfkd.cli import CONF_DIR
    from dfkd.study import run_study

    overrides = ["epochs=4", "snapshots=[0,4]", "rows=10", "real_rows=40", "probes.de.generations=2",
                 f"results_dir={tmp_path}", f"data_mirror={data_mirror}", "progress=false"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = OmegaConf.to_container(compose("study", overrides=overrides), resolve=True)
    first = run_study(cfg, log=lambda *_: None)
    assert first["status"] == "done" and len(first["figures"]) == 4
    folder = Path(first["numbers"])
    losses = pd.read_csv(folder / "fig5_loss.csv")
    assert len(losses) == 2 * 4 * 10 and set(losses["method"]) == {"random", "generator", "direct", "de"}
    umap = pd.read_csv(folder / "fig6_umap.csv")
    assert len(umap) == 2 * (40 + 10 + 10)
    assert run_study(cfg, log=lambda *_: None)["status"] == "reused"
