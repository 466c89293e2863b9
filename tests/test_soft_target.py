"""method=soft_target: Wang (2021)'s soft targeted transfer set synthesis, adapted to regression teachers.

The Gaussian layer model samples the covariance it claims, the synthesis reaches its targets, a stack's
replicas equal each replica alone, a checkpoint resumes exactly, bad settings are one-line ConfigErrors,
and a tiny cell runs end to end from the shipped yamls.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, toy_split
from dfkd.core import rng
from dfkd.data.context import Context
from dfkd.data.sampler import make_sampler
from dfkd.engine.alpha import AlphaSchedule
from dfkd.engine.checkpoint import Checkpoint
from dfkd.engine.distill import StudentConfig, distill
from dfkd.errors import ConfigError
from dfkd.methods.soft_target import SoftTarget
from dfkd.models.cnn import CNNStack
from dfkd.models.mlp import MLPStack

SEEDS = [1, 2, 3]
FAST = dict(size=64, steps=5, chunk=0)  # a small transfer set: the engine tests need its mechanics, not its quality


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors run faster on one thread


def bound(method, teacher, seeds, context=None):
    method.bind(teacher, None, seeds, context=context)
    method.set_noise(rng.generators(seeds, "noise"))
    return method


def hand_made_teacher():
    """Two replicas, d = 3 inputs, h = 4 units, with weight rows of different lengths and correlations."""
    w1 = [torch.tensor([[1.0, 0.0, 0.0], [2.0, 2.0, 0.0], [0.0, -3.0, 1.0], [0.5, 0.5, 0.5]]),
          torch.tensor([[0.0, 1.0, 1.0], [-1.0, 0.0, 2.0], [1.0, 1.0, 1.0], [4.0, 0.0, -1.0]])]
    params = [{"w1": w, "b1": torch.tensor([0.5, -1.0, 0.0, 2.0]) * (r + 1), "w2": torch.ones(1, 4) / 4,
               "b2": torch.tensor([0.1])} for r, w in enumerate(w1)]
    return MLPStack.from_params(params), w1, [p["b1"] for p in params]


# -- the layer model ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mu,jitter", [("bias", 0.0), ("zero", 0.3)])
def test_sampled_preactivations_have_covariance_sigma_times_the_weights_correlation(mu, jitter):
    teacher, w1, b1 = hand_made_teacher()
    sigma, n = 1.5, 200_000
    method = bound(SoftTarget(sigma=sigma, mu=mu, jitter=jitter), teacher, [1, 2])
    a = method.sample_features(n).double()  # (2, n, 4)
    for r in range(2):
        u = w1[r].double() / w1[r].double().norm(dim=1, keepdim=True)
        corr = u @ u.T  # R_ij = cos(W1[i, :], W1[j, :])
        want = sigma * corr + jitter * torch.eye(4, dtype=torch.float64)
        mean = a[r].mean(0)
        cov = (a[r] - mean).T @ (a[r] - mean) / (n - 1)
        # entries of an empirical covariance of 2e5 draws have std <= sigma * sqrt(2 / n) ~ 0.005
        torch.testing.assert_close(cov, want, rtol=0, atol=0.03)
        torch.testing.assert_close(mean, b1[r].double() if mu == "bias" else torch.zeros(4, dtype=torch.float64),
                                   rtol=0, atol=0.02)
        if not jitter:  # 4 units from d = 3 inputs: the draws span exactly 3 dimensions, as sigma * R does
            assert torch.linalg.eigvalsh(cov)[0] < 1e-6 < torch.linalg.eigvalsh(cov)[1]


def test_soft_targets_are_the_teachers_head_on_sampled_features():
    teacher, _, _ = hand_made_teacher()
    method = bound(SoftTarget(size=10), teacher, [1, 2])
    y = method.soft_targets()
    again = bound(SoftTarget(size=10), teacher, [1, 2]).sample_features(10)  # the same stream from the start
    want = torch.tanh(again) @ teacher.w2 + teacher.b2  # y* = w2 . tanh(a*) + b2
    torch.testing.assert_close(y, want.squeeze(-1))


def test_output_targets_widen_the_teachers_output_spread_by_sqrt_sigma():
    teacher = MLPStack.init(4, 16, 1, rng.generators([1, 2], "t"))
    sigma = 2.5
    y = bound(SoftTarget(size=500, target="output", sigma=sigma), teacher, [1, 2]).soft_targets()
    x0 = Context((4,)).sampler(rng.generators([1, 2], "soft_target"), 500)  # the draws the method made
    t0 = teacher.predict(x0)
    torch.testing.assert_close(y.std(1), math.sqrt(sigma) * t0.std(1))
    torch.testing.assert_close(y.mean(1), t0.mean(1))


# -- the synthesis -----------------------------------------------------------------------------------------
def test_optimised_inputs_reach_their_soft_targets_on_a_toy_teacher():
    teacher = MLPStack.init(4, 16, 1, rng.generators([1, 2], "t")).freeze()
    method = bound(SoftTarget(size=200, steps=150, lr=0.05, chunk=0), teacher, [1, 2])
    y = method.soft_targets()
    x0 = method.base(200)
    before = (teacher.predict(x0) - y).square().mean(1).sqrt()
    x = method.synthesize(x0, y)
    after = (teacher.predict(x) - y).square().mean(1).sqrt()
    # RMS miss within 0.03 (y* has std ~0.25 here), at most a tenth of the starting miss
    assert torch.all(after < 0.03) and torch.all(after < 0.1 * before), (before, after)
    assert x.abs().max() < 6  # the prior term keeps the rows at the base distribution's scale


@pytest.mark.parametrize("kind", ["normal", "simplex"])
def test_the_mlps_hand_written_gradient_equals_autograd_on_the_whole_loss(kind):
    import dataclasses

    teacher = MLPStack.init(6, 30, 1, rng.generators([1, 2], "t")).freeze()
    stats = {"mean": np.full(6, 0.2), "std": np.linspace(0.01, 0.3, 6)} if kind == "simplex" else {}
    context = Context((6,), make_sampler(kind, (6,), **stats))
    method = bound(SoftTarget(size=40, prior=0.3, act=0.2), teacher, [1, 2], context)
    y, x = method.soft_targets(), method.base(40)
    fast = method.input_grad(x, y, 0.1)
    method.feature = dataclasses.replace(method.feature, forward=None, backward=None)  # the autograd path
    torch.testing.assert_close(fast, method.input_grad(x, y, 0.1), rtol=1e-4, atol=1e-7)


def test_chunked_synthesis_gives_the_same_inputs():
    teacher = MLPStack.init(4, 16, 1, rng.generators([1, 2], "t"))
    sets = []
    for chunk in (0, 7):
        method = bound(SoftTarget(size=30, steps=10, chunk=chunk), teacher, [1, 2])
        method.start_epoch(0, 5)
        sets.append(method.set)
    torch.testing.assert_close(sets[0], sets[1], rtol=0, atol=1e-6)


def tiny_cnn_setup(seeds):
    shape = (1, 28, 28)
    context = Context(shape, make_sampler("pixel", shape, mean=np.full(shape, 0.2), var=np.full(shape, 0.05)))
    teacher = CNNStack.init(1, rng.generators(seeds, "t"), hidden=(8, 4, 2)).freeze()
    return teacher, context


def test_the_cnn_teacher_opens_its_hidden_fc_layers_and_images_stay_in_bounds():
    seeds = [1, 2]
    teacher, context = tiny_cnn_setup(seeds)
    assert teacher.feature_layers == ("fc1", "fc2", "fc3")
    x = context.sampler(rng.generators(seeds, "x"), 5)
    for name in teacher.feature_layers:  # pre then head is the network (without dropout)
        layer = teacher.feature_layer(name)
        torch.testing.assert_close(layer.head(layer.pre(x)), teacher.predict(x))
    method = bound(SoftTarget(layer="fc2", size=12, steps=10, lr=0.05, chunk=5), teacher, seeds, context)
    assert method.u.shape == (2, 4, 8)  # FC-4's incoming weights: 4 units, fan-in 8
    method.start_epoch(0, 3)
    assert method.set.shape == (2, 12, 1, 28, 28) and method.set.min() >= 0 and method.set.max() <= 1
    start = bound(SoftTarget(layer="fc2", size=12, steps=10, chunk=5), teacher, seeds, context).base(12)
    miss = lambda x: (teacher.predict(x) - method.targets).square().mean()  # noqa: E731
    assert miss(method.set) < miss(start)
    assert method.sample(3).shape == (2, 3, 1, 28, 28)
    # replica 2 alone builds the set it builds beside replica 1 (grouped convolutions, per-replica streams)
    alone_teacher, _ = tiny_cnn_setup([2])
    alone = bound(SoftTarget(layer="fc2", size=12, steps=10, lr=0.05, chunk=5), alone_teacher, [2], context)
    alone.start_epoch(0, 3)
    torch.testing.assert_close(alone.set[0], method.set[1], rtol=0, atol=1e-5)


# -- the engine --------------------------------------------------------------------------------------------
CFG = StudentConfig(hidden=5, epochs=4, steps_per_epoch=2)


def test_replicas_trained_together_equal_each_replica_trained_alone():
    splits = [toy_split(s) for s in SEEDS]
    teacher = MLPStack.init(6, 20, 1, rng.generators(SEEDS, "t"))
    together = SoftTarget(refresh_every=2, **FAST)
    res, _, student, _ = distill(teacher, splits, SEEDS, together, AlphaSchedule("decreasing"), CFG)
    assert together.builds == 2 and together.built_at == 2  # at epochs 0 and 2 (alpha is 0 in epoch 3 only)
    for r, seed in enumerate(SEEDS):
        alone_teacher = MLPStack.from_params([teacher.replica_params(r)])
        alone = SoftTarget(refresh_every=2, **FAST)
        res1, _, student1, _ = distill(alone_teacher, splits[r:r + 1], [seed], alone, AlphaSchedule("decreasing"), CFG)
        torch.testing.assert_close(alone.set[0], together.set[r], rtol=0, atol=1e-5)
        torch.testing.assert_close(student1.flat[0], student.flat[r], rtol=0, atol=1e-5)
        assert res1[0]["test_rmse"] == pytest.approx(res[r]["test_rmse"], rel=1e-5)


def test_state_dict_round_trip_continues_identically():
    teacher = MLPStack.init(6, 20, 1, rng.generators(SEEDS, "t"))
    first = bound(SoftTarget(refresh_every=2, **FAST), teacher, SEEDS)
    first.start_epoch(0, 4)
    first.sample(4)
    state = first.state_dict()
    second = bound(SoftTarget(refresh_every=2, **FAST), teacher, SEEDS)
    second.load_state_dict(state)
    second.set_noise(first.noise)  # the engine restores its own noise streams
    noise_state = [g.get_state() for g in first.noise]
    for epoch in (1, 2):
        a, b = first, second
        for g, s in zip(a.noise, noise_state):
            g.set_state(s)
        a.start_epoch(epoch, 4)
        xa = a.sample(4)
        for g, s in zip(b.noise, noise_state):
            g.set_state(s)
        b.start_epoch(epoch, 4)
        assert torch.equal(xa, b.sample(4)) and a.built_at == b.built_at
        noise_state = [g.get_state() for g in a.noise]
    assert second.builds == 2
    with pytest.raises(ValueError, match="does not fit"):
        bound(SoftTarget(refresh_every=2, size=10, steps=5), teacher, SEEDS).load_state_dict(state)


class Stop(Exception):
    """Stands in for a kill: raised from the progress callback after an epoch."""


def test_a_run_interrupted_and_resumed_from_its_checkpoint_equals_an_uninterrupted_run(tmp_path):
    splits = [toy_split(s) for s in SEEDS]
    cfg = StudentConfig(hidden=5, epochs=6, steps_per_epoch=2)

    def run(checkpoint=None, stop=None):
        def progress(epoch, best):
            if epoch == stop:
                raise Stop
        teacher = MLPStack.init(6, 20, 1, rng.generators(SEEDS, "t"))
        return distill(teacher, splits, SEEDS, SoftTarget(refresh_every=2, **FAST), AlphaSchedule("decreasing"), cfg,
                       progress=progress, checkpoint=checkpoint, keep_samples=3)

    clean = run()
    path = tmp_path / "ck.pt"
    with pytest.raises(Stop):  # stopped after epoch 2, whose start built a new set: the checkpoint must hold it
        run(Checkpoint(path, 1e-9, key="k", log=lambda *_: None), stop=2)
    lines = []
    ckpt = Checkpoint(path, 1e-9, key="k", log=lines.append)
    resumed = run(ckpt)
    assert ckpt.resumed_epoch == 3 and lines[0].startswith("resuming seeds [1, 2, 3] from epoch 3")
    (res_a, tr_a, st_a, best_a), (res_b, tr_b, st_b, best_b) = clean, resumed
    strip = lambda res: [{k: v for k, v in r.items() if k != "wall_time_s"} for r in res]  # noqa: E731
    assert strip(res_a) == strip(res_b)
    for k in tr_a:
        torch.testing.assert_close(tr_a[k], tr_b[k], rtol=0, atol=0, equal_nan=True)
    assert torch.equal(st_a.flat, st_b.flat) and torch.equal(best_a, best_b)


# -- mistakes ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("params,expect", [
    ({"sigma": 0}, "method.sigma must be > 0, got 0"),
    ({"sigma": -1.5}, "method.sigma must be > 0"),
    ({"steps": 0}, "method.steps must be a positive integer, got 0"),
    ({"size": 0}, "method.size must be a positive integer, got 0"),
    ({"size": -5}, "method.size must be a positive integer"),
    ({"mu": "mean"}, "method.mu 'mean' unknown: use one of bias, zero"),
    ({"target": "logits"}, "method.target 'logits' unknown: use one of features, output"),
    ({"lr": 0}, "method.lr must be > 0"),
    ({"refresh_every": -1}, "method.refresh_every must be an integer >= 0"),
])
def test_bad_settings_are_one_line_config_errors(params, expect):
    with pytest.raises(ConfigError) as err:
        SoftTarget(**params)
    assert expect in str(err.value) and "\n" not in str(err.value)


def test_unknown_layers_and_teachers_without_layers_are_one_line_config_errors():
    teacher = MLPStack.init(6, 20, 1, rng.generators([1], "t"))
    with pytest.raises(ConfigError) as err:
        bound(SoftTarget(layer="fc2"), teacher, [1])
    assert str(err.value) == ("method.layer 'fc2' is not a layer of this teacher: it has hidden "
                              "(set e.g. method.layer=hidden)")
    cnn, context = tiny_cnn_setup([1])
    with pytest.raises(ConfigError, match=r"'hidden' is not a layer of this teacher: it has fc1, fc2, fc3 \("):
        bound(SoftTarget(layer="hidden"), cnn, [1], context)
    with pytest.raises(ConfigError, match="it has fc1, fc2, fc3$"):
        cnn.feature_layer("conv1")

    class Opaque:  # differentiable, but opens no layer (e.g. an RBF net)
        differentiable, d_in = True, 6
    with pytest.raises(ConfigError, match="opens none: use teacher=mlp500 or teacher=cnn10$"):
        bound(SoftTarget(), Opaque(), [1])
    from dfkd.models.blackbox import BlackBoxTeacher

    class Linear:
        def predict(self, X):
            return X.sum(1)
    with pytest.raises(ConfigError, match="black box: use method=de"):
        bound(SoftTarget(), BlackBoxTeacher([Linear()], d_in=6), [1])


# -- configs and a cell end to end -------------------------------------------------------------------------
def compose(overrides):
    from hydra import compose as hydra_compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        return OmegaConf.to_container(hydra_compose("config", overrides=list(overrides)), resolve=True)


@pytest.mark.parametrize("variant,target", [("soft_target-decreasing", "features"),
                                            ("soft_target_output-decreasing", "output")])
def test_variants_compose_and_build(variant, target):
    from dfkd.settings import build_method, settings_from_dict

    cfg = compose([f"variant={variant}", "data_mirror=null"])
    settings = settings_from_dict(cfg)
    method = build_method(settings)
    assert (method.name, method.target, settings.alpha.label) == (variant.split("-")[0], target, "decreasing")
    assert (method.size, method.steps, method.refresh_every, method.sigma) == (2000, 30, 100, 2.0)
    text = (REPO_ROOT / "conf" / "method" / f"{method.name}.yaml").read_text()
    assert "soft_target / direct =" in text or "soft_target_output / direct =" in text  # the measured cost


def test_the_mnist_yaml_models_a_hidden_fc_layer_of_the_cnn_teacher():
    from dfkd.settings import build_method, settings_from_dict

    settings = settings_from_dict(compose(["dataset=mnist", "teacher=cnn10", "student=cnn5",
                                           "method=soft_target_mnist", "data_mirror=null"]))
    method = build_method(settings)
    assert method.name == "soft_target_mnist" and method.layer in CNNStack(10, 1).feature_layers


def test_a_tiny_pole_cell_runs_end_to_end(tmp_path, data_mirror):
    from dfkd.distill import run_config

    common = ["dataset=pole", "alpha=decreasing", "seeds=2", "epochs=3", "steps_per_epoch=2", "teacher.max_epochs=2",
              "method.size=50", "method.steps=3", "progress=false", "threads=1", "checkpoint_every_s=0",
              f"results_dir={tmp_path / 'results'}", f"teacher_dir={tmp_path / 'teachers'}",
              f"data_dir={tmp_path / 'data'}", f"data_mirror={data_mirror}"]
    for method in ("soft_target", "soft_target_output"):
        out = run_config(compose([f"method={method}", *common]), log=lambda *_: None)
        assert out["status"] == "done" and out["ran"] == [1, 2]
        rec = json.loads(Path(out["records"][0]).read_text())
        assert (rec["method"], rec["variant"], rec["status"]) == (method, f"{method}-decreasing", "ok")
        assert rec["method_params"]["size"] == 50 and 0 < rec["test_rmse"] < 10
