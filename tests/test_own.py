"""Distil your own regressor (issue 16): dfkd.DistilledRegressor, its fidelity report and exports, python -m dfkd.own.

Toy function f(x) = sin(x0) + 0.5 x1^2 on [-2, 2]^2, as each teacher kind: a torch module, a TorchScript file,
scikit-learn's GradientBoostingRegressor and SVR fitted to it, and the plain function. Budgets are tiny (a few
hundred student steps); the stated margin: the distilled student's RMSE against the teacher on the uniform probe
set is at most MARGIN x an untrained student's (the same initialisation, before any step).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.exceptions import NotFittedError
from sklearn.svm import SVR

from dfkd import DistilledRegressor, read_export_metadata
from dfkd.estimator import InputError

ROOT = Path(__file__).resolve().parents[1]
BOUNDS = [(-2.0, 2.0), (-2.0, 2.0)]
MARGIN = 0.6  # distilled RMSE <= 0.6 x the untrained student's (measured at these budgets, random_state 0: torch module and
#              TorchScript (direct) 0.42, GBR (de) 0.51, SVR (random) 0.34, callable (de) 0.52)
FAST = {"epochs": 20, "steps_per_epoch": 10, "probe_rows": 500}


def f(X):
    X = np.asarray(X, dtype=np.float64)
    return np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2


def sum_teacher(X):  # check_estimator's teacher: any width
    return np.asarray(X, dtype=np.float64).sum(1)


class Toy(torch.nn.Module):
    """f as a torch module (a white-box teacher), with one parameter as real modules have."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x):
        return torch.sin(x[:, 0]) + self.scale * x[:, 1] ** 2


class Counting:
    """A black box that counts the rows it is asked."""

    def __init__(self, model):
        self.model, self.rows = model, 0

    def predict(self, X):
        self.rows += len(X)
        return self.model.predict(X)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (400, 2))
    return X, f(X)


@pytest.fixture(scope="module")
def gbr(data):
    return GradientBoostingRegressor(n_estimators=60, random_state=0).fit(*data)


@pytest.fixture(scope="module")
def svr(data):
    return SVR(C=10.0).fit(*data)


def assert_beats_untrained(est):
    fid = est.fidelity()
    uni = fid["probe_sets"]["uniform"]
    assert uni["rmse"] <= MARGIN * uni["untrained_rmse"], uni
    assert uni["mae"] <= uni["rmse"] <= uni["max_abs"] and uni["r2"] > 0
    assert fid["parameters"]["student"] == 2 * 50 + 50 + 50 + 1
    assert fid["latency_s_per_row"]["teacher"] > 0 and fid["latency_s_per_row"]["student"] > 0
    return fid


def test_torch_module_teacher_direct_and_onnx_parity(tmp_path):
    est = DistilledRegressor(teacher=Toy(), method="direct", input_bounds=BOUNDS, random_state=0, **FAST).fit()
    assert est.teacher_kind_ == "torch" and est.n_features_in_ == 2 and len(est.history_["val_rmse"]) == 20
    fid = assert_beats_untrained(est)
    assert fid["parameters"]["teacher"] == 1
    out = est.export(tmp_path / "s.onnx")
    assert out["max_abs_diff"] <= 1e-5
    import onnxruntime as ort

    X = np.random.default_rng(1).uniform(-3, 3, (300, 2)).astype(np.float32)
    got = ort.InferenceSession(str(tmp_path / "s.onnx"), providers=["CPUExecutionProvider"]).run(["y"], {"x": X})[0]
    with torch.no_grad():
        want = est.student_(torch.as_tensor(X)).numpy()
    assert np.max(np.abs(got - want)) <= 1e-5  # raw features in: the standardisation is folded in
    assert np.max(np.abs(got - est.predict(X))) <= 1e-5
    meta = read_export_metadata(tmp_path / "s.onnx")
    assert meta["features"] == ["x0", "x1"] and meta["bounds"] == [list(b) for b in BOUNDS]
    assert meta["method"] == "direct" and meta["teacher_fingerprint"] == est.teacher_fingerprint_
    assert {"torch", "numpy", "scikit-learn", "onnx", "onnxruntime"} <= set(meta["versions"])
    assert meta["fidelity"]["uniform"]["rmse"] == pytest.approx(fid["probe_sets"]["uniform"]["rmse"])


