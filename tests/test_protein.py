"""The protein case study's pieces: RBF student, black-box teacher, differential evolution, split."""

import math
import numpy as np
import pytest
import torch

from dfkd.core import rng
from dfkd.errors import ConfigError
from dfkd.data.context import Context
from dfkd.methods.de import EQ9, DifferentialEvolution, row_energies
from dfkd.methods.objective import Objective
from dfkd.models.blackbox import BlackBoxTeacher, fit_blackbox_teachers
from dfkd.models.mlp import MLPStack
from dfkd.models.rbf import RBFNet, RBFStack, init_rbf_params


# -- RBF student ----------------------------------------------------------------------------------
def hand_made():
    return {"centres": torch.tensor([[0.0, 0.0], [1.0, 0.0]]),
            "log_sigmas": torch.tensor([0.0, math.log(2.0)]),
            "weight": torch.tensor([[1.0, 2.0]]), "bias": torch.tensor([0.5])}


def test_rbf_output_on_hand_made_inputs():
    """phi_k = exp(-|x - c_k|^2 / sigma_k^2); S = w . phi + b."""
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    expect = torch.tensor([
        1.0 + 2.0 * math.exp(-1 / 4) + 0.5,               # at c_1; distance 1 from c_2 (sigma 2)
        math.exp(-1.0) + 2.0 * 1.0 + 0.5,                # distance 1 from c_1, at c_2
        math.exp(-4.0) + 2.0 * math.exp(-5 / 4) + 0.5,   # |x - c_2|^2 = 5
    ])
    stack = RBFStack.from_params([hand_made(), hand_made()])
    torch.testing.assert_close(stack.predict(torch.stack([x, x])), torch.stack([expect, expect]))
    torch.testing.assert_close(RBFNet(hand_made())(x).squeeze(-1), expect)
    assert stack.replica_params(1)["log_sigmas"][1].item() == pytest.approx(math.log(2.0))


def test_rbf_initialisation_and_layout():
    gens = rng.generators([1, 2], "student_init")
    stack = RBFStack.init(20, 100, gens)
    assert stack.flat.shape == (2, 100 * 20 + 100 + 100 + 1)
    p = stack.replica_params(0)
    assert p["centres"].shape == (100, 20) and abs(p["centres"].std().item() - 1) < 0.05
    assert torch.all(p["log_sigmas"] == 0) and p["weight"].abs().max() <= 0.1 and p["weight"].shape == (1, 100)
    again = init_rbf_params(20, 100, rng.generator(1, "student_init"))
    torch.testing.assert_close(p["centres"], again["centres"])


