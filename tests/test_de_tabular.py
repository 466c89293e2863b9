"""Differential evolution on the tabular datasets with the MLP teacher used only through predict:
the predict-only teacher (conf/teacher/mlp500_box.yaml), DE's box on N(0, I) (method.box), the batched
engine against scipy's, and a tiny run of variant=de_tabular-decreasing."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dfkd.core import rng
from dfkd.data.context import Context
from dfkd.engine.alpha import AlphaSchedule
from dfkd.engine.distill import StudentConfig, distill
from dfkd.errors import ConfigError
from dfkd.methods.de import (DifferentialEvolution, best2bin_trials, crossover_mask, partners_from_uniforms,
                             row_energies)
from dfkd.methods.direct import Direct
from dfkd.models.blackbox import PredictOnlyTeacher
from dfkd.models.mlp import MLPStack

REPO = Path(__file__).resolve().parents[1]
#: conf/method/de_tabular.yaml's objective (eq. 5's terms)
EQ5 = {"disagreement": 1.0, "gamma": 1e-5}
TINY = ["dataset=cpusmall", "seeds=2", "epochs=3", "steps_per_epoch=2", "teacher.max_epochs=3", "progress=false",
        "threads=1", "checkpoint_every_s=0"]


def compose(tmp: Path, mirror, overrides) -> dict:
    from hydra import compose as hydra_compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = hydra_compose("config", overrides=list(overrides) + [
            f"results_dir={tmp / 'results'}", f"teacher_dir={tmp / 'teachers'}", f"data_dir={tmp / 'data'}",
            f"data_mirror={mirror}"])
    return OmegaConf.to_container(cfg, resolve=True)


def settings(tmp: Path, overrides, mirror=""):
    from dfkd.settings import settings_from_dict

    return settings_from_dict(compose(tmp, mirror, overrides))


def box_teacher(d: int, seeds, hidden: int = 16) -> PredictOnlyTeacher:
    return PredictOnlyTeacher(MLPStack.init(d, hidden, 1, rng.generators(seeds, "teacher_init")))


def bound(teacher, d: int, seeds, **kw) -> DifferentialEvolution:
    method = DifferentialEvolution(**{"objective": EQ5, "box": 3.0, "engine": "batched", **kw})
    method.bind(teacher, MLPStack.init(d, 5, 1, rng.generators(seeds, "student_init")), list(seeds),
                context=Context((d,)))
    method.set_noise(rng.generators(seeds, "noise"))
    return method


# -- the predict-only teacher ------------------------------------------------------------------------
def test_box_teacher_has_mlp500s_key_and_its_own_cell_hash(tmp_path):
    from dfkd.cell import cell_hash

    plain, box = settings(tmp_path, ["dataset=pole"]), settings(tmp_path, ["dataset=pole", "teacher=mlp500_box"])
    assert (box.teacher.name, box.teacher.differentiable, plain.teacher.differentiable) == ("mlp500_box", False, True)
    assert box.teacher_key() == plain.teacher_key()  # the same cached teachers: nothing is retrained
    assert box.teacher.config == plain.teacher.config
    # the predict-only route enters the cell hash (so its records never pass for the plain teacher's)...
    assert cell_hash(box, 1, 50) != cell_hash(plain, 1, 50)
    with pytest.raises(ConfigError, match="black_box"):
        settings(tmp_path, ["teacher=mlp500_box", "teacher.black_box=maybe"])


def test_other_cells_keep_their_config_hashes(tmp_path):
    """...and nowhere else: every other teacher adds nothing to the hash, and a committed reference record's
    hash is what its own config gives now."""
    from dfkd.cell import cell_hash
    from dfkd.settings import settings_from_dict

    for yaml in sorted((REPO / "conf" / "teacher").glob("*.yaml")):
        teacher = settings(tmp_path, [f"teacher={yaml.stem}"]).teacher
        assert getattr(teacher, "cell_extra", dict)() == ({"teacher_access": "predict"} if yaml.stem == "mlp500_box"
                                                          else {}), yaml.stem
    path = REPO / "results" / "reference" / "records" / "pole" / "mlp50" / "direct-decreasing" / "seed01.json"
    if path.is_file():
        rec = json.loads(path.read_text())
        assert cell_hash(settings_from_dict(rec["config"]), rec["seed"], rec["batch_size"]) == rec["config_hash"]


def test_predict_only_teacher_counts_queries_and_matches_the_stack():
    stack = MLPStack.init(4, 8, 1, rng.generators([1, 2], "teacher_init"))
    teacher = PredictOnlyTeacher(stack)
    x = torch.randn(2, 7, 4)
    torch.testing.assert_close(teacher.predict(x), stack.predict(x))
    assert teacher.queries == [7, 7] and not hasattr(teacher, "forward") and not hasattr(teacher, "backward")
    one = teacher.predict_replica(1, x[1, :3].double().numpy())
    assert one.dtype == np.float64 and teacher.queries == [7, 10] and teacher.total_queries == 17
    torch.testing.assert_close(torch.from_numpy(one).float(), stack.predict(x)[1, :3])
    teacher.load_state_dict(teacher.state_dict() | {"queries": [1, 2]})
    assert teacher.queries == [1, 2]
    with pytest.raises(ConfigError, match="no parameters"):
        teacher.predict(x, stack.flat)


def test_gradient_methods_refuse_the_predict_only_teacher():
    teacher = box_teacher(3, [1])
    with pytest.raises(ConfigError, match="black box.*method=de") as err:
        Direct().bind(teacher, MLPStack.init(3, 4, 1, rng.generators([1], "s")), [1])
    assert "\n" not in str(err.value)


# -- the box ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["batched", "scipy"])
def test_de_rows_stay_inside_the_box(engine):
    teacher = box_teacher(6, [1, 2])
    method = bound(teacher, 6, [1, 2], box=0.5, engine=engine, generations=4)
    x = method.sample(8)
    assert x.shape == (2, 8, 6) and torch.all(x.abs() <= 0.5) and torch.all(x.abs().amax((1, 2)) > 0.3)
    # the start rows (N(0, I)) are clipped into the box; m rows per generation and the start, per replica
    assert teacher.queries == [8 * (1 + n) for n in method.generations_run]


def test_bad_box_is_one_line():
    for bad in (0, -1.0, float("inf"), "3", True):
        with pytest.raises(ConfigError, match="method.box must be a number > 0") as err:
            DifferentialEvolution(box=bad)
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="method.engine"):
        DifferentialEvolution(engine="fast")
    with pytest.raises(ConfigError, match="best2bin only"):
        DifferentialEvolution(engine="batched", strategy="rand1bin")
    with pytest.raises(ConfigError, match="search box.*method.box"):  # N(0, I) and no box
        DifferentialEvolution().bind(box_teacher(2, [1]), MLPStack.init(2, 3, 1, rng.generators([1], "s")), [1])


def test_bad_box_from_the_config_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="method.box must be a number > 0"):
        settings(tmp_path, ["variant=de_tabular-decreasing", "method.box=0"])


def test_a_dataset_box_takes_precedence():
    method = DifferentialEvolution(objective=EQ5, box=3.0, engine="batched")
    ctx = Context((2,), bounds=(torch.tensor([0.0, -1.0]), torch.tensor([1.0, 2.0])))
    method.bind(box_teacher(2, [1]), MLPStack.init(2, 3, 1, rng.generators([1], "s")), [1], context=ctx)
    assert method.bounds == [(0.0, 1.0), (-1.0, 2.0)]


# -- the batched engine against scipy ------------------------------------------------------------------
def scipy_solver(pop: np.ndarray, seed: int, mutation=0.8):
    from scipy.optimize._differentialevolution import DifferentialEvolutionSolver

    m, d = pop.shape
    solver = DifferentialEvolutionSolver(lambda x: 0.0, [(0.0, 1.0)] * d, init=pop, strategy="best2bin",
                                         mutation=mutation, recombination=0.7, polish=False, updating="deferred",
                                         rng=np.random.default_rng(seed))
    solver.population = pop.copy()  # exactly these unit-scaled rows (init's rescaling may round)
    return solver


def test_best2bin_and_redraws_equal_scipys_on_fixed_partners():
    """Given the same partners, the trial populations (mutation, crossover, out-of-box redraws) are scipy's,
    bit for bit, with the remaining draws from equal streams in scipy's order."""
    m, d, F = 9, 7, 0.8
    g = np.random.default_rng(0)
    pop = g.random((m, d))
    partners = partners_from_uniforms(g.random((m, 4)))
    solver = scipy_solver(pop, seed=5, mutation=F)
    solver._select_samples = lambda c, n: np.r_[partners[c], -1]  # scipy uses the first 4
    want = solver._mutate_many(np.arange(m))
    solver._ensure_constraint(want)

    ours = np.random.default_rng(5)
    fill = ours.integers(d, size=m)
    cross = ours.uniform(size=(m, d)) < 0.7
    take = crossover_mask(cross[None], fill[None])
    got = best2bin_trials(pop[None], np.array([F]), partners[None], take)
    assert ((got < 0) | (got > 1)).any()  # the redraws are exercised
    method = bound(box_teacher(d, [1]), d, [1], mutation=F)
    method.rngs = [ours]
    got = method._trials(pop[None].copy(), np.array([0]), np.array([F]), partners[None], take)
    np.testing.assert_array_equal(got[0], want)