def test_torchscript_file_teacher_and_torchscript_export(tmp_path):
    path = tmp_path / "toy.pt"
    torch.jit.save(torch.jit.script(Toy()), str(path))
    est = DistilledRegressor(teacher=str(path), method="direct", input_bounds=BOUNDS, random_state=0, **FAST).fit()
    assert est.teacher_kind_ == "torch"
    assert est.teacher_fingerprint_ == DistilledRegressor(teacher=Toy(), input_bounds=BOUNDS, epochs=0,
                                                          random_state=0).fit().teacher_fingerprint_
    assert_beats_untrained(est)
    est.export(tmp_path / "s.ts", format="torchscript")
    back = torch.jit.load(str(tmp_path / "s.ts"))
    X = torch.rand(100, 2) * 4 - 2
    with torch.no_grad():
        assert torch.max(torch.abs(back(X) - est.student_(X))).item() <= 1e-5
    assert read_export_metadata(tmp_path / "s.ts")["method"] == "direct"


def test_gradient_boosting_teacher_de_counts_queries(gbr):
    teacher = Counting(gbr)
    est = DistilledRegressor(teacher=teacher, method="de", input_bounds=BOUNDS, random_state=0, **FAST).fit()
    assert est.teacher_kind_ == "predict"
    # every row the engine and the probes asked; the fingerprint's 64 fixed rows are not counted
    assert est.n_teacher_queries_ == teacher.rows - 64 > 20 * 10 * 100
    assert_beats_untrained(est)


def test_svr_teacher_random(svr):
    est = DistilledRegressor(teacher=svr, method="random", alpha=0.0, input_bounds=BOUNDS, random_state=0,
                             **FAST).fit()
    assert_beats_untrained(est)


def test_callable_teacher_de_and_ground_truth(data):
    X, y = data
    est = DistilledRegressor(teacher=f, method="de", input_bounds=BOUNDS, random_state=0, **FAST).fit()
    assert est.teacher_kind_ == "callable"
    assert_beats_untrained(est)
    fid = est.fidelity(X, y)
    truth = fid["probe_sets"]["X"]["truth"]
    assert truth["teacher"]["rmse"] == pytest.approx(0.0, abs=1e-12)  # the teacher is f itself
    assert truth["student"]["rmse"] == pytest.approx(fid["probe_sets"]["X"]["rmse"])
    assert 0 < est.score(X, y) <= 1


def test_gradient_method_on_a_black_box_is_one_line(gbr):
    for method in ("direct", "generator", "tsm"):
        with pytest.raises(ValueError) as err:
            DistilledRegressor(teacher=gbr, method=method, input_bounds=BOUNDS).fit()
        msg = str(err.value)
        assert "\n" not in msg and "method='de'" in msg and "method='random'" in msg


