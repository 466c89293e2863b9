"""Mistakes a new user makes (issue 13, point 7): each ends in one line naming the fix, exit status 2, no
traceback, and nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT


def distill(tmp: Path, *args: str, module: str = "dfkd.distill", mirror: str = "null"):
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    cmd = [sys.executable, "-m", module, *args, "progress=false", f"results_dir={tmp / 'results'}",
           f"teacher_dir={tmp / 'teachers'}", f"data_dir={tmp / 'data'}", f"data_mirror={mirror}"]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300)


def records_under(tmp: Path) -> list[Path]:
    return sorted((tmp / "results").rglob("*.json")) if (tmp / "results").exists() else []


def one_line_error(proc) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize("args,expect", [
    (["method=direct", "method.lr=abc"], "method 'direct' (dfkd.methods.direct.Direct) does not accept its parameters (ValueError: could not "
                                         "convert string to float: 'abc'): check conf/method/direct.yaml"),
    (["threads=-1"], "threads must be an integer >= 0, got -1"),
    (["dataset=mnist", "teacher=mlp500", "student=mlp50"],
     "dataset mnist holds images, which teacher=mlp500 and student=mlp50 do not take: use teacher=cnn10 student=cnn5"),
    (["teacher.hidden=0"], "teacher.hidden must be a positive integer, got 0"),
    (["student.lr=fast"], "student.lr must be a number, got 'fast'"),
    (["+teacher.depth=3"], "teacher.depth is not a setting of TeacherConfig"),
    (["datset=pole"], "unknown option 'datset' (no key 'datset' in conf/config.yaml): did you mean dataset? "
                      "to add a new key on purpose, write +datset=..."),
    (["dataset=pole", "teacher.max_epoch=3"], "unknown option 'teacher.max_epoch' (teacher has no key 'max_epoch'): "
                                              "did you mean teacher.max_epochs?"),
], ids=["text lr", "negative threads", "mnist with table networks", "zero teacher width", "text student lr",
        "unknown teacher key", "misspelt top-level key", "misspelt teacher key"])
def test_bad_value_is_one_line_and_writes_nothing(tmp_path, args, expect):
    line = one_line_error(distill(tmp_path, *args))
    assert expect in line
    assert records_under(tmp_path) == []


def test_missing_table_teacher_names_a_real_key(tmp_path, data_mirror):
    line = one_line_error(distill(tmp_path, "dataset=cpusmall", "train_teachers_if_missing=false", "seeds=1",
                                  mirror=str(data_mirror)))
    assert "run `make teachers` (or drop train_teachers_if_missing=false)" in line
    import yaml

    assert "train_teachers_if_missing" in yaml.safe_load((REPO_ROOT / "conf" / "config.yaml").read_text())


MNIST_TINY = ["dataset=mnist", "teacher=cnn10", "student=cnn5", "seeds=1", "subset.train=200", "subset.test=100",
              "dataset.split.n_val=100", "teacher.epochs=1"]


@pytest.mark.slow  # trains a tiny MNIST teacher in a subprocess: ~25-36 s
def test_missing_mnist_teacher_names_the_command_that_trains_it(tmp_path, data_mirror):
    line = one_line_error(distill(tmp_path, *MNIST_TINY, "train_teachers_if_missing=false", mirror=str(data_mirror)))
    command = "python -m dfkd.teachers dataset=mnist teacher=cnn10 student=cnn5"
    assert command in line and "make teachers" not in line
    # the named command does train it: afterwards the same run finds its teacher
    proc = distill(tmp_path, *MNIST_TINY, module="dfkd.teachers", mirror=str(data_mirror))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list((tmp_path / "teachers" / "mnist").glob("seed00-*.pt"))) == 1
    proc = distill(tmp_path, *MNIST_TINY, "train_teachers_if_missing=false", "epochs=1", "steps_per_epoch=1",
                   "method=random", "alpha=zero", mirror=str(data_mirror))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(records_under(tmp_path)) == 1
