"""The batched engine equals the one-model reference loop, replica by replica.

R replicas trained together must give the same numbers as each trained alone
from the same random draws, to float tolerance: for the teacher and for every
method and alpha schedule of the paper's tables (and an increasing schedule).
"""

import pytest
import torch

from dfkd.engine.alpha import AlphaSchedule
from dfkd.engine.distill import StudentConfig, distill
from dfkd.engine.reference import distill_reference, train_teacher_reference
from dfkd.engine.teacher import TeacherConfig, train_teachers
from dfkd.methods.direct import Direct
from dfkd.methods.generator import Generator
from dfkd.methods.random import Random
from dfkd.models.cnn import CNNStack
from dfkd.models.mlp import MLPStack, mlp_module, module_params
from dfkd.models.rbf import RBFStack

TEACHER = TeacherConfig(hidden=30, max_epochs=40, stop_after=5, plateau_patience=2)
STUDENT = StudentConfig(hidden=5, epochs=15, steps_per_epoch=3)


@pytest.fixture(scope="module")
def teachers():
    from conftest import toy_split

    seeds = [1, 2, 3]
    splits = [toy_split(s) for s in seeds]
    stack, infos = train_teachers(splits, seeds, TEACHER)
    return seeds, splits, stack, infos


def test_teacher_stack_matches_reference(teachers):
    seeds, splits, stack, infos = teachers
    stopped_early = 0
    for r, seed in enumerate(seeds):
        net, info = train_teacher_reference(splits[r], seed, TEACHER)
        assert infos[r]["epochs"] == info["epochs"]
        stopped_early += info["epochs"] < TEACHER.max_epochs
        assert infos[r]["test_rmse"] == pytest.approx(info["test_rmse"], rel=1e-5)
        ref, got = module_params(net), stack.replica_params(r)
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], rtol=1e-4, atol=1e-5)
    assert stopped_early >= 1, "toy problem should exercise the early-stopping rule"


CASES = [
    ("random", Random, {}, AlphaSchedule("constant", 0.0)),
    ("generator", Generator, {"hidden": 40}, AlphaSchedule("decreasing")),
    ("generator", Generator, {"hidden": 40}, AlphaSchedule("constant", 1.0)),
    ("direct", Direct, {}, AlphaSchedule("decreasing")),
    ("direct", Direct, {}, AlphaSchedule("constant", 1.0)),
    ("direct", Direct, {}, AlphaSchedule("increasing")),
]


@pytest.mark.parametrize("name,cls,params,alpha", CASES, ids=[f"{c[0]}-{c[3].label}" for c in CASES])
def test_student_stack_matches_reference(teachers, name, cls, params, alpha):
    seeds, splits, stack, _ = teachers
    results, traces, _, _ = distill(stack, splits, seeds, cls(**params), alpha, STUDENT)
    assert traces["val_rmse"].shape == (STUDENT.epochs, len(seeds))
    for r, seed in enumerate(seeds):
        ref = distill_reference(mlp_module(stack.replica_params(r)), splits[r], seed, name, params, alpha, STUDENT)
        assert results[r]["best_epoch"] == ref["best_epoch"]
        for key in ("test_rmse", "test_mae", "test_rmse_last", "val_rmse_best"):
            assert results[r][key] == pytest.approx(ref[key], rel=1e-4), key


def test_replica_result_does_not_depend_on_stack_company(teachers):
    """Seed 2 alone gives the numbers it gives inside a stack of three (per-replica random streams)."""
    seeds, splits, stack, _ = teachers
    both, _, _, _ = distill(stack, splits, seeds, Direct(), AlphaSchedule("decreasing"), STUDENT)
    from dfkd.models.mlp import MLPStack

    alone_teacher = MLPStack.from_params([stack.replica_params(1)])
    alone, _, _, _ = distill(alone_teacher, splits[1:2], seeds[1:2], Direct(), AlphaSchedule("decreasing"), STUDENT)
    assert alone[0]["test_rmse"] == pytest.approx(both[1]["test_rmse"], rel=1e-5)


def test_matvec_matches_bmm_with_and_without_gradients():
    from dfkd.models.mlp import _matvec

    gen = torch.Generator().manual_seed(3)
    a, v = torch.randn(4, 37, 500, generator=gen), torch.randn(4, 500, 1, generator=gen)
    want = torch.bmm(a.double(), v.double()).float()
    out = _matvec(a, v)  # numpy path
    assert out.shape == (4, 37, 1)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-4)
    a_grad = a.clone().requires_grad_(True)
    out = _matvec(a_grad, v)  # autograd path
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-4)
    out.sum().backward()
    torch.testing.assert_close(a_grad.grad, v.transpose(1, 2).expand(4, 37, 500))


def test_reference_loop_covers_the_paper_methods_and_refuses_others():
    from dfkd.engine.reference import has_reference

    assert [has_reference(m) for m in ("random", "generator", "direct", "de", "scaled")] == [True] * 3 + [False] * 2
    with pytest.raises(ValueError, match="no form of method 'de'"):
        distill_reference(None, None, 1, "de", {}, AlphaSchedule("decreasing"))


@pytest.mark.parametrize("stack, args", [(MLPStack, (6, 4, 1)), (RBFStack, (6, 3)), (CNNStack, (2,))],
                         ids=["mlp", "rbf", "cnn"])
def test_every_stack_takes_flat_parameters_of_its_own_shape_only(stack, args):
    zeros = stack(*args, 2)
    assert zeros.flat.shape == (2, zeros.n_params) and zeros.flat.abs().sum() == 0
    given = torch.ones(2, zeros.n_params)
    assert stack(*args, 2, flat=given).flat is given
    with pytest.raises(ValueError, match=rf"shape \(2, {zeros.n_params + 1}\), expected \(2, {zeros.n_params}\)"):
        stack(*args, 2, flat=torch.zeros(2, zeros.n_params + 1))