def test_fixed_random_state_gives_an_identical_student():
    def fit(seed):
        return DistilledRegressor(teacher=Toy(), input_bounds=BOUNDS, random_state=seed, epochs=5,
                                  steps_per_epoch=5, probe_rows=200).fit().student_.state_dict()

    a, b, c = fit(3), fit(3), fit(4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_unlabelled_rows_and_the_data_scarce_setting(data):
    X, y = data
    est = DistilledRegressor(teacher=Toy(), method="direct", random_state=0, epochs=5, steps_per_epoch=5).fit(X)
    assert est.n_features_in_ == 2 and np.allclose(est.x_mean_, X.mean(0))
    assert "X" in est.fidelity(X)["probe_sets"]
    scarce = DistilledRegressor(teacher=Toy(), method="tsm", alpha=1.0, random_state=0, epochs=5,
                                steps_per_epoch=5).fit(X[:40], y[:40])
    assert np.isfinite(scarce.predict(X)).all()
    with pytest.raises(ValueError, match="learns from real rows"):
        DistilledRegressor(teacher=Toy(), method="tsm", input_bounds=BOUNDS).fit()
    moments = DistilledRegressor(teacher=f, method="de", input_moments=([0, 0], [1, 1]), random_state=0,
                                 epochs=3, steps_per_epoch=3).fit()
    assert set(moments.fidelity()["probe_sets"]) == {"gaussian"}


def test_check_estimator_passes():
    from sklearn.utils.estimator_checks import check_estimator

    # Tags: regressor_tags.poor_score (it fits the teacher, not y), target_tags.required = False (fit without y).
    # Skipped: none of ours. scikit-learn itself skips check_array_api_input unless SCIPY_ARRAY_API is set.
    est = DistilledRegressor(teacher=sum_teacher, method="random", epochs=2, steps_per_epoch=2, probe_rows=50)
    results = check_estimator(est, on_fail=None)
    bad = [(r["check_name"], str(r["exception"])[:200]) for r in results
           if r["status"] == "failed" or (r["status"] == "skipped" and r["check_name"] != "check_array_api_input")]
    assert bad == [] and len(results) > 40


def test_before_fit_and_bad_input_are_one_line(tmp_path, gbr, monkeypatch):
    est = DistilledRegressor(teacher=f, method="random", input_bounds=BOUNDS, epochs=2, steps_per_epoch=2,
                             probe_rows=50)
    with pytest.raises(NotFittedError):
        est.predict(np.zeros((1, 2)))
    bad_file = tmp_path / "broken.pt"
    bad_file.write_bytes(b"not a model")
    bad_joblib = tmp_path / "broken.joblib"
    bad_joblib.write_bytes(b"not a pickle")
    cases = [
        (dict(teacher=object()), None, "neither predict"),
        (dict(teacher=str(bad_file)), None, "cannot be loaded"),
        (dict(teacher=str(bad_joblib)), None, "cannot be loaded"),
        (dict(input_bounds=[(0, 1)] * 3), np.zeros((5, 2)), "3 pairs but X has 2"),
        (dict(input_bounds=[(0, 1), (1, 1)]), None, "lo >= hi"),
        (dict(), np.array([[0.0, np.nan], [1.0, 1.0]]), "NaN"),
    ]
    for params, X, match in cases:
        with pytest.raises(ValueError, match=match) as err:
            est.set_params(**{"teacher": f, "input_bounds": BOUNDS, **params}).fit(X)
        assert "\n" not in str(err.value)
    est.set_params(teacher=f, input_bounds=BOUNDS).fit()
    with pytest.raises(ValueError, match="3 features"):
        est.predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        est.predict(np.array([[np.nan, 0.0]]))
    (tmp_path / "a_file").write_text("")  # a folder that cannot be made (even by root): under a file
    with pytest.raises(InputError, match="cannot write"):
        est.export(tmp_path / "a_file" / "s.onnx")
    with pytest.raises(ValueError, match="takes 2"):
        DistilledRegressor(teacher=gbr, method="de", input_bounds=[(0, 1)] * 3).fit()
    import dfkd.estimator as estimator_module

    real_bytes = estimator_module._torchscript_bytes
    monkeypatch.setattr(estimator_module, "_torchscript_bytes",  # an exporter whose file is off by 1e-3
                        lambda *a: (lambda data, got: (data, np.asarray(got) + 1e-3))(*real_bytes(*a)))
    with pytest.raises(InputError, match="differ from the student's by 0.001 .*nothing written") as err:
        est.export(tmp_path / "s.ts", format="torchscript")
    assert "\n" not in str(err.value) and not (tmp_path / "s.ts").exists()
    monkeypatch.setattr(estimator_module, "_torchscript_bytes", real_bytes)
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if onnx were not installed
    with pytest.raises(InputError, match="pip install 'dfkd\\[onnx\\]'"):
        est.export(tmp_path / "s.onnx")
    assert not (tmp_path / "s.onnx").exists()


# -- the command ---------------------------------------------------------------------------------------------------
def own(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "dfkd.own", *args, "progress=false"], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_command_writes_a_run_folder_and_does_not_redo_it(tmp_path, gbr):
    joblib.dump(gbr, tmp_path / "gbr.joblib")
    out = tmp_path / "run"
    args = [f"teacher={tmp_path / 'gbr.joblib'}", "bounds=[[-2,2],[-2,2]]", "method=de", "epochs=4",
            "steps_per_epoch=4", "probe_rows=200", "export=onnx", f"out={out}"]
    proc = own(*args)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "fidelity.json", "student.onnx", "student.pt"]
    fid = json.loads((out / "fidelity.json").read_text())
    assert fid["probe_sets"]["uniform"]["rmse"] < fid["probe_sets"]["uniform"]["untrained_rmse"]
    assert read_export_metadata(out / "student.onnx")["method"] == "de"
    import yaml

    from dfkd.own import run_own

    logs = []  # the same config again (in this process: a second interpreter start is the slow part)
    run_own(yaml.safe_load((out / "config.yaml").read_text()), log=logs.append)
    assert any("finished already" in m for m in logs)
    with pytest.raises(Exception, match="another config"):
        run_own(dict(yaml.safe_load((out / "config.yaml").read_text()), epochs=5), log=logs.append)


