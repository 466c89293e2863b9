"""The teacher's stopping rule and best-copy selection on toy problems."""

import pytest

from conftest import toy_split
from dfkd.engine.teacher import TeacherConfig, train_teachers


def test_never_improving_teacher_stops_after_stop_after_plus_two_epochs():
    # lr 0: epoch 1 sets the best, every later epoch is non-improving; the never-reset
    # counter exceeds stop_after at epoch stop_after + 2.
    cfg = TeacherConfig(hidden=8, lr=0.0, max_epochs=100, stop_after=5)
    _, infos = train_teachers([toy_split(1), toy_split(2)], [1, 2], cfg)
    assert [i["epochs"] for i in infos] == [7, 7]


def test_max_epochs_caps_training_and_best_copy_is_kept():
    cfg = TeacherConfig(hidden=16, max_epochs=4, stop_after=50)
    stack, infos = train_teachers([toy_split(3)], [3], cfg)
    assert infos[0]["epochs"] == 4
    # the stack holds the best-validation weights: re-evaluating them gives the recorded validation RMSE
    import torch

    split = toy_split(3)
    pred = stack.predict(torch.as_tensor(split.X_val)[None])
    rmse = ((pred[0] - torch.as_tensor(split.y_val)) ** 2).mean().sqrt().item()
    assert rmse == pytest.approx(infos[0]["val_rmse"], rel=1e-5)
    assert infos[0]["test_rmse"] < 1.0


def test_diverged_teacher_replica_is_failed_and_the_others_match_training_alone():
    import math

    import numpy as np

    bad = toy_split(2)
    y = bad.y_train.copy()
    y[0] = np.nan  # one bad label: its gradient turns the replica's weights NaN in the first epoch
    bad = bad.__class__(**{**bad.__dict__, "y_train": y})
    cfg = TeacherConfig(hidden=8, max_epochs=3, stop_after=50)
    stack, infos = train_teachers([toy_split(1), bad, toy_split(3)], [1, 2, 3], cfg)
    assert infos[1]["diverged_epoch"] == 0 and infos[1]["epochs"] == 1
    assert infos[1]["failure_reason"].startswith("teacher diverged: non-finite validation loss at epoch 0")
    assert [infos[r]["failure_reason"] for r in (0, 2)] == [None, None]
    assert [infos[r]["epochs"] for r in (0, 2)] == [3, 3]
    # the healthy replicas are exactly what training them without the diverged one gives
    _, alone = train_teachers([toy_split(1), toy_split(3)], [1, 3], cfg)
    for r, a in zip((0, 2), alone):
        assert math.isfinite(infos[r]["val_rmse"])
        assert infos[r]["val_rmse"] == pytest.approx(a["val_rmse"], rel=1e-5)


def test_a_failed_teacher_fails_its_students_record():
    from dfkd.cell import record_status

    assert record_status({"failure_reason": None}, {"failure_reason": "teacher diverged: x"}) == \
        ("failed", "teacher diverged: x")
    assert record_status({"failure_reason": None}, {"failure_reason": None}) == ("ok", None)
    assert record_status({"failure_reason": "non-finite loss at epoch 3: diverged"}, {}) == \
        ("failed", "non-finite loss at epoch 3: diverged")