def test_rbf_gradients_match_autograd():
    gens = rng.generators([3, 4], "t")
    params = [init_rbf_params(5, 7, g) for g in gens]
    for p in params:  # moderate widths and centres near the data, so every term matters
        p["log_sigmas"] = torch.linspace(-0.5, 0.8, 7)
        p["centres"] *= 0.5
    stack = RBFStack.from_params(params)
    x = torch.randn(2, 9, 5) * 0.5
    g = torch.randn(2, 9)
    out, cache = stack.forward(x, keep=True)
    grad, gx = stack.backward(cache, g, params=True, inputs=True)
    for r in range(2):
        net = RBFNet(params[r])
        xr = x[r].clone().requires_grad_(True)
        (net(xr).squeeze(-1) * g[r]).sum().backward()
        got = stack.replica_params(r, grad)
        torch.testing.assert_close(got["centres"], net.centres.grad, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got["log_sigmas"], net.log_sigmas.grad, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got["weight"], net.output.weight.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(got["bias"], net.output.bias.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(gx[r], xr.grad, rtol=1e-4, atol=1e-5)
    # replica 1 alone, through a one-replica slice of the parameters
    torch.testing.assert_close(stack.predict(x[1:2], stack.flat[1:2]), out[1:2].squeeze(-1))


# -- eq. 9 -----------------------------------------------------------------------------------------
def test_eq9_objective_terms():
    """Row by row: -eps (T - S)^2 + w (T - y_rand)^2, with the notebook's w = 1 or the paper's w = 1 - eps."""
    t, s, y = np.array([0.2, 0.9]), np.array([0.5, 0.9]), 0.4
    notebook = Objective(**EQ9)
    np.testing.assert_allclose(row_energies(notebook, t, s, y), [-0.05 * 0.09 + 0.04, 0.0 + 0.25])
    no_target = Objective(**dict(EQ9, target=0.0))
    np.testing.assert_allclose(row_energies(no_target, t, s, y), [-0.05 * 0.09, 0.0])  # the disagreement term
    paper = Objective(**dict(EQ9, target=0.95))
    np.testing.assert_allclose(row_energies(paper, t, s, y), [-0.05 * 0.09 + 0.95 * 0.04, 0.95 * 0.25])
    assert DifferentialEvolution().objective == notebook
    # one y_rand per step, uniform on [0, 1]
    ys = notebook.draw_target(rng.generators([1, 2], "method_target"), 5)
    assert ys.shape == (2, 5) and torch.all(ys == ys[:, :1]) and torch.all((ys >= 0) & (ys <= 1))


# -- black-box teacher -----------------------------------------------------------------------------
class Linear:
    """A tiny regressor with predict, counting its calls."""

    def __init__(self, w):
        self.w, self.calls = np.asarray(w, dtype=float), 0

    def predict(self, X):
        self.calls += 1
        return np.asarray(X) @ self.w


def test_query_counter_counts_every_row():
    shared = Linear([1.0, -1.0, 0.5])
    teacher = BlackBoxTeacher([shared, shared], d_in=3)
    x = torch.randn(2, 7, 3)
    out = teacher.predict(x)
    torch.testing.assert_close(out, (x.double() @ torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)).float())
    assert teacher.queries == [7, 7] and shared.calls == 1  # shared model: one call for both replicas
    teacher.predict_replica(1, np.zeros((4, 3)))
    assert teacher.queries == [7, 11] and teacher.total_queries == 18
    own = BlackBoxTeacher([Linear([1, 0, 0]), Linear([0, 1, 0])], d_in=3)
    torch.testing.assert_close(own.predict(x), torch.stack([x[0, :, 0], x[1, :, 1]]))
    assert own.queries == [7, 7]


def test_black_box_has_no_gradients():
    teacher = BlackBoxTeacher([Linear([1.0])], d_in=1)
    assert teacher.differentiable is False
    with pytest.raises(ConfigError, match="method=de"):
        teacher.forward(torch.zeros(1, 2, 1), keep=True)
    with pytest.raises(ConfigError, match="predict"):
        BlackBoxTeacher([object()], d_in=1)


def test_any_sklearn_regressor_is_a_teacher(toy_splits):
    seeds, splits = toy_splits
    same = [splits[0]] * 3
    teacher, infos = fit_blackbox_teachers(same, "sklearn.svm.SVR")
    assert teacher.models[0] is teacher.models[2] and infos[0] == infos[1]  # equal splits share one fit
    forest, finfo = fit_blackbox_teachers(splits, "sklearn.ensemble.RandomForestRegressor",
                                          {"n_estimators": 10, "random_state": 0})
    assert forest.models[0] is not forest.models[1]
    assert all(0 < i["test_rmse"] < 1.5 for i in infos + finfo) and forest.total_queries == 0
    assert forest.predict(torch.randn(3, 4, 6)).shape == (3, 4)
    with pytest.raises(ConfigError, match="cannot be imported"):
        fit_blackbox_teachers(splits, "sklearn.svm.NoSuchThing")


# -- differential evolution ------------------------------------------------------------------------
def bound_de(teacher, d, seeds=(1, 2), **kw):
    student = RBFStack.init(d, 10, rng.generators(seeds, "student_init"))
    lo, hi = torch.full((d,), -0.5), torch.full((d,), 1.5)
    method = DifferentialEvolution(**kw)
    method.bind(teacher, student, list(seeds), context=Context(input_shape=(d,), bounds=(lo, hi)))
    method.set_noise(rng.generators(seeds, "noise"))
    return method


def test_de_returns_the_final_population_within_bounds_and_lowers_eq9():
    teacher = BlackBoxTeacher([Linear([0.3, -0.2, 0.5, 0.1])] * 2, d_in=4)
    method = bound_de(teacher, 4)
    x = method.sample(5)
    assert x.shape == (2, 5, 4) and x.dtype == torch.float32
    assert torch.all(x >= -0.5) and torch.all(x <= 1.5)
    # at most 26 generations of 5 rows per replica (DE may stop early on convergence)
    assert all(5 <= q <= 26 * 5 for q in teacher.queries) and len(method.generations_run) == 2
    # the final population beats its (clipped) start on eq. 9, for the step's target
    w = np.array([0.3, -0.2, 0.5, 0.1])
    start = np.clip(method.base(5)[0].double().numpy(), -0.5, 1.5)
    final = method.solve(0, start, y=0.8)
    s = lambda X: method.student.predict(torch.tensor(X, dtype=torch.float32)[None], method.student.flat[:1])[0]  # noqa: E731,E501
    energy = lambda X: row_energies(method.objective, X @ w, s(X).double().numpy(), 0.8)  # noqa: E731
    assert energy(final).min() <= energy(start).min() + 1e-12
    assert energy(final).mean() < energy(start).mean()


def test_de_batched_and_one_candidate_per_call_agree():
    mk = lambda: BlackBoxTeacher([Linear([0.3, -0.2, 0.5])] * 2, d_in=3)  # noqa: E731
    batched, looped = bound_de(mk(), 3, batched=True), bound_de(mk(), 3, batched=False)
    torch.testing.assert_close(batched.sample(6), looped.sample(6))
    assert batched.teacher.queries == looped.teacher.queries  # same rows asked, fewer calls
    assert batched.teacher.models[0].calls < looped.teacher.models[0].calls


def test_de_with_a_tabular_mlp_teacher():
    teacher = MLPStack.init(4, 8, 1, rng.generators([1, 2], "teacher_init"))
    x = bound_de(teacher, 4, generations=3).sample(5)
    assert x.shape == (2, 5, 4) and torch.isfinite(x).all()


def test_de_bad_settings():
    teacher = BlackBoxTeacher([Linear([1.0, 1.0])], d_in=2)
    with pytest.raises(ConfigError, match="at least 5"):
        bound_de(teacher, 2, seeds=(1,)).sample(4)
    with pytest.raises(ConfigError, match="search box"):  # N(0, I) has no bounds
        DifferentialEvolution().bind(teacher, RBFStack.init(2, 3, rng.generators([1], "s")), [1])
    for bad in ({"generations": 0}, {"tol": -1}, {"objective": {"nonsense": 1}}):
        with pytest.raises(ConfigError):
            DifferentialEvolution(**bad)


def test_gradient_methods_refuse_a_black_box():
    from dfkd.methods.direct import Direct

    teacher = BlackBoxTeacher([Linear([1.0, 1.0])], d_in=2)
    with pytest.raises(ConfigError, match="method=de"):
        Direct().bind(teacher, RBFStack.init(2, 3, rng.generators([1], "s")), [1])


# -- the protein data and split ------------------------------------------------------------------------
def test_protein_files_are_pinned_to_the_shared_checksums_and_the_authors_commit(data_mirror):
    from dfkd.data import load_spec

    spec = load_spec("protein")
    listed = dict(reversed(line.split()) for line in (data_mirror / "checksums.sha256").read_text().splitlines())
    assert (spec.n_rows, spec.n_features) == (3148, 20) and spec.format == "npy"
    for f in spec.files:
        assert listed[f.path] == f.sha256, f.path
        assert f.url == ("https://raw.githubusercontent.com/zhoutianxun/data_free_KD_regression/"
                         "8d03cb0b9de313798c6299f0a45a0fefea909bf9/protein_solubility_case_study/datasets/" + f.path)


def test_protein_split_is_fixed_and_unscaled(data_mirror, tmp_path):
    from dfkd.data import load_dataset, load_spec, make_split

    spec = load_spec("protein")
    X, y = load_dataset(spec, data_dir=tmp_path, mirror=data_mirror)
    cfg = spec.extra["split"]
    kw = dict(n_train=cfg["n_train"], val_fraction=cfg["val_fraction"], standardize=cfg["standardize"],
              train_seed=cfg["train_seed"], val_seed=cfg["val_seed"])
    a, b = make_split(X, y, 1, **kw), make_split(X, y, 5, **kw)
    assert (len(a.X_train), len(a.X_val), len(a.X_test)) == (2500, 64, 584)
    np.testing.assert_array_equal(a.X_test, b.X_test)  # the run seed does not move the split
    np.testing.assert_allclose(a.X_train.sum(1), 1.0, atol=1e-5)  # raw amino-acid fractions
    assert 0.0 <= a.y_train.min() and a.y_train.max() <= 1.0
    teacher, infos = fit_blackbox_teachers([a, b], "sklearn.svm.SVR")
    assert teacher.models[0] is teacher.models[1]
    assert infos[0]["test_rmse"] == pytest.approx(0.2437, abs=0.002)  # paper Table 6: 0.250


# -- base distribution and the runner ---------------------------------------------------------------
def test_simplex_sampling_rows_sum_to_one_within_bounds():
    from dfkd.data.sampler import make_sampler

    mean = np.full(20, 0.05)
    mean[0] = -0.2  # a feature that often clips at 0
    sampler = make_sampler("simplex", (20,), mean=mean, std=np.full(20, 0.04))
    x = sampler(rng.generators([1, 2], "noise"), 500)
    assert x.shape == (2, 500, 20)
    torch.testing.assert_close(x.sum(-1), torch.ones(2, 500))
    assert torch.all(x >= 0) and torch.all(x <= 1)
    assert (x[..., 0] == 0).float().mean() > 0.9  # clipped before renormalising


def compose_protein(tmp, mirror, extra=()):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from dfkd.cli import CONF_DIR
    from dfkd.settings import settings_from_dict

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[
            "dataset=protein", "teacher=svr", "student=rbf100", "rows_per_step=10", "seeds=2", "epochs=2",
            "steps_per_epoch=2", "threads=1", "progress=false", f"results_dir={tmp / 'results'}",
            f"data_dir={tmp / 'data'}", f"data_mirror={mirror}", *extra])
    return settings_from_dict(OmegaConf.to_container(cfg, resolve=True))