def test_partners_are_distinct_others_uniformly_ordered():
    m = 6
    picks = partners_from_uniforms(np.random.default_rng(1).random((20000, m, 4))).reshape(-1, 4)
    rows = np.tile(np.arange(m), 20000)
    assert np.all(picks != rows[:, None]) and np.all((picks >= 0) & (picks < m))
    assert all(len(set(p)) == 4 for p in picks[:2000].tolist())
    # each row's 5 * 4 * 3 * 2 = 120 ordered tuples equally likely (1000 each for row 0; 5 sigma)
    codes = picks[rows == 0] @ np.array([216, 36, 6, 1])
    counts = np.unique(codes, return_counts=True)[1]
    assert len(counts) == 120 and np.abs(counts - 20000 / 120).max() < 5 * np.sqrt(20000 / 120)


def test_batched_engine_reaches_scipys_energies():
    """Both engines on the same starts and objective: the final populations' energies agree in distribution
    (means over 6 replicas x 4 steps within a few standard errors), and improve on the start alike."""
    d, seeds, m = 5, [1, 2, 3, 4, 5, 6], 12
    w = torch.tensor([1.0, -0.5, 0.3, 0.0, 0.8])
    stack = MLPStack.from_params([{"w1": w[None], "b1": torch.zeros(1), "w2": torch.ones(1, 1),
                                   "b2": torch.zeros(1)}] * len(seeds))  # T(x) = tanh(w . x)
    energies = {}
    for engine in ("scipy", "batched"):
        method = bound(PredictOnlyTeacher(stack), d, seeds, engine=engine, generations=6, box=1.5)
        gens = rng.generators(seeds, "noise")  # the engine's start rows, step by step, clipped into the box
        finals, starts = [], []
        for _ in range(4):
            x, start = method.sample(m), rng.randn(gens, (m, d)).clamp(-1.5, 1.5)
            for rows, out in ((x, finals), (start, starts)):
                t, s = stack.predict(rows).double().numpy(), method.student.predict(rows).double().numpy()
                out.append(row_energies(method.objective, t, s, 0.0))
        energies[engine] = (np.stack(finals), np.stack(starts))
    (fs, ss), (fb, sb) = energies["scipy"], energies["batched"]
    np.testing.assert_allclose(ss, sb)  # same starting rows
    per_s, per_b = fs.mean(-1).ravel(), fb.mean(-1).ravel()  # mean energy of each final population
    se = np.sqrt((per_s.var(ddof=1) + per_b.var(ddof=1)) / len(per_s))
    assert abs(per_s.mean() - per_b.mean()) < 4 * se
    assert per_s.mean() < ss.mean() and per_b.mean() < sb.mean()
    assert abs(fs.min(-1).mean() - fb.min(-1).mean()) < 0.1  # the best rows' energies too


