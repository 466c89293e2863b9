"""The MNIST teacher study (issue 15): its preset, the teacher settings it varies, the KS comparison, a tiny end-to-end
run, the Table 5 comparison page and its mistakes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dfkd.core import rng
from dfkd.data.split import Split
from dfkd.engine.supervised import CNNTeacherConfig, train_supervised
from dfkd.errors import ConfigError
from dfkd.models.cnn import CNNStack, LabelDropoutCNN, glorot_params, padding_value

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference" / "authors_mnist_teacher_labels.csv"
pytestmark = pytest.mark.usefixtures("one_thread")


def compose(overrides=()):
    from hydra import compose as hydra_compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = hydra_compose("mnist_teachers", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


def fake_reference(tmp: Path) -> Path:
    """A reference file shaped like the authors' (50 labels per method)."""
    g = np.random.default_rng(0)
    rows = [("random", i, float(4.2 + 0.3 * g.standard_normal())) for i in range(50)]
    rows += [("direct", i, float(g.integers(0, 10))) for i in range(50)]
    rows += [("generator", i, float(4.4 + 0.1 * g.standard_normal())) for i in range(50)]
    path = tmp / "labels.csv"
    pd.DataFrame(rows, columns=["method", "image", "teacher_prediction"]).to_csv(path, index=False)
    return path


