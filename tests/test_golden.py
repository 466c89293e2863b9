"""Golden numbers: small fixed cells of every method reproduce their pinned per-epoch validation RMSE.

tests/golden/golden.json holds, for each case, its Hydra overrides and the numbers the code gave at the
commit named in the file (val_rmse per epoch, test RMSE and the teacher's test RMSE, per seed), written
by tests/golden/make_golden.py from a clean checkout of that commit, with the processor it ran on (``cpu``).
On that processor a change that moves any of them by more than 1e-6 relative is a change of the numbers, not
a refactor: find out why, and if it is meant, regenerate the fixture (see make_golden.py) and say so in the
commit. On another processor other kernels round differently, so the check is 1e-3 (conftest.pinned_rtol).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import pinned_rtol

HERE = Path(__file__).resolve().parent
GOLDEN = json.loads((HERE / "golden" / "golden.json").read_text())
CASES = GOLDEN["cases"]
RTOL, TOLERANCE = pinned_rtol(GOLDEN.get("cpu"))


def _helpers():
    spec = importlib.util.spec_from_file_location("make_golden", HERE / "golden" / "make_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_golden = _helpers()


@pytest.fixture(scope="module")
def mirror() -> Path:
    return Path(os.environ.get("DFKD_DATA_MIRROR") or HERE.parents[1] / "shared" / "data").resolve()


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    """One teacher cache for all cases (teachers are deterministic; the fixture was made the same way)."""
    return tmp_path_factory.mktemp("golden-teachers")


def test_fixture_names_its_commit_and_covers_every_method():
    assert len(GOLDEN["commit"]) == 40
    ids = [c["id"] for c in CASES]
    assert len(set(ids)) == len(ids)
    assert {c["id"] for c in CASES} >= {
        "cpusmall-random", "cpusmall-generator-decreasing", "cpusmall-direct-decreasing", "protein-de-half",
        "mnist-random", "mnist-generator", "mnist-direct"}
    assert [c["overrides"] for c in CASES] == [c["overrides"] for c in make_golden.CASES], \
        "make_golden.CASES changed: regenerate golden.json"


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_golden_trace(case, mirror, teacher_dir, tmp_path):
    cfg = make_golden.compose_case(case["overrides"], tmp_path, mirror, teacher_dir)
    missing = [f["path"] for f in cfg["dataset"].get("files", []) if not (mirror / f["path"]).is_file()]
    if missing:
        pytest.skip(f"data files {missing} not in the data mirror {mirror}: set DFKD_DATA_MIRROR to the shared data folder")
    got = make_golden.run_case(case["overrides"], tmp_path, mirror, teacher_dir)
    want = case["seeds"]
    assert sorted(got) == sorted(want), "different seeds ran"
    for seed, exp in want.items():
        where = f"{case['id']} seed {seed} (golden from {GOLDEN['commit'][:7]}; {TOLERANCE})"
        assert len(got[seed]["val_rmse"]) == len(exp["val_rmse"]), where
        np.testing.assert_allclose(got[seed]["val_rmse"], exp["val_rmse"], rtol=RTOL, atol=0,
                                   err_msg=f"{where}: per-epoch val_rmse drifted")
        np.testing.assert_allclose(got[seed]["teacher_test_rmse"], exp["teacher_test_rmse"], rtol=RTOL, atol=0,
                                   err_msg=f"{where}: teacher test RMSE drifted")
        np.testing.assert_allclose(got[seed]["test_rmse"], exp["test_rmse"], rtol=RTOL, atol=0,
                                   err_msg=f"{where}: test RMSE drifted")