def test_batched_engine_stops_a_converged_replica_alone():
    seeds = [1, 2]
    method = bound(box_teacher(3, seeds), 3, seeds, generations=30, tol=0.5)
    method.sample(10)
    assert len(method.generations_run) == 2 and min(method.generations_run) < 30
    assert method.teacher.queries == [10 * (1 + n) for n in method.generations_run]


# -- stacks: together equal alone ----------------------------------------------------------------------
def test_three_replicas_together_equal_each_alone(toy_splits):
    seeds, splits = toy_splits
    stack = MLPStack.init(6, 16, 1, rng.generators(seeds, "teacher_init"))
    cfg = StudentConfig(hidden=5, epochs=4, steps_per_epoch=3)
    make = lambda: DifferentialEvolution(objective=EQ5, box=3.0, engine="batched", generations=4)  # noqa: E731
    together = PredictOnlyTeacher(stack)
    both, traces, _, _ = distill(together, splits, seeds, make(), AlphaSchedule("decreasing"), cfg)
    for r, seed in enumerate(seeds):
        alone = PredictOnlyTeacher(MLPStack.from_params([stack.replica_params(r)]))
        one, one_traces, _, _ = distill(alone, splits[r:r + 1], [seed], make(), AlphaSchedule("decreasing"), cfg)
        assert one[0]["test_rmse"] == pytest.approx(both[r]["test_rmse"], rel=1e-5)
        torch.testing.assert_close(one_traces["val_rmse"][:, 0], traces["val_rmse"][:, r], rtol=1e-5, atol=1e-7)
        assert alone.queries[0] == together.queries[r]


