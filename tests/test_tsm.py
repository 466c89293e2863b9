"""The data-scarce setting (Kang & Kang 2024): real rows, TSM's terms (base KD, PM, ABM, GM), and methods seeded
from real rows."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, tiny_settings, toy_split
from dfkd.cell import cell_hash, run_cell
from dfkd.core import rng
from dfkd.data.context import Context
from dfkd.data.real import RealRows, real_row_count
from dfkd.engine.alpha import AlphaSchedule
from dfkd.engine.checkpoint import Checkpoint
from dfkd.engine.distill import StudentConfig, distill
from dfkd.errors import ConfigError
from dfkd.methods.direct import Direct
from dfkd.methods.tsm import TSM, gm_value
from dfkd.models.mlp import MLPStack
from dfkd.settings import build_method, settings_from_dict

SEEDS = [1, 2, 3]
D = 6


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors run faster on one thread


def stacks(seeds=SEEDS, d=D):
    teacher = MLPStack.init(d, 20, 1, rng.generators(seeds, "t")).freeze()
    student = MLPStack.init(d, 5, 1, rng.generators(seeds, "s"))
    return teacher, student


def real_rows(seeds=SEEDS, n=40):
    return RealRows.from_splits([toy_split(s) for s in seeds], n, (D,))


def bound(method, seeds=SEEDS, n=40):
    teacher, student = stacks(seeds)
    method.set_real(real_rows(seeds, n))
    method.bind(teacher, student, seeds, context=Context((D,)))
    method.set_noise(rng.generators(seeds, "noise"))
    return method, teacher, student


# -- the real rows -------------------------------------------------------------------------------------------
def test_real_rows_are_the_first_rows_of_each_split_with_their_labels():
    splits = [toy_split(s) for s in SEEDS]
    real = RealRows.from_splits(splits, 7, (D,))
    assert real.x.shape == (3, 7, D) and real.y.shape == (3, 7)
    for r, s in enumerate(splits):
        np.testing.assert_array_equal(real.x[r].numpy(), s.X_train[:7])
        np.testing.assert_array_equal(real.y[r].numpy(), s.y_train[:7])
    x, y = real.draw(rng.generators(SEEDS, "k"), 500)
    for r in range(3):  # every drawn row is one of replica r's real rows, with its own label
        match = (x[r][:, None, :] == real.x[r][None]).all(-1)
        assert match.any(1).all()
        assert torch.equal(y[r], real.y[r][match.float().argmax(1)])


def test_real_row_count_from_fraction_or_rows():
    assert real_row_count(0.01, None, 5000) == 50 and real_row_count(0.1, None, 5000) == 500
    assert real_row_count(0.0, None, 5000) == 0 and real_row_count(None, None, 5000) == 0
    assert real_row_count(0.333, None, 10) == 4 and real_row_count(None, 12, 5000) == 12


@pytest.mark.parametrize("fraction, rows, message", [
    (1.5, None, r"real_fraction must be a number in \[0, 1\]"), (-0.1, None, "real_fraction must be"),
    (None, 6000, "real_rows=6000 is more than the 5000 rows"), (0.1, 10, "not both"),
    (None, -3, "real_rows must be a whole number")])
def test_bad_real_settings_are_one_line(fraction, rows, message):
    with pytest.raises(ConfigError, match=message) as err:
        real_row_count(fraction, rows, 5000)
    assert "\n" not in str(err.value)


# -- the terms on hand-made tensors ---------------------------------------------------------------------------
def test_pm_noise_has_the_stated_statistics():
    method, _, _ = bound(TSM(kd=1.0, pm=1.0, sigma_p=0.3, abm=0.0, gm=0.0))
    x, w, _, b = method.terms(2000)
    assert b == 1000 and x.shape == (3, 2000, D)
    eps = x[:, b:] - x[:, :b]
    assert abs(eps.mean().item()) < 0.01
    assert eps.std().item() == pytest.approx(0.3, rel=0.02)
    torch.testing.assert_close(w, torch.full((2000,), 1 / b))  # each term's rows weigh 1/b: a mean per term


def test_abm_steps_increase_the_disagreement():
    method, teacher, student = bound(TSM(kd=1.0, pm=0.0, abm=1.0, abm_from="real", gm=0.0,
                                         ascent={"lr": 0.03, "steps": 3}))
    x0, _ = method.real.draw(rng.generators(SEEDS, "k"), 200)
    gap = lambda x: ((teacher.predict(x) - student.predict(x)) ** 2).mean(1)  # noqa: E731
    x1 = method.ascent.optimize(x0.clone())
    assert (gap(x1) > gap(x0)).all()
    assert (x1 - x0).abs().max() < 1.0  # three fresh-RMSprop steps of ~lr/sqrt(1 - 0.99) = 0.3 each: near the real rows


def mlp_input_grad(stack, x, flat=None):
    """Hand-written d out / d x of a tanh MLP: W1 (w2 * (1 - tanh(z)^2))."""
    w1, b1, w2, _ = stack.views(stack.flat if flat is None else flat)
    a = torch.tanh(torch.baddbmm(b1, x, w1))
    return (w2.transpose(1, 2) * (1 - a * a)) @ w1.transpose(1, 2)


def test_gm_value_and_its_gradient_against_finite_differences():
    torch.manual_seed(0)
    teacher, _ = stacks()
    student = MLPStack(D, 4, 1, 3, flat=torch.randn(3, D * 4 + 4 + 4 + 1, dtype=torch.float64) * 0.5)
    x = torch.randn(3, 9, D, dtype=torch.float64)
    t_grad = torch.randn(3, 9, D, dtype=torch.float64)
    want = ((mlp_input_grad(student, x) - t_grad) ** 2).sum(-1).mean(1)
    torch.testing.assert_close(gm_value(student, x, t_grad), want)
    flat = student.flat.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(gm_value(student, x, t_grad, flat, create_graph=True).sum(), flat)
    h, num = 1e-6, torch.zeros_like(student.flat)
    for j in range(student.flat.shape[1]):
        up, down = student.flat.clone(), student.flat.clone()
        up[:, j] += h
        down[:, j] -= h
        num[:, j] = (gm_value(student, x, t_grad, up) - gm_value(student, x, t_grad, down)) / (2 * h)
    torch.testing.assert_close(grad, num, rtol=1e-6, atol=1e-7)


def test_the_teacher_input_gradient_gm_uses_is_the_teachers():
    teacher, _ = stacks()
    x = torch.randn(3, 11, D)
    _, cache = teacher.forward(x, keep=True)
    got = teacher.backward(cache, torch.ones(3, 11), params=False, inputs=True)[1]
    torch.testing.assert_close(got, mlp_input_grad(teacher, x), rtol=1e-5, atol=1e-5)


def test_student_gradient_equals_autograd_of_the_stated_loss():
    method, teacher, student = bound(TSM(kd=1.0, lambda_y=0.5, pm=2.0, abm=1.0, gm=0.3))
    state = {k: [g.get_state() for g in v] for k, v in (("rows", method.rows), ("noise", method.noise))}
    grad, loss = method.student_gradient(90, 0.7)
    for g, s in zip(method.rows, state["rows"]):  # replay the same draws
        g.set_state(s)
    for g, s in zip(method.noise, state["noise"]):
        g.set_state(s)
    x, w, y_r, b = method.terms(90)
    flat = student.flat.clone().requires_grad_(True)
    s = student.predict(x, flat)
    t = teacher.predict(x)
    want = (w * (s - t) ** 2).sum(1) + 0.5 * ((s[:, :b] - y_r) ** 2).mean(1)
    _, cache = teacher.forward(x, keep=True)
    t_grad = teacher.backward(cache, torch.ones_like(t), params=False, inputs=True)[1]
    want = want + 0.3 * gm_value(student, x, t_grad, flat, create_graph=True)
    (want_grad,) = torch.autograd.grad(0.7 * want.sum(), flat)
    torch.testing.assert_close(loss, want.detach(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grad, want_grad, rtol=1e-4, atol=1e-5)


# -- the stack: replicas together equal each alone; checkpoints resume exactly ---------------------------------
CASES = {
    "tsm/1": (lambda: TSM(kd=1.0, lambda_y=0.2, pm=1.0, abm=1.0, gm=0.5), AlphaSchedule("constant", 1.0)),
    "tsm/decreasing": (lambda: TSM(kd=1.0, pm=1.0, abm=0.0, gm=0.5), AlphaSchedule("decreasing")),
    "direct_real/decreasing": (lambda: _started(Direct(), 0.5), AlphaSchedule("decreasing")),
}


def _started(method, start):
    method.start = start
    return method


def run_stack(case, seeds, checkpoint=None, progress=None):
    make, alpha = CASES[case]
    teacher, _ = stacks(seeds)
    splits = [toy_split(s) for s in seeds]
    cfg = StudentConfig(hidden=5, epochs=6, steps_per_epoch=3)
    return distill(teacher, splits, seeds, make(), alpha, cfg, progress=progress, checkpoint=checkpoint,
                   real=RealRows.from_splits(splits, 30, (D,)))


@pytest.mark.parametrize("case", list(CASES))
def test_replicas_trained_together_equal_each_trained_alone(case):
    together = run_stack(case, SEEDS)[0]
    for r, seed in enumerate(SEEDS):
        alone = run_stack(case, [seed])[0][0]
        for key in ("test_rmse", "test_rmse_last", "val_rmse_best"):
            assert alone[key] == pytest.approx(together[r][key], rel=1e-5, abs=1e-7), (case, seed, key)


class Stop(Exception):
    pass


@pytest.mark.parametrize("case", list(CASES))
def test_a_resumed_stack_equals_an_uninterrupted_one(case, tmp_path):
    clean = run_stack(case, SEEDS)

    def stop(epoch, best):
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        run_stack(case, SEEDS, Checkpoint(tmp_path / "ck.pt", 1e-9, key="k", log=lambda *_: None), stop)
    resumed = run_stack(case, SEEDS, Checkpoint(tmp_path / "ck.pt", 1e-9, key="k", log=lambda *_: None))
    strip = lambda res: [{k: v for k, v in r.items() if k != "wall_time_s"} for r in res]  # noqa: E731
    assert strip(resumed[0]) == strip(clean[0])
    assert torch.equal(resumed[2].flat, clean[2].flat)


# -- mistakes, one line each ------------------------------------------------------------------------------------
def test_black_box_teacher_with_gm_names_the_alternatives():
    teacher = type("Box", (), {"differentiable": False, "d_in": D, "input_shape": (D,)})()
    method = TSM(kd=1.0, pm=1.0, abm=0.0, gm=1.0)
    method.set_real(real_rows())
    with pytest.raises(ConfigError, match="uses GM, which need the teacher's input gradients.*method.gm=0.*method=de") as e:
        method.bind(teacher, stacks()[1], SEEDS, context=Context((D,)))
    assert "\n" not in str(e.value)
    ok = TSM(kd=1.0, pm=1.0, abm=0.0, gm=0.0)  # base KD + PM needs only predict
    ok.set_real(real_rows())
    ok.bind(teacher, stacks()[1], SEEDS, context=Context((D,)))


@pytest.mark.parametrize("params, message", [
    ({"sigma_p": 0}, "sigma_p must be > 0"), ({"sigma_p": -1}, "sigma_p"), ({"pm": -1}, "method.pm"),
    ({"ascent": {"steps": 0}}, "ascent.steps must be >= 1"), ({"ascent": {"rate": 1}}, "ascent takes lr"),
    ({"kd": 0, "pm": 0, "abm": 0, "lambda_y": 0}, "no row term"), ({"abm_from": "noise"}, "abm_from")])
def test_bad_tsm_settings_are_one_line(params, message):
    with pytest.raises(ConfigError, match=message) as err:
        TSM(**params)
    assert "\n" not in str(err.value)


def test_start_on_a_method_without_base_points_is_one_line():
    from dfkd.methods.generator import Generator

    teacher, student = stacks()
    method = _started(Generator(hidden=8), 0.5)
    method.set_real(real_rows())
    with pytest.raises(ConfigError, match="does not start from base points.*remove method.start"):
        method.bind(teacher, student, SEEDS, context=Context((D,)))


def test_methods_that_need_real_rows_say_how_to_get_them():
    teacher, student = stacks()
    with pytest.raises(ConfigError, match="set real_fraction"):
        TSM().bind(teacher, student, SEEDS, context=Context((D,)))
    with pytest.raises(ConfigError, match="set real_fraction"):
        _started(Direct(), 1.0).bind(teacher, student, SEEDS, context=Context((D,)))


# -- configs and cells --------------------------------------------------------------------------------------------
def test_no_real_rows_leaves_the_config_hash_of_a_committed_cell_unchanged(tmp_path):
    """A committed Table 4 record's resolved config, with the new keys at their defaults, hashes as it did."""
    path = REPO_ROOT / "results/reference/records/pole/mlp50/direct-decreasing/seed01.json"
    rec = json.loads(path.read_text())
    for extra in ({}, {"real_fraction": 0.0, "real_rows": None}):
        settings = settings_from_dict({**rec["config"], **extra})
        assert settings.variant == "direct-decreasing" and settings.real_count == 0
        assert cell_hash(settings, rec["seed"], rec["batch_size"]) == rec["config_hash"]
    scarce = settings_from_dict({**rec["config"], "real_fraction": 0.1})
    assert scarce.variant == "direct-decreasing-p0.1"
    assert cell_hash(scarce, rec["seed"], rec["batch_size"]) != rec["config_hash"]


