"""Each method's synthetic batch, the optimizers and the alpha schedules."""

import math

import pytest
import torch

from dfkd.core import rng
from dfkd.engine.alpha import AlphaSchedule
from dfkd.core.optim import PlateauStack, RMSpropStack, fresh_rmsprop_steps
from dfkd.errors import ConfigError
from dfkd.methods.direct import Direct
from dfkd.methods.generator import Generator
from dfkd.methods.objective import Disagreement
from dfkd.methods.random import Random
from dfkd.models.mlp import MLPStack, init_mlp_params, mlp_module


def stacks(d=7, seeds=(1, 2)):
    teacher = MLPStack.init(d, 20, 1, rng.generators(seeds, "t"))
    student = MLPStack.init(d, 5, 1, rng.generators(seeds, "s"))
    return teacher, student


def bound(method, d=7, seeds=(1, 2)):
    teacher, student = stacks(d, seeds)
    method.bind(teacher, student, list(seeds))
    method.set_noise(rng.generators(seeds, "noise"))
    return method


def test_fresh_rmsprop_moves_every_coordinate_by_about_one_then_0_7():
    """SPEC: a fresh RMSprop (lr 0.1, alpha 0.99) moves each coordinate by ~1.0, then ~0.7."""
    torch.manual_seed(0)
    x0 = torch.randn(2, 50, 7)
    target = torch.randn(2, 50, 7)
    grad_fn = lambda x: 2 * (x - target) * torch.rand_like(x).add_(0.5)  # noqa: E731
    x1 = fresh_rmsprop_steps(x0.clone(), grad_fn, 1, lr=0.1, weight_decay=0.0)
    step1 = (x1 - x0).abs()
    assert step1.min() > 0.99 and step1.max() < 1.001
    # with a gradient of constant magnitude the second step is 0.1 / sqrt(0.01 * 0.99 + 0.01) = 0.7089
    g = lambda x: torch.ones_like(x)  # noqa: E731
    x2 = fresh_rmsprop_steps(x0.clone(), g, 2, lr=0.1, weight_decay=0.0)
    second = (x2 - x0).abs() - 1.0
    torch.testing.assert_close(second, torch.full_like(second, 0.1 / math.sqrt(0.0199)), rtol=1e-4, atol=1e-4)


def test_direct_batch_moves_about_1_7_from_its_start_and_raises_disagreement():
    method = bound(Direct())
    gens = rng.generators([1, 2], "noise")
    start = rng.randn(gens, (50, 7))
    x = method.sample(50)
    assert x.shape == (2, 50, 7)
    moved = (x - start).abs()
    assert 1.2 < moved.mean() < 1.8  # ~1.0 + ~0.7 unless the gradient changes sign
    t, s = method.teacher.predict, method.student.predict
    assert ((t(x) - s(x)) ** 2).mean() > ((t(start) - s(start)) ** 2).mean()


def test_random_batch_is_standard_normal():
    method = bound(Random(), d=7)
    x = method.sample(2000)
    assert x.shape == (2, 2000, 7)
    assert abs(x.mean().item()) < 0.03 and abs(x.std().item() - 1) < 0.03


def test_objective_gradients_match_autograd():
    obj = Disagreement(gamma=0.3)
    t = torch.randn(2, 9, requires_grad=True)
    s = torch.randn(2, 9, requires_grad=True)
    value, g_t, g_s = obj.grads(t.detach(), s.detach())
    ref = (-(t - s) ** 2 + 0.3 * s ** 2).mean(1)
    ref.sum().backward()
    torch.testing.assert_close(value, ref.detach())
    torch.testing.assert_close(g_t, t.grad)
    torch.testing.assert_close(g_s, s.grad)


def test_input_gradient_matches_autograd():
    teacher, student = stacks()
    x = torch.randn(2, 11, 7)
    got = Disagreement(gamma=1e-5).input_grad(teacher, student, x.clone())
    for r in range(2):
        tm, sm = mlp_module(teacher.replica_params(r)), mlp_module(student.replica_params(r))
        xr = x[r].clone().requires_grad_(True)
        (-(tm(xr) - sm(xr)) ** 2 + 1e-5 * sm(xr) ** 2).mean().backward()
        torch.testing.assert_close(got[r], xr.grad, rtol=1e-4, atol=1e-6)