def test_batched_de_on_the_predict_only_teacher_resumes_exactly(tmp_path):
    """A checkpointed stack continues the DE streams and the teacher's query counts exactly."""
    from dfkd.engine.checkpoint import Checkpoint
    from conftest import toy_split

    seeds = [1, 2]
    splits = [toy_split(s, d=4, n_val=20, n_test=20) for s in seeds]
    cfg = StudentConfig(hidden=4, epochs=4, steps_per_epoch=2)
    stack = MLPStack.init(4, 8, 1, rng.generators(seeds, "teacher_init"))
    runs = []

    def run(checkpoint=None, stop=None):
        teacher, method = PredictOnlyTeacher(stack), DifferentialEvolution(objective=EQ5, box=3.0, engine="batched",
                                                                           generations=3)
        runs.append((teacher, method))

        def progress(epoch, best):
            if epoch == stop:
                raise InterruptedError
        return distill(teacher, splits, seeds, method, AlphaSchedule("decreasing"), cfg, progress=progress,
                       checkpoint=checkpoint)

    clean = run()
    path = tmp_path / "ck.pt"
    with pytest.raises(InterruptedError):
        run(Checkpoint(path, 1e-9, key="k", log=lambda *_: None), stop=1)
    ckpt = Checkpoint(path, 1e-9, key="k", log=lambda *_: None)
    resumed = run(ckpt)
    assert ckpt.resumed_epoch == 2
    assert [r["test_rmse"] for r in resumed[0]] == [r["test_rmse"] for r in clean[0]]
    assert torch.equal(resumed[2].flat, clean[2].flat)
    (t_clean, m_clean), (t_resumed, m_resumed) = runs[0], runs[-1]
    assert t_resumed.queries == t_clean.queries and m_resumed.generations_run == m_clean.generations_run


# -- end to end ----------------------------------------------------------------------------------------
def test_tiny_de_tabular_run_reuses_mlp500s_teachers_and_counts_queries(tmp_path, data_mirror):
    from dfkd.distill import run_config

    direct = run_config(compose(tmp_path, data_mirror, TINY), log=lambda *_: None)  # trains the 2 teachers
    assert direct["status"] == "done"
    cached = sorted(p.name for p in (tmp_path / "teachers" / "cpusmall").glob("seed*.pt"))
    lines = []
    out = run_config(compose(tmp_path, data_mirror, TINY + ["variant=de_tabular-decreasing"]), log=lines.append)
    assert out["status"] == "done" and out["ran"] == [1, 2]
    assert not any("training" in line for line in lines)  # mlp500's cached teachers, not new ones
    assert sorted(p.name for p in (tmp_path / "teachers" / "cpusmall").glob("seed*.pt")) == cached
    rec = json.loads(Path(out["records"][0]).read_text())
    first = json.loads(Path(direct["records"][0]).read_text())
    assert (rec["method"], rec["alpha"], rec["teacher"], rec["batch_size"]) == \
        ("de_tabular", "decreasing", "mlp500_box", 50)
    assert rec["teacher_key"] == first["teacher_key"] and rec["teacher_test_rmse"] == first["teacher_test_rmse"]
    assert rec["status"] == "ok" and np.isfinite(rec["test_rmse"])
    # per step while alpha > 0 (2 epochs x 2 steps): the DE start and 1..6 generations of 50 rows, then the
    # 50 + 50 labelled rows; alpha decreasing over 3 epochs is 0 in the last (50 random rows per step)
    assert 4 * (2 * 50 + 100) + 2 * 50 <= rec["teacher_queries"] <= 4 * (7 * 50 + 100) + 2 * 50
    assert Path(out["records"][0]).parent == tmp_path / "results/records/cpusmall/mlp50/de_tabular-decreasing"
    # a gradient method on the predict-only teacher: the one-line refusal (after loading the cached teachers)
    with pytest.raises(ConfigError, match="black box") as err:
        run_config(compose(tmp_path, data_mirror, TINY + ["teacher=mlp500_box"]), log=lambda *_: None)
    assert "\n" not in str(err.value)