@pytest.mark.data
def test_a_tiny_scarce_cell_writes_records_named_by_its_real_rows(tmp_path, data_mirror):
    settings = tiny_settings(tmp_path, data_mirror, ["dataset=cpusmall", "variant=tsm-1", "real_fraction=0.01",
                                                     "seeds=2", "epochs=3", "steps_per_epoch=2", "teacher.max_epochs=3",
                                                     "progress=false"])
    assert settings.real_count == 50
    out = run_cell(settings, log=lambda *_: None)
    assert out["status"] == "done" and len(out["records"]) == 2
    rec = json.loads(Path(out["records"][0]).read_text())
    assert Path(out["records"][0]).parent.name == "tsm-1-p0.01"
    assert (rec["variant"], rec["real_fraction"], rec["real_rows"], rec["status"]) == ("tsm-1-p0.01", 0.01, 50, "ok")
    assert math.isfinite(rec["test_rmse"])
    rows = tiny_settings(tmp_path, data_mirror, ["dataset=cpusmall", "variant=direct_real-decreasing",
                                                 "real_rows=20", "seeds=1", "epochs=2", "teacher.max_epochs=3",
                                                 "progress=false"])
    assert rows.variant == "direct_real-decreasing-n20" and build_method(rows).start == 1.0


@pytest.mark.data
def test_a_scarce_method_without_real_rows_fails_in_one_line(tmp_path, data_mirror):
    settings = tiny_settings(tmp_path, data_mirror, ["dataset=cpusmall", "variant=kd-1", "seeds=1", "epochs=2",
                                                     "teacher.max_epochs=3", "progress=false"])
    with pytest.raises(ConfigError, match="set real_fraction"):
        run_cell(settings, log=lambda *_: None)