def test_protein_context_is_the_training_simplex_and_box(data_mirror, tmp_path):
    from dfkd.cell import load_data

    settings = compose_protein(tmp_path, data_mirror, ["variant=de-0.5"])
    assert (settings.student.batch_size, settings.student.arch) == (5, "rbf")  # 5 DE + 5 random rows per step
    assert settings.student.arch_params == {"centres": 100}
    splits, ctx = load_data(settings, [1, 2])
    lo, hi = ctx.bounds
    np.testing.assert_allclose(lo.numpy(), splits[0].X_train.min(0), rtol=1e-6)
    np.testing.assert_allclose(hi.numpy(), splits[0].X_train.max(0) + 0.01, rtol=1e-6)
    torch.testing.assert_close(ctx.sampler.mean, torch.as_tensor(splits[0].X_train.mean(0), dtype=torch.float32))
    assert compose_protein(tmp_path, data_mirror, ["variant=random-0"]).student.batch_size == 10


def test_tiny_protein_run_writes_a_record_and_a_table_row(data_mirror, tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    from dfkd.report import load_records, summarize
    from dfkd.cell import run_cell

    out = run_cell(compose_protein(tmp_path, data_mirror, ["variant=de-0.5"]), log=lambda *_: None)
    assert out["status"] == "done" and out["ran"] == [1, 2]
    rec = json.loads(Path(out["records"][0]).read_text())
    assert (rec["dataset"], rec["method"], rec["alpha"], rec["student"], rec["teacher"]) == \
        ("protein", "de", "0.5", "rbf100", "svr")
    assert rec["teacher_test_rmse"] == pytest.approx(0.2437, abs=0.002) and 0 < rec["test_rmse"] < 1
    # per step: the DE search (<= 26 generations x 5 rows) and the labels of 5 + 5 rows; 2 epochs x 2 steps
    assert 4 * (5 + 10) <= rec["teacher_queries"] <= 4 * (26 * 5 + 10)
    spec_path = Path(__file__).resolve().parents[1] / "experiments" / "table6.py"
    spec = importlib.util.spec_from_file_location("table6_spec", spec_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    summary = summarize(load_records(tmp_path / "results" / "records"), module.TABLE)
    row = summary.set_index("variant").loc["de-0.5"]
    queries = [json.loads(Path(p).read_text())["teacher_queries"] for p in out["records"]]
    assert row.n_ok == 2 and row.paper_mean == 0.267 and row["mean"] == pytest.approx(rec["test_rmse"], abs=0.2)
    assert row.teacher_queries == pytest.approx(np.mean(queries))


@pytest.mark.parametrize("preset,cell,override", [
    ("table6", "protein/rbf100/de-0.5", "dataset.synthetic.margin=0.05"),
    ("table4", "cpusmall/mlp50/direct-decreasing", "+dataset.synthetic.bounds=train_range"),
])
def test_a_changed_synthetic_block_enters_the_cell_hash(tmp_path, data_mirror, preset, cell, override):
    """The dataset yaml's own synthetic block leaves the committed records' hashes; an override of it gives other
    cells (they used to pass for the committed ones and were skipped as done)."""
    import json

    from conftest import REPO_ROOT, tiny_settings
    from dfkd.cell import cell_hash

    path = REPO_ROOT / "results" / "reference" / "records" / cell / "seed01.json"
    if not path.is_file():
        pytest.skip(f"no committed record {path}")
    rec = json.loads(path.read_text())
    base = [f"experiment={preset}", f"variant={cell.rsplit('/', 1)[1]}", f"student={rec['student']}", "seeds=[1]"]
    if rec["dataset"] != "protein":
        base.append(f"dataset={rec['dataset']}")
    same = tiny_settings(tmp_path, data_mirror, base)
    assert cell_hash(same, 1, rec["batch_size"]) == rec["config_hash"]
    moved = tiny_settings(tmp_path, data_mirror, [*base, override])
    assert moved.teacher_key() == rec["teacher_key"]
    assert cell_hash(moved, 1, rec["batch_size"]) != rec["config_hash"]
