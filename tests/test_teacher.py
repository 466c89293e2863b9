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
