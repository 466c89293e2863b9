"""MNIST as regression (paper section 3.5, Table 5, Figures 9 and 10).

The CNN stack against a plain nn.Module, dropout, each term of the eq. 8
objective, the per-pixel sampler, the data and its statistics, the methods on
images, a tiny end-to-end run that writes records and a Table 5 row, and the
figures drawn from fabricated records.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dfkd.core import rng
from dfkd.errors import ConfigError
from dfkd.data.context import Context
from dfkd.methods.direct import Direct
from dfkd.methods.generator import Generator
from dfkd.core.losses import logcosh
from dfkd.methods.objective import Objective
from dfkd.methods.random import Random
from dfkd.data.sampler import make_sampler
from dfkd.models.cnn import CNNStack, cnn_module
from dfkd.models.mlp import MLPStack, mlp_module

EQ8 = dict(disagreement=1e-6, loss="logcosh", l1=1e-6, target=1.0, y_rand="integers", y_low=0, y_high=9)


# -- the CNN ----------------------------------------------------------------------------
@pytest.mark.parametrize("filters", [10, 5])
def test_cnn_output_shapes_and_layers_for_both_widths(filters):
    stack = CNNStack.init(filters, rng.generators([1, 2], "init"))
    x = torch.rand(2, 3, 1, 28, 28)
    assert stack.forward(x).shape == (2, 3, 1) and stack.predict(x).shape == (2, 3)
    assert stack.flat_width == 4 * filters * 25  # valid padding: 28 -> 26 -> 24 -> 12 -> 10 -> 5
    expected = sum(p.numel() for p in cnn_module(stack.replica_params(0), filters).parameters())
    assert stack.n_params == expected
    assert torch.all(stack.predict(x) > 0)  # softplus output
    for r in range(2):
        ref = cnn_module(stack.replica_params(r), filters).eval()(x[r]).squeeze(-1)
        torch.testing.assert_close(stack.predict(x)[r], ref, rtol=1e-5, atol=1e-6)


def test_cnn_gradients_match_a_plain_module():
    stack = CNNStack.init(5, rng.generators([3, 4], "init"))
    x = torch.rand(2, 4, 1, 28, 28)
    _, cache = stack.forward(x, keep=True)
    g_out = torch.randn(2, 4)
    grad, gx = stack.backward(cache, g_out, params=True, inputs=True)
    for r in range(2):
        net = cnn_module(stack.replica_params(r), 5).eval()
        xr = x[r].clone().requires_grad_(True)
        (net(xr).squeeze(-1) * g_out[r]).sum().backward()
        torch.testing.assert_close(gx[r], xr.grad, rtol=1e-4, atol=1e-6)
        for got, p in zip(stack.views(grad), net.parameters()):
            torch.testing.assert_close(got[r], p.grad, rtol=1e-4, atol=1e-6)


def test_dropout_is_on_only_while_training_and_per_replica():
    x = torch.rand(2, 6, 1, 28, 28)
    stack = CNNStack.init(5, rng.generators([1, 2], "init"))
    assert torch.equal(stack.predict(x), stack.predict(x))
    trained = stack.forward(x, train=True).squeeze(-1)
    assert not torch.allclose(trained, stack.predict(x))
    # replica of seed 2 draws the same masks alone as beside seed 1
    alone = CNNStack.init(5, rng.generators([2], "init"))
    again = CNNStack.init(5, rng.generators([1, 2], "init"))
    torch.testing.assert_close(again.forward(x, train=True)[1], alone.forward(x[1:], train=True)[0])
    with pytest.raises(ConfigError, match="image inputs"):
        from dfkd.models import build_stack

        build_stack("cnn", (12,), rng.generators([1], "init"))


# -- eq. 8, term by term -------------------------------------------------------------------
def test_eq8_terms_on_hand_made_tensors():
    t = torch.tensor([[1.0, 3.0]])
    s = torch.tensor([[0.0, 3.5]])
    y = torch.tensor([[2.0, 3.0]])
    # disagreement alone: -eps * logcosh(T - S), mean over rows
    value, g_t, g_s = Objective(disagreement=0.5, loss="logcosh").grads(t, s)
    lc = [math.log(math.cosh(1.0)), math.log(math.cosh(-0.5))]
    assert value.item() == pytest.approx(-0.5 * (lc[0] + lc[1]) / 2, rel=1e-6)
    torch.testing.assert_close(g_t, -0.5 * torch.tanh(torch.tensor([[1.0, -0.5]])) / 2)
    torch.testing.assert_close(g_s, -g_t)
    # target alone: gamma * (T - y_rand)^2; rows miss by 1 and 0
    value, g_t, g_s = Objective(disagreement=0.0, target=2.0).grads(t, s, y)
    assert value.item() == pytest.approx(2.0 * (1.0 + 0.0) / 2)
    torch.testing.assert_close(g_t, torch.tensor([[2.0 * 2.0 * -1.0 / 2, 0.0]]))
    assert torch.all(g_s == 0)
    # L1 alone: beta * mean over rows of |x|_1
    x = torch.tensor([[[[0.0, 0.5], [0.25, 1.0]]], [[[1.0, 1.0], [0.0, 0.0]]]]).reshape(1, 2, 1, 2, 2)
    assert Objective(disagreement=0.0, l1=0.1).l1_value(x).item() == pytest.approx(0.1 * (1.75 + 2.0) / 2)
    # all together, and logcosh is stable where cosh overflows
    value, _, _ = Objective(disagreement=0.5, loss="logcosh", target=2.0).grads(t, s, y)
    assert value.item() == pytest.approx((-0.5 * (lc[0] + lc[1]) + 2.0 * 1.0) / 2, rel=1e-6)
    assert logcosh(torch.tensor(200.0)).item() == pytest.approx(200.0 - math.log(2.0))
    with pytest.raises(ValueError, match="target term"):
        Objective(target=1.0).grads(t, s)
    with pytest.raises(ConfigError):
        Objective(loss="huber")


def test_eq8_input_gradient_matches_autograd():
    seeds = [1, 2]
    teacher = MLPStack.init(6, 9, 1, rng.generators(seeds, "t"))
    student = MLPStack.init(6, 4, 1, rng.generators(seeds, "s"))
    obj = Objective(**dict(EQ8, disagreement=0.3, l1=0.05))
    x = torch.rand(2, 5, 6)
    y = obj.draw_target(rng.generators(seeds, "y"), 5)
    got = obj.input_grad(teacher, student, x.clone(), y)
    for r in range(2):
        tm, sm = mlp_module(teacher.replica_params(r)), mlp_module(student.replica_params(r))
        xr = x[r].clone().requires_grad_(True)
        tr, sr = tm(xr).squeeze(-1), sm(xr).squeeze(-1)
        d = tr - sr
        loss = (-0.3 * torch.log(torch.cosh(d)) + (tr - y[r]) ** 2).mean() + 0.05 * xr.abs().sum(-1).mean()
        loss.backward()
        torch.testing.assert_close(got[r], xr.grad, rtol=1e-4, atol=1e-6)


def test_random_targets_are_integers_0_to_9_per_row_or_per_batch():
    gens = rng.generators([1, 2], "y")
    y = Objective(**EQ8).draw_target(gens, 400)
    assert y.shape == (2, 400) and set(y.unique().tolist()) == set(range(10))
    batch = Objective(**dict(EQ8, y_per="batch")).draw_target(gens, 7)
    assert torch.all(batch == batch[:, :1])
    again = Objective(**EQ8).draw_target(rng.generators([1, 2], "y"), 400)
    assert torch.equal(y, again)


# -- per-pixel sampling --------------------------------------------------------------------
def test_pixel_sampling_bounds_and_statistics():
    shape = (1, 4, 4)
    mean = np.full((4, 4), 0.5, np.float32)
    mean[0, 0] = 0.0
    var = np.full((4, 4), 0.01, np.float32)
    var[0, 0] = 0.09
    sampler = make_sampler("pixel", shape, mean=mean, var=var)
    x = sampler(rng.generators([1, 2], "noise"), 4000)
    assert x.shape == (2, 4000, 1, 4, 4) and x.min() >= 0 and x.max() <= 1
    inner = x[:, :, 0, 1:, 1:]
    assert abs(inner.mean().item() - 0.5) < 0.005 and abs(inner.std().item() - 0.1) < 0.005
    corner = x[:, :, 0, 0, 0]
    assert abs((corner == 0).float().mean().item() - 0.5) < 0.03  # half of N(0, 0.3) clips to 0
    assert torch.equal(sampler(rng.generators([2], "noise"), 10)[0], sampler(rng.generators([1, 2], "noise"), 10)[1])
    with pytest.raises(ConfigError):
        make_sampler("pixel", shape, mean=mean)
    with pytest.raises(ConfigError):
        make_sampler("poisson", shape)


@pytest.fixture(scope="module")
def mnist_data(data_mirror, tmp_path_factory):
    from dfkd.data import load_spec
    from dfkd.data.images import load_mnist

    if not (data_mirror / "mnist" / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("no MNIST files in the data mirror")
    spec = load_spec("mnist")
    return spec, load_mnist(spec, tmp_path_factory.mktemp("data"), data_mirror)


def test_mnist_data_split_and_pixel_stats_match_the_authors(mnist_data, data_mirror):
    from dfkd.data.images import image_split, pixel_stats

    _, data = mnist_data
    assert data.train_images.shape == (60000, 28, 28) and data.test_images.shape == (10000, 28, 28)
    assert np.bincount(data.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    mean, var = pixel_stats(data.train_images)
    np.testing.assert_allclose(mean, np.load(data_mirror / "mnist/pixel_stats/x_mean.npy"), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(var, np.load(data_mirror / "mnist/pixel_stats/x_var.npy"), rtol=1e-3, atol=1e-7)
    split = image_split(data, n_val=5000, val_seed=0)
    assert split.X_train.shape == (55000, 1, 28, 28) and split.X_val.shape == (5000, 1, 28, 28)
    assert split.X_test.shape == (10000, 1, 28, 28) and split.X_train.dtype == np.float32
    assert 0 <= split.X_train.min() and split.X_train.max() == 1.0
    assert set(np.unique(split.y_test)) == set(range(10))
    small = image_split(data, n_val=100, val_seed=0, n_train=300, n_test=50)
    assert (small.X_train.shape[0], small.X_val.shape[0], small.X_test.shape[0]) == (300, 100, 50)
    with pytest.raises(ConfigError):
        image_split(data, n_val=5000, n_train=56000)


# -- the methods on images ------------------------------------------------------------------
def image_context(stats_mean=0.13, stats_var=0.09):
    shape = (1, 28, 28)
    mean, var = np.full((28, 28), stats_mean, np.float32), np.full((28, 28), stats_var, np.float32)
    return Context(shape, make_sampler("pixel", shape, mean=mean, var=var))


def bound(method, seeds=(1, 2), teacher=None):
    teacher = teacher or CNNStack.init(2, rng.generators(seeds, "t")).freeze()
    student = CNNStack.init(2, rng.generators(seeds, "s"))
    method.bind(teacher, student, list(seeds), context=image_context())
    method.set_noise(rng.generators(seeds, "noise"))
    return method


def test_direct_eq8_keeps_images_in_range_and_moves_them():
    method = bound(Direct(lr=1e-3, steps=3, beta=0.0, objective=EQ8))
    start = Random()
    start.bind(method.teacher, method.student, [1, 2], context=image_context())
    start.set_noise(rng.generators([1, 2], "noise"))
    x0, x = start.sample(4), method.sample(4)
    assert x.shape == (2, 4, 1, 28, 28) and x.min() >= 0 and x.max() <= 1
    moved = (x - x0).abs()
    assert 0 < moved.max() <= 3 * 0.0101  # a fresh RMSprop moves each pixel by at most ~lr/sqrt(1-0.99) per step


def test_conv_generator_makes_valid_images_and_learns():
    gen = bound(Generator(arch="conv", latent=8, hidden=4, rounds=2, beta=0.0, objective=EQ8))
    before = gen.net.flat.clone()
    gen.start_epoch(0, 5)
    x = gen.sample(5)
    assert x.shape == (2, 5, 1, 28, 28) and 0 < x.min() and x.max() < 1
    assert not torch.equal(before, gen.net.flat)


def test_gradient_methods_refuse_a_black_box_teacher():
    class BlackBox:
        differentiable = False
        d_in = 4

        def predict(self, x):
            return x.sum(-1)

    student = MLPStack.init(4, 3, 1, rng.generators([1], "s"))
    for method in (Direct(), Generator()):
        with pytest.raises(ConfigError, match="method=de"):
            method.bind(BlackBox(), student, [1])
    Random().bind(BlackBox(), student, [1])


# -- end to end: a tiny run writes a record and a Table 5 row -----------------------------------
def test_tiny_mnist_run_writes_records_and_a_table5_row(mnist_data, data_mirror, tmp_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from dfkd.cli import CONF_DIR
    from dfkd.report import load_records, render_markdown, summarize
    from dfkd.report.tables import load_table_specs
    from dfkd.cell import run_cell
    from dfkd.settings import settings_from_dict

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[
            "dataset=mnist", "teacher=cnn10", "student=cnn5", "variant=direct_mnist-decreasing", "seeds=2", "epochs=2",
            "steps_per_epoch=1", "teacher.epochs=1", "subset.train=200", "subset.test=100", "dataset.split.n_val=100",
            "method.steps=2", "synthetic_samples=6", "progress=false", f"results_dir={tmp_path / 'results'}",
            f"teacher_dir={tmp_path / 'teachers'}", f"data_dir={tmp_path / 'data'}", f"data_mirror={data_mirror}"])
    summary = run_cell(settings_from_dict(OmegaConf.to_container(cfg, resolve=True)), log=lambda *_: None)
    assert summary["status"] == "done" and summary["ran"] == [1, 2]
    rec = json.loads(Path(summary["records"][0]).read_text())
    assert (rec["dataset"], rec["variant"], rec["student"], rec["student_arch"]) == \
        ("mnist", "direct_mnist-decreasing", "cnn5", "cnn")
    assert rec["n_test_images"] == 100 and rec["n_val_images"] == 100 and rec["n_train_images"] == 200
    for key in ("test_mae", "test_rmse", "test_mae_last", "teacher_test_mae", "teacher_test_rmse"):
        assert 0 < rec[key] < 10, key
    trace = np.load(Path(summary["records"][0]).with_suffix(".trace.npz"))
    assert trace["synthetic_x"].shape == (6, 1, 28, 28) and trace["synthetic_t"].shape == (6,)
    assert trace["synthetic_x"].min() >= 0 and trace["synthetic_x"].max() <= 1
    spec = load_table_specs()["table5"]
    table = summarize(load_records(tmp_path / "results" / "records"), spec)
    row = table[(table["metric"] == "MAE") & (table["variant"] == "direct_mnist-decreasing")].iloc[0]
    assert row.n_ok == 2 and row["mean"] == pytest.approx(np.mean([
        json.loads(Path(p).read_text())["test_mae"] for p in summary["records"]]))
    text = render_markdown(table, spec, {})
    assert "| MAE |" in text and "| RMSE |" in text and "paper 1.1790 ± 0.1320" in text


# -- figures from fabricated records --------------------------------------------------------
def test_figures_9_and_10_from_fabricated_records(tmp_path):
    from dfkd.report import load_records
    from dfkd.report.figures import load_figure_specs, synthetic_batches, write_figure

    root = tmp_path / "records"
    gen = np.random.default_rng(0)
    for variant, seeds in (("random-0", [2, 1]), ("direct_mnist-decreasing", [1])):
        method, alpha = variant.rsplit("-", 1)
        for seed in seeds:
            folder = root / "mnist" / "cnn5" / f"{method}-{alpha}"
            folder.mkdir(parents=True, exist_ok=True)
            np.savez(folder / f"seed{seed:02d}.trace.npz", val_rmse=np.ones(3, np.float32),
                     synthetic_x=gen.random((50, 1, 28, 28), dtype=np.float32),
                     synthetic_t=gen.normal(4.5 + seed, 2, 50).astype(np.float32))
            (folder / f"seed{seed:02d}.json").write_text(json.dumps(dict(
                schema=1, kind="distill", experiment="quick", dataset="mnist", method=method, alpha=alpha,
                variant=variant, student="cnn5", seed=seed, status="ok", test_mae=1.0, test_rmse=2.0,
                created="2024-01-01", trace_file=f"seed{seed:02d}.trace.npz")))
    df = load_records(root)
    specs = load_figure_specs()
    batches = synthetic_batches(df, specs["fig10"])
    assert set(batches) == {"Random sampling", "Direct optimizer"} and batches["Random sampling"]["seed"] == 1
    for name in ("fig9", "fig10"):
        paths, n = write_figure(df, specs[name], tmp_path / "figures")
        assert n == 2 and [p.suffix for p in paths] == [".png", ".pdf"]
        assert all(p.stat().st_size > 5000 for p in paths)
        assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("overrides,match", [
    (["dataset=mnist"], "holds images, which teacher=mlp500 and student=mlp50 do not take: use teacher=cnn10 student=cnn5"),
    (["dataset=mnist", "teacher=cnn10"], "holds images, which student=mlp50 does not take: use teacher=cnn10 student=cnn5"),
    (["dataset=pole", "teacher=cnn10", "student=cnn5"], "holds tables, which teacher=cnn10 and student=cnn5 do not take: "
                                                         "use teacher=mlp500"),
])
def test_image_and_table_networks_do_not_mix(overrides, match, tmp_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from dfkd.cli import CONF_DIR
    from dfkd.cell import load_data
    from dfkd.settings import settings_from_dict

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides + ["data_mirror=null", f"data_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=match):
        load_data(settings_from_dict(OmegaConf.to_container(cfg, resolve=True)), [1])
