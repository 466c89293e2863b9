"""`python -m dfkd.status`: where a long run stands, read from its records and checkpoints."""

import json

from dfkd import status
from dfkd.records import SCHEMA
from dfkd.engine.checkpoint import Checkpoint


def _cell(root, name="mnist/cnn5/direct_mnist-decreasing"):
    cell = root / "records" / name
    cell.mkdir(parents=True)
    return cell


def test_status_shows_checkpointed_stacks_with_progress_and_time_left(tmp_path, capsys):
    cell = _cell(tmp_path)
    (cell / "seed04.json").write_text(json.dumps({"schema": SCHEMA, "seed": 4, "status": "ok", "config_hash": "a"}))
    (cell / "seed05.json").write_text(json.dumps({"schema": SCHEMA, "seed": 5, "status": "failed", "config_hash": "b"}))
    Checkpoint(cell / ".ckpt-x.pt", key={"seeds": [1, 2, 3], "hashes": ["h1", "h2", "h3"]}).save(
        {"epoch": 250, "epochs": 1000, "elapsed_s": 5000.0})
    (cell / ".ckpt-y.pt").write_bytes(b"damaged")
    done = _cell(tmp_path, "pole/mlp50/random-0")
    (done / "seed01.json").write_text(json.dumps({"schema": SCHEMA, "seed": 1, "status": "ok", "config_hash": "c"}))

    assert status.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{cell}: 1 finished, 1 failed [5], 2 stack(s) in training" in out
    # 5000 s for 250 epochs: 20 s/epoch, 750 epochs left = 15000 s
    assert "seeds [1, 2, 3]: epoch 250/1000 (25 %), 1.4 h trained, about 4.2 h to go at 20.0 s/epoch" in out
    assert ".ckpt-y.pt: unreadable" in out
    assert str(done) not in out  # finished cells only with --all
    assert out.strip().endswith("2 cell(s), 3 finished run(s); 2 stack(s) with a checkpoint "
                                "(rerun their command to resume them)")
    assert status.main(["--all", str(tmp_path)]) == 0
    assert f"{done}: 1 finished" in capsys.readouterr().out


def test_status_of_a_missing_folder_is_one_line_and_nonzero(tmp_path, capsys):
    assert status.main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err


def test_status_with_nothing_run_says_how_to_start(tmp_path, capsys):
    assert status.main([str(tmp_path)]) == 0
    assert "start a run" in capsys.readouterr().out