def test_generator_loss_terms_and_step():
    """One generator round lowers its objective; the L2 term is summed over all m x d entries."""
    gen = bound(Generator(hidden=30, beta=0.5))
    z = torch.randn(2, 40, 50)
    x = gen.net.forward(z)
    l2 = 0.5 * (x ** 2).sum(dim=(1, 2))
    assert l2.shape == (2,) and torch.all(l2 > 0.5 * (x[:, :20] ** 2).sum(dim=(1, 2)))
    def objective():
        x = gen.net.forward(z)
        t, s = gen.teacher.predict(x), gen.student.predict(x)
        return (-(t - s) ** 2 + 1e-5 * s ** 2).mean(1) + 0.5 * (x ** 2).sum(dim=(1, 2))
    before = objective()
    gen.randn = lambda *shape: z  # the round uses our z
    for _ in range(5):
        gen.start_epoch(0, 40)
    assert torch.all(objective() < before)
    assert gen.sample(40).shape == (2, 40, 7)


def test_rmsprop_stack_matches_torch_and_respects_per_replica_lr():
    params = [init_mlp_params(4, 3, 1, torch.Generator().manual_seed(i)) for i in range(2)]
    stack = MLPStack.from_params(params)
    opt = RMSpropStack(stack.flat, lr=0.01, weight_decay=0.1)
    opt.lr[1] = 0.0
    nets = [mlp_module(p) for p in params]
    topt = torch.optim.RMSprop(nets[0].parameters(), lr=0.01, weight_decay=0.1)
    x = torch.randn(2, 8, 4)
    for _ in range(3):
        out, cache = stack.forward(x, keep=True)
        opt.step(stack.backward(cache, out.squeeze(-1))[0])  # loss = 0.5 * sum(out^2)
        topt.zero_grad()
        (0.5 * nets[0](x[0]).pow(2).sum()).backward()
        topt.step()
    for k, v in stack.replica_params(0).items():
        torch.testing.assert_close(v, dict(zip(["w1", "b1", "w2", "b2"], [p.detach() for p in nets[0].parameters()]))[k])
    for k, v in stack.replica_params(1).items():
        torch.testing.assert_close(v, params[1][k])  # lr 0: frozen


def test_plateau_stack_matches_reduce_lr_on_plateau():
    losses = [1.0, 0.9, 0.95, 0.95, 0.95, 0.89, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]
    lr = torch.full((1, 1), 1.0)
    ours = PlateauStack(lr, factor=0.5, patience=2)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2)
    for loss in losses:
        ours.step(0, loss)
        ref.step(loss)
        assert lr[0, 0].item() == pytest.approx(opt.param_groups[0]["lr"])
    assert lr[0, 0].item() < 1.0


def test_alpha_schedules():
    dec, inc = AlphaSchedule("decreasing"), AlphaSchedule("increasing")
    assert dec(0, 2000) == pytest.approx(1 - 1 / 2000) and dec(1999, 2000) == 0.0
    assert inc(0, 4) == 0.25 and inc(3, 4) == 1.0
    assert AlphaSchedule("constant", 0.3)(5, 10) == 0.3
    assert AlphaSchedule("constant", 0.0).default_batch_size() == 100
    assert AlphaSchedule("constant", 1.0).default_batch_size() == 100
    assert dec.default_batch_size() == 50 and AlphaSchedule("constant", 0.5).default_batch_size() == 50
    assert AlphaSchedule("constant", 1.0).label == "1" and dec.label == "decreasing"
    for bad in (1.5, -0.1, "abc"):
        with pytest.raises(ConfigError):
            AlphaSchedule("constant", bad)
    with pytest.raises(ConfigError):
        AlphaSchedule("sideways")