def test_command_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    from dfkd import estimator
    from dfkd.own import run_own

    cfg = {"teacher": None, "bounds": BOUNDS, "method": "random", "epochs": 12, "steps_per_epoch": 3,
           "probe_rows": 100, "random_state": 0, "device": "cpu", "export": None, "progress": False,
           "checkpoint_every_s": 1e-9}
    torch.jit.save(torch.jit.script(Toy()), str(tmp_path / "toy.pt"))
    cfg["teacher"] = str(tmp_path / "toy.pt")
    run_own(dict(cfg, out=str(tmp_path / "whole")), log=lambda m: None)

    class Stop(Exception):
        pass

    def stopping(bar):
        def update(epoch, best):
            if epoch == 6:
                raise Stop
        return update
    monkeypatch.setattr(estimator, "student_progress", stopping)
    with pytest.raises(Stop):
        run_own(dict(cfg, out=str(tmp_path / "cut")), log=lambda m: None)
    assert (tmp_path / "cut" / ".ckpt.pt").exists() and not (tmp_path / "cut" / "fidelity.json").exists()
    monkeypatch.undo()
    logs = []
    result = run_own(dict(cfg, out=str(tmp_path / "cut")), log=logs.append)
    assert result["resumed"] and any("resuming seeds [0] from epoch 7" in m for m in logs)
    a = torch.load(tmp_path / "whole" / "student.pt")["state_dict"]
    b = torch.load(tmp_path / "cut" / "student.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "cut" / ".ckpt.pt").exists()


def test_command_bad_input_is_one_line_and_writes_nothing(tmp_path, gbr, monkeypatch):
    from dfkd.errors import DfkdError
    from dfkd.own import run_own

    torch.jit.save(torch.jit.script(Toy()), str(tmp_path / "toy.pt"))
    joblib.dump(gbr, tmp_path / "gbr.joblib")
    (tmp_path / "a_file").write_text("")
    (tmp_path / "broken.joblib").write_bytes(b"junk")
    np.save(tmp_path / "nan.npy", np.array([[0.0, np.nan]]))
    np.save(tmp_path / "wide.npy", np.zeros((4, 3)))
    good = {"teacher": str(tmp_path / "toy.pt"), "bounds": BOUNDS, "method": "direct", "epochs": 2, "export": None,
            "progress": False}
    cases = [
        ({"teacher": str(tmp_path / "broken.joblib")}, "cannot be loaded"),
        ({"teacher": str(tmp_path / "missing.pt")}, "does not exist"),
        ({"teacher": str(tmp_path / "gbr.joblib"), "method": "de", "bounds": [[0, 1]] * 3}, "teacher takes 2"),
        ({"bounds": [[0, 1], [2, 1]]}, "lo >= hi"),
        ({"bounds": BOUNDS, "data": str(tmp_path / "wide.npy")}, "2 pairs but X has 3"),
        ({"data": str(tmp_path / "nan.npy")}, "NaN"),
        ({"teacher": str(tmp_path / "gbr.joblib")}, "method='de'"),
        ({"export": "onnx", "out": str(tmp_path / "a_file" / "run")}, "cannot write"),
    ]
    for change, match in cases:
        cfg = {**good, "out": str(tmp_path / "run"), **change}
        with pytest.raises(DfkdError, match=match) as err:
            run_own(cfg, log=lambda m: None)
        assert "\n" not in str(err.value)
        assert not (tmp_path / "run").exists()
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "onnx", None)  # as if onnx were not installed
        with pytest.raises(DfkdError, match="pip install 'dfkd\\[onnx\\]'"):
            run_own(dict(good, out=str(tmp_path / "run"), export="onnx"), log=lambda m: None)
    assert not (tmp_path / "run").exists()
    proc = own(f"teacher={tmp_path / 'broken.joblib'}", "bounds=[[0,1]]", f"out={tmp_path / 'run'}")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")
    assert not (tmp_path / "run").exists()