def tiny_split(n=40, seed=0):
    g = np.random.default_rng(seed)

    def part(k):
        return g.random((k, 1, 28, 28), dtype=np.float32), g.integers(0, 10, k).astype(np.float32)

    (a, b), (c, d), (e, f) = part(n), part(n // 2), part(n // 2)
    return Split(X_train=a, y_train=b, X_val=c, y_val=d, X_test=e, y_test=f)


# -- the preset and the settings reaching the model -------------------------------------
def test_preset_composes_and_every_variant_builds():
    from dfkd.teacher_study import variant_teacher

    cfg = compose()
    assert cfg["dataset"]["name"] == "mnist" and cfg["method"]["name"] == "direct_mnist"
    assert cfg["variants"][0] == "cnn10" and len(cfg["variants"]) == len(set(cfg["variants"])) >= 10
    configs = {name: variant_teacher(name).config for name in cfg["variants"]}
    base = configs["cnn10"]
    want = {"cnn10_e5": ("epochs", 5), "cnn10_e30": ("epochs", 30), "cnn10_e50": ("epochs", 50),
            "cnn10_mse": ("loss", "mse"), "cnn10_b32": ("batch_size", 32), "cnn10_b128": ("batch_size", 128),
            "cnn10_lr1e4": ("lr", 1e-4), "cnn10_glorot": ("init", "glorot"), "cnn10_last": ("select", "last"),
            "cnn10_full": ("carve_out", False)}
    for name, (field, value) in want.items():
        assert getattr(configs[name], field) == value != getattr(base, field), name
    assert configs["cnn10_same"].arch_params["padding"] == 1 and base.arch_params["padding"] == 0
    assert (configs["cnn10_keras"].init, configs["cnn10_keras"].batch_size, configs["cnn10_keras"].weight_decay,
            configs["cnn10_keras"].carve_out) == ("glorot", 32, 0.0, False)
    assert variant_teacher("cnn10", True).label_dropout and not variant_teacher("cnn10").label_dropout


def test_cnn10_keeps_its_cache_key_and_cell_hashes(tmp_path, data_mirror):
    """New settings at their defaults leave the committed Table 5 records' teacher key and config hash."""
    from conftest import tiny_settings
    from dfkd.cell import cell_hash

    record = REPO / "results" / "reference" / "records" / "mnist" / "cnn5" / "random-0" / "seed01.json"
    if not record.is_file():
        pytest.skip("no committed Table 5 record")
    rec = json.loads(record.read_text())
    s = tiny_settings(tmp_path, data_mirror, ["experiment=table5", "variant=random-0", "seeds=[1,2,3]"])
    assert s.teacher_key() == rec["teacher_key"]
    assert cell_hash(s, 1, rec["batch_size"]) == rec["config_hash"]
    dropout = tiny_settings(tmp_path, data_mirror, ["experiment=table5", "variant=random-0", "seeds=[1,2,3]",
                                                    "teacher.label_dropout=true"])
    assert dropout.teacher_key() == rec["teacher_key"]  # the same trained network ...
    assert cell_hash(dropout, 1, rec["batch_size"]) != rec["config_hash"]  # ... but other students
    same = tiny_settings(tmp_path, data_mirror, ["experiment=table5_matched", "teacher=cnn10_same", "variant=random-0"])
    assert same.teacher_key() != rec["teacher_key"] and same.experiment == "table5_matched"


def test_padding_changes_the_feature_maps():
    gens = rng.generators([1], "t")
    valid, same = CNNStack.init(10, gens, padding="valid"), CNNStack.init(10, rng.generators([1], "t"), padding="same")
    assert (valid.padding, same.padding) == (0, 1)
    assert (valid.flat_width, same.flat_width) == (40 * 25, 40 * 49)
    x = torch.rand(1, 3, 1, 28, 28)
    assert valid._convs(valid.views(valid.flat), x).shape[-1] == 1000
    assert same._convs(same.views(same.flat), x).shape[-1] == 1960
    assert same.predict(x).shape == (1, 3)


def test_dropout_at_labelling_changes_the_outputs():
    params = CNNStack.init(5, rng.generators([1], "t")).replica_params(0)
    plain = CNNStack.from_params([params, params], 5)
    noisy = LabelDropoutCNN.from_params([params, params], 5, generators=rng.generators([1, 2], "label_dropout"))
    x = torch.rand(2, 8, 1, 28, 28)
    torch.testing.assert_close(plain.predict(x), plain.predict(x))
    a, b = noisy.predict(x), noisy.predict(x)
    assert not torch.allclose(a, plain.predict(x)) and not torch.allclose(a, b) and not torch.allclose(a[0], a[1])
    out, cache = noisy.forward(x, keep=True)  # direct optimization's gradients see dropout too
    _, gx = noisy.backward(cache, torch.ones_like(out), params=False, inputs=True)
    assert gx.shape == x.shape


def test_init_carve_out_and_selection_reach_the_training():
    split = tiny_split()
    base = dict(arch_params={"filters": 2}, epochs=2, batch_size=20)
    torch_init = CNNStack.init(2, rng.generators([0], "teacher_init"))
    glorot = glorot_params(torch_init, torch.Generator().manual_seed(0))
    assert all(float(v.abs().max()) == 0 for k, v in glorot.items() if k.endswith(".bias"))
    bound = np.sqrt(6 / (9 * 1 + 2 * 9))
    assert float(glorot["conv1.weight"].abs().max()) <= bound
    nets = {}
    for key, kw in {"torch": {}, "glorot": {"init": "glorot"}, "last": {"select": "last"},
                    "full": {"carve_out": False, "select": "last"}}.items():
        net, infos = train_supervised(split, [0], CNNTeacherConfig(**base, **kw), (1, 28, 28))
        nets[key] = (net.flat.clone(), infos[0])
    assert not torch.equal(nets["torch"][0], nets["glorot"][0])
    assert nets["last"][1]["best_epoch"] == 1  # the last of 2 epochs, whatever the validation says
    assert not torch.equal(nets["last"][0], nets["full"][0])  # the validation images were trained on
    with pytest.raises(ConfigError, match="select=last"):
        CNNTeacherConfig(carve_out=False)


# -- the comparison and the criterion ---------------------------------------------------
def test_ks_comparison_on_fabricated_labels():
    from dfkd.teacher_study import compare

    g = np.random.default_rng(1)
    ref = g.normal(4.2, 0.3, 50)
    alike, shifted = compare(g.normal(4.2, 0.3, 1000), ref), compare(g.normal(7.7, 0.5, 1000), ref)
    assert alike["p"] > 0.05 and shifted["p"] < 1e-20 and shifted["ks"] > 0.99
    exact = compare([0.0, 1.02, 2.5], [10.0, 11.0])
    assert exact["near_int"] == pytest.approx(2 / 3)
    exact = compare([0.0, 1.0, 2.0], [10.0, 11.0])
    assert exact["ks"] == 1.0 and (exact["mean"], exact["min"], exact["max"], exact["n"]) == (1.0, 0.0, 2.0, 3)
    with pytest.raises(ValueError):
        compare([], ref)


def test_selection_criterion():
    from dfkd.teacher_study import choose, distance_to_paper

    assert distance_to_paper(0.157, 0.165) == 0
    rows = pd.DataFrame({"random_p": [0.001, 0.2, 0.5, 0.3], "epochs": [15, 15, 50, 5],
                         "distance": [0.0, 1.0, 3.0, 1.0]})
    idx, why = choose(rows, 0.05)
    assert idx == 3 and "closest" in why  # eligible 1..3; rows 1 and 3 tie, row 3 trains fewer epochs
    idx, why = choose(rows.assign(random_p=[0.01, 0.02, 0.03, 0.001]), 0.05)
    assert idx == 2 and "no variant matches" in why


def test_random_images_variance_as_std():
    from dfkd.data.context import Context
    from dfkd.data.sampler import PixelSampler
    from dfkd.teacher_study import random_images

    mean, var = torch.full((1, 4, 4), 0.5), torch.full((1, 4, 4), 0.04)
    ctx = Context((1, 4, 4), PixelSampler(mean, var), None)
    a, b = random_images(ctx, 4000, 0), random_images(ctx, 4000, 0, variance_as_std=True)
    assert a.shape == (1, 4000, 1, 4, 4) and torch.equal(a, random_images(ctx, 4000, 0))
    assert abs(float(a.std()) - 0.2) < 0.01 and abs(float(b.std()) - 0.04) < 0.005


def test_pixel_sampler_spread_variance():
    from dfkd.data.sampler import make_sampler
    from dfkd.errors import ConfigError

    mean, var = torch.full((16,), 0.5), torch.full((16,), 0.04)
    plain = make_sampler("pixel", (1, 4, 4), mean=mean, var=var)
    wide = make_sampler("pixel", (1, 4, 4), mean=mean, var=var, spread="std")
    narrow = make_sampler("pixel", (1, 4, 4), mean=mean, var=var, spread="variance")
    assert torch.equal(plain.std, wide.std) and torch.allclose(plain.std, torch.full((1, 4, 4), 0.2))
    assert torch.equal(narrow.std, var.reshape(1, 4, 4))
    x = narrow(rng.generators([1], "t"), 4000)
    assert x.shape == (1, 4000, 1, 4, 4) and abs(float(x.std()) - 0.04) < 0.005
    with pytest.raises(ConfigError, match="synthetic.spread must be one of std, variance, got 'var'") as exc:
        make_sampler("pixel", (1, 4, 4), mean=mean, var=var, spread="var")
    assert "\n" not in str(exc.value)


def test_table5_variance_preset_hashes_apart(tmp_path, data_mirror):
    """experiment=table5_variance: table5's random cell with the variance as the std; its cells never pass for
    (or skip) the committed table5 ones, while spread=std leaves those hashes (checked above) as they were."""
    from conftest import tiny_settings
    from dfkd.cell import cell_hash

    from hydra import compose as hydra_compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = hydra_compose("config", overrides=["experiment=table5_variance"], return_hydra_config=True)
    assert cfg.hydra.sweeper.params.variant == "random-0"
    assert dict(cfg.dataset.synthetic) == {"kind": "pixel", "spread": "variance"}
    assert cfg["results_dir"] == "results/table5_variance" and cfg["teacher"]["name"] == "cnn10"
    base = tiny_settings(tmp_path, data_mirror, ["experiment=table5", "variant=random-0", "seeds=[1]"])
    var = tiny_settings(tmp_path, data_mirror, ["experiment=table5_variance", "variant=random-0", "seeds=[1]"])
    assert var.teacher_key() == base.teacher_key()  # the same teacher ...
    assert cell_hash(var, 1, 50) != cell_hash(base, 1, 50)  # ... other students
    record = REPO / "results" / "reference" / "table5_variance" / "records" / "mnist" / "cnn5" / "random-0" / "seed01.json"
    if record.is_file():  # the committed run keeps its hash
        rec = json.loads(record.read_text())
        assert cell_hash(var, 1, rec["batch_size"]) == rec["config_hash"]


def test_committed_table5_matched_run_is_what_its_records_and_preset_say(tmp_path, data_mirror):
    """The committed table5_matched run: every record distils from cnn10_same's teacher with the students HEAD's
    preset would train (same cell hash), and its Table 5 and the comparison page are what the report writes from
    those records today."""
    from conftest import tiny_settings
    from dfkd.cell import cell_hash
    from dfkd.report import matched
    from dfkd.report.__main__ import main as report_main

    run = REPO / "results" / "reference" / "table5_matched"
    if not run.is_dir():
        pytest.skip("table5_matched not committed yet")
    records = sorted((run / "records").rglob("seed*.json"))
    assert len(records) == 15  # 3 methods x 5 runs
    settings = {method: tiny_settings(tmp_path, data_mirror, ["experiment=table5_matched", "teacher=cnn10_same",
                                                               "teacher.label_dropout=false", f"variant={method}"])
                for method in {path.parent.name for path in records}}
    for path in records:
        rec = json.loads(path.read_text())
        s = settings[path.parent.name]
        assert rec["experiment"] == "table5_matched" and rec["teacher_key"] == s.teacher_key(), path
        assert rec["config_hash"] == cell_hash(s, rec["seed"], rec["batch_size"]), path
    assert report_main(["--records", str(run / "records"), "--out", str(tmp_path / "t"), "--tables", "table5"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "t" / "table5.csv"), pd.read_csv(run / "tables" / "table5.csv"))
    out = tmp_path / "matched.md"
    assert matched.main(["--today", str(REPO / "results" / "reference" / "tables" / "table5.csv"),
                         "--matched", str(run / "tables" / "table5.csv"), "--out", str(out)]) == 0
    assert out.read_text() == (REPO / "results" / "reference" / "tables" / "table5_matched.md").read_text()


# -- end to end ---------------------------------------------------------------------------
def test_tiny_study_writes_its_table_and_resumes(tmp_path, data_mirror):
    from dfkd.teacher_study import run_study

    ref = fake_reference(tmp_path)
    cfg = compose(["variants=[cnn10,cnn10_same]", "subset.train=200", "subset.test=200", "+teacher_overrides.epochs=1",
                   "images=60", "direct_images=10", "direct_batch=10", "device=cpu", "progress=false",
                   f"results_dir={tmp_path / 'results'}", f"teacher_dir={tmp_path / 'teachers'}",
                   f"data_dir={tmp_path / 'data'}", f"data_mirror={data_mirror}", f"reference_labels={ref}"])
    out = run_study(cfg, log=lambda *_: None)
    assert out["measured"] == ["cnn10", "cnn10_same"] and not out["reused"]
    md, csv = (Path(p) for p in out["table"])
    frame = pd.read_csv(csv)
    assert len(frame) == 4 and frame["chosen"].sum() == 1
    assert set(frame["variant"]) == {"cnn10", "cnn10_same"} and set(frame["label_dropout"]) == {False, True}
    assert frame[frame["variant"] == "cnn10_same"]["changes"].iloc[0] == "params.padding=same"
    for col in ("test_mae", "test_rmse", "rmse_over_mae", "random_mean", "random_ks", "random_p", "direct_p",
                "random_var_mean", "random_near_int", "direct_near_int"):
        assert frame[col].notna().all(), col
    text = md.read_text()
    assert "| cnn10_same | off | params.padding=same |" in text and "(chosen)" in text
    lines = []
    again = run_study(cfg, log=lines.append)  # a rerun trains and measures nothing
    assert again["measured"] == [] and again["reused"] == ["cnn10", "cnn10_same"]
    assert len(list((tmp_path / "teachers").rglob("*.pt"))) == 2
    assert not any("threads" in line for line in lines)
    # a teacher trained at 2 threads is not the 1-thread one under the same key: its training line says so
    cfg.update(threads=2, variants=["cnn10"], teacher_overrides={"epochs": 2})
    before = torch.get_num_threads()
    try:
        run_study(cfg, log=lines.append)
    finally:
        torch.set_num_threads(before)  # tune_process set 2 for this process
    assert sum("at 2 threads: not bit-equal to a 1-thread teacher" in line for line in lines) == 1


# -- the comparison of both Table 5 runs ---------------------------------------------------
def test_matched_report(tmp_path):
    from dfkd.report.matched import main as matched_main

    rows = lambda d, r: pd.DataFrame([  # noqa: E731
        dict(metric="MAE", column="Direct optimizer", mean=d, std=0.1, paper_mean=1.179, paper_std=0.132, n_ok=5),
        dict(metric="MAE", column="Random sampling", mean=r, std=0.1, paper_mean=1.554, paper_std=0.014, n_ok=5)])
    rows(1.854, 2.577).to_csv(tmp_path / "a.csv", index=False)
    rows(1.3, 2.6).to_csv(tmp_path / "b.csv", index=False)
    out = tmp_path / "cmp.md"
    assert matched_main(["--today", str(tmp_path / "a.csv"), "--matched", str(tmp_path / "b.csv"),
                         "--out", str(out)]) == 0
    text = out.read_text()
    assert "Direct optimizer MAE: 1.8540 -> 1.3000, toward" in text and "Random sampling MAE: 2.5770 -> 2.6000, away" in text
    assert "within 2 paper stds".lower() in text.lower() and "1 of 2" in text
    # a move of 5.5 run stds is beyond the spread, one of 0.23 is not
    assert "1.3000, toward the paper's 1.179 (gap +0.6750 -> +0.1210); Welch's t-test p = " in text
    assert text.count("beyond the run-to-run spread") == 1 and text.count("within the run-to-run spread") == 1
    assert matched_main(["--today", str(tmp_path / "nope.csv"), "--matched", str(tmp_path / "b.csv"),
                         "--out", str(out)]) == 2


def test_matched_welch_from_summaries_equals_the_test_on_the_runs():
    from scipy import stats

    from dfkd.report.matched import _welch

    a, b = np.array([1.9, 1.7, 2.0, 1.85, 1.8]), np.array([1.6, 1.75, 1.7, 1.9, 1.65, 1.8])
    summary = lambda x: pd.Series(dict(mean=x.mean(), std=x.std(), n_ok=x.size))  # noqa: E731  (population std)
    p = stats.ttest_ind(b, a, equal_var=False).pvalue
    assert f"p = {p:.2g} (5 and 6 runs)" in _welch(summary(a), summary(b))
    assert _welch(summary(a), summary(b[:1])) == "; too few runs for a test"


# -- mistakes, one line each ---------------------------------------------------------------
def test_bad_input_is_one_line(tmp_path):
    from dfkd.engine.sources import TrainedCNN
    from dfkd.teacher_study import read_reference, teacher_yaml

    for bad in ("full", 2, True, None):
        with pytest.raises(ConfigError, match="unknown CNN padding") as exc:
            padding_value(bad)
        assert "\n" not in str(exc.value)
    assert (padding_value("valid"), padding_value("SAME"), padding_value(0), padding_value(1)) == (0, 1, 0, 1)
    with pytest.raises(ConfigError, match="unknown CNN padding 'full'"):
        TrainedCNN(params={"filters": 10, "padding": "full"})
    for epochs in (0, -3):
        with pytest.raises(ConfigError, match="teacher.epochs") as exc:
            TrainedCNN(epochs=epochs)
        assert "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match="reference labels .* not found") as exc:
        read_reference(tmp_path / "missing.csv")
    assert "\n" not in str(exc.value)
    (tmp_path / "wrong.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="not a method,image,teacher_prediction"):
        read_reference(tmp_path / "wrong.csv")
    with pytest.raises(ConfigError, match="unknown teacher variant 'cnn10_nope'"):
        teacher_yaml("cnn10_nope")
    for kw, match in (({"init": "he"}, "teacher.init"), ({"select": "median"}, "teacher.select"),
                      ({"label_dropout": "yes"}, "label_dropout")):
        with pytest.raises(ConfigError, match=match):
            TrainedCNN(**kw)


def test_study_refuses_a_missing_reference_file(tmp_path, data_mirror):
    from dfkd.settings import settings_from_dict
    from dfkd.teacher_study import study_options

    cfg = compose([f"reference_labels={tmp_path / 'missing.csv'}", f"data_mirror={data_mirror}",
                   f"results_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="not found"):
        study_options(cfg, settings_from_dict(cfg))
    with pytest.raises(ConfigError, match="unknown teacher variant"):
        study_options(dict(cfg, variants=["cnn10", "nope"], reference_labels=str(fake_reference(tmp_path))),
                      settings_from_dict(cfg))


def test_pair_readings_bounds_on_fabricated_labels():
    """The broadcast (n, 1) - (n,) reading is bounded below by the best constant's MAE and by std(y)."""
    from dfkd.report.matched import pair_readings, render_pairs

    y = np.repeat(np.arange(10.0), 100)
    r = pair_readings(y, batch_sizes=(50,))
    assert r["best_constant_mae"] == pytest.approx(2.5) and r["std_y"] == pytest.approx(np.sqrt(8.25))
    p = np.random.default_rng(0).uniform(0, 9, y.size)
    broadcast = np.abs(p[:, None] - y[None, :])
    assert broadcast.mean() >= r["best_constant_mae"] and np.sqrt((broadcast ** 2).mean()) >= r["std_y"]
    assert not r["pairs"]["Random sampling"]["broadcast_possible"]
    assert r["pairs"]["Random sampling"]["two_point_error"] == pytest.approx(2.872 ** 2 / 1.554)
    assert r["per_batch"][50]["mae"] == pytest.approx(np.abs(y.mean() - y).mean())
    assert "| Random sampling | 1.554 | 2.872 | 1.85 | no |" in render_pairs(r)


def test_table5_matched_without_a_teacher_is_one_line():
    from dfkd.cli import check_required_choices

    with pytest.raises(ConfigError, match="experiment=table5_matched needs teacher=<option>") as exc:
        check_required_choices(["-m", "experiment=table5_matched"])
    assert "\n" not in str(exc.value) and "cnn10_same" in str(exc.value)
    check_required_choices(["-m", "experiment=table5_matched", "teacher=cnn10_same"])
    check_required_choices(["-m", "experiment=table5"])
