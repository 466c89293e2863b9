"""The runner: records, traces, resume by config hash, the teacher cache, and bad input."""

import json
import os
import signal
import subprocess
import time
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dfkd.cli import CONF_DIR
from dfkd.errors import DataMissingError, TeacherError
from dfkd.cell import run_cell
from dfkd.settings import settings_from_dict

pytestmark = pytest.mark.usefixtures("one_thread")  # the cached-teacher test asks for the 1-thread stamp

TINY = ["dataset=cpusmall", "seeds=2", "epochs=4", "steps_per_epoch=2", "teacher.max_epochs=3", "progress=false"]
REPO = Path(__file__).resolve().parents[1]


def settings_for(tmp: Path, mirror: Path, extra=()):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=TINY + [
            f"results_dir={tmp / 'results'}", f"teacher_dir={tmp / 'teachers'}", f"data_dir={tmp / 'data'}",
            f"data_mirror={mirror}", *extra])
    return settings_from_dict(OmegaConf.to_container(cfg, resolve=True))


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_mirror):
    """A results folder holding one finished cell (direct/decreasing, 2 seeds)."""
    tmp = tmp_path_factory.mktemp("run")
    summary = run_cell(settings_for(tmp, data_mirror), log=lambda *_: None)
    return tmp, summary


def test_records_are_complete_and_self_describing(finished):
    tmp, summary = finished
    assert summary["status"] == "done" and summary["ran"] == [1, 2]
    rec = json.loads(Path(summary["records"][0]).read_text())
    for key in ("dataset", "method", "alpha", "student", "seed", "test_rmse", "teacher_test_rmse", "epochs_run",
                "wall_time_s", "config_hash", "git_commit", "data_sha256", "torch_version"):
        assert key in rec, key
    assert (rec["dataset"], rec["method"], rec["alpha"], rec["student"], rec["seed"]) == \
        ("cpusmall", "direct", "decreasing", "mlp50", 1)
    assert rec["status"] == "ok" and 0 < rec["test_rmse"] < 2 and rec["epochs_run"] == 4 and rec["batch_size"] == 50
    trace = np.load(Path(summary["records"][0]).with_suffix(".trace.npz"))
    assert trace["val_rmse"].shape == (4,) and np.all(np.isfinite(trace["val_rmse"]))
    assert Path(summary["records"][0]).parent == tmp / "results/records/cpusmall/mlp50/direct-decreasing"
    # the processor, so that pinned-number tests know whether bit-level agreement can be asked of a rerun
    from dfkd.records import cpu_fingerprint

    assert rec["cpu"] == cpu_fingerprint() and rec["cpu"].endswith(f"torch {torch.backends.cpu.get_cpu_capability()}")


def test_finished_runs_are_skipped_and_changed_config_reruns(finished, data_mirror):
    tmp, summary = finished
    mtimes = [os.stat(p).st_mtime_ns for p in summary["records"]]
    again = run_cell(settings_for(tmp, data_mirror), log=lambda *_: None)
    assert again["status"] == "skipped" and again["ran"] == []
    assert mtimes == [os.stat(p).st_mtime_ns for p in summary["records"]]
    more = run_cell(settings_for(tmp, data_mirror, ["seeds=3"]), log=lambda *_: None)
    assert more["ran"] == [3]  # seeds 1 and 2 are reused


def test_damaged_record_is_redone(finished, data_mirror, tmp_path):
    tmp, summary = finished
    import shutil

    shutil.copytree(tmp, tmp_path / "copy")
    target = tmp_path / "copy" / Path(summary["records"][1]).relative_to(tmp)
    target.write_text('{"schema": 1, "test_rm')
    redo = run_cell(settings_for(tmp_path / "copy", data_mirror), log=lambda *_: None)
    assert redo["ran"] == [2]
    assert json.loads(target.read_text())["seed"] == 2


def test_teachers_are_cached_and_checked(finished, data_mirror, tmp_path):
    tmp, _ = finished
    teachers = sorted((tmp / "teachers" / "cpusmall").glob("seed*.pt"))
    assert len(teachers) >= 2
    blob = torch.load(teachers[0], weights_only=True)  # the thread count it was trained with (conftest: 1)
    assert blob["meta"]["threads"] == 1 and blob["meta"]["key"] in teachers[0].name
    # a run that must not train finds them
    s = settings_for(tmp, data_mirror, ["method=random", "alpha=zero", "train_teachers_if_missing=false"])
    assert run_cell(s, log=lambda *_: None)["status"] == "done"
    # none cached and training forbidden: one clear error
    s = settings_for(tmp_path, data_mirror, ["train_teachers_if_missing=false"])
    with pytest.raises(TeacherError, match="make teachers"):
        run_cell(s, log=lambda *_: None)


def test_missing_data_is_skipped_when_asked(tmp_path):
    s = settings_for(tmp_path, "", ["dataset=ctscan", "missing_data=skip"])
    assert run_cell(s, log=lambda *_: None)["status"] == "missing_data"
    s = settings_for(tmp_path, "", ["dataset=ctscan"])
    with pytest.raises(DataMissingError, match="archive.ics.uci.edu"):
        run_cell(s, log=lambda *_: None)


# -- bad input from the shell: one line, non-zero exit, no traceback, nothing lost ---------------
def run_cli(args, tmp: Path, mirror="", module="dfkd.distill"):
    env = dict(os.environ, DFKD_DATA_MIRROR=str(mirror), HYDRA_FULL_ERROR="0")
    cmd = [sys.executable, "-m", module, *TINY, f"results_dir={tmp / 'results'}", f"teacher_dir={tmp / 'teachers'}",
           f"data_dir={tmp / 'data'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp, timeout=120)


def snapshot(tmp: Path):
    return {p: p.read_bytes() for p in sorted((tmp / "results").rglob("*.json"))}


@pytest.fixture
def workspace(finished, tmp_path):
    import shutil

    tmp, _ = finished
    shutil.copytree(tmp, tmp_path / "ws")
    return tmp_path / "ws"


def corrupt_data(ws):
    target = ws / "data" / "cpusmall" / "X.npy"
    target.chmod(0o644)
    target.write_bytes(b"\x93NUMPY garbage")


def wrong_teacher(ws):
    for p in (ws / "teachers" / "cpusmall").glob("seed01-*.pt"):
        blob = __import__("torch").load(p, weights_only=True)
        blob["meta"]["dataset"] = "pole"
        __import__("torch").save(blob, p)


def data_with(ws, values):
    """Replace cpusmall's X.npy with ``values`` and return the override pinning its new checksum."""
    import hashlib

    target = ws / "data" / "cpusmall" / "X.npy"
    target.chmod(0o644)
    np.save(target, values)
    return [f"dataset.files.0.sha256={hashlib.sha256(target.read_bytes()).hexdigest()}"]


def nan_data(ws):
    x = np.load(ws / "data" / "cpusmall" / "X.npy")
    x[5, 3] = np.nan
    x[7, 1] = np.inf
    return data_with(ws, x)


def short_data(ws):
    return data_with(ws, np.load(ws / "data" / "cpusmall" / "X.npy")[:100])


def blocked_results(ws):
    (ws / "blocker").write_text("a file, not a folder")
    return [f"results_dir={ws / 'blocker' / 'results'}"]


BAD = [
    ("zero seeds", ["seeds=0"], None, "seeds must be a positive integer"),
    ("negative seeds", ["seeds=-3"], None, "seeds must be a positive integer"),
    ("NaN or inf in data", ["method=generator", "alpha=one"], nan_data, "non-finite values"),
    ("data of the wrong shape", ["method=generator", "alpha=one"], short_data, "has shape (100, 12)"),
    ("unwritable results folder", [], blocked_results, "cannot write results to"),

    ("unknown dataset", ["dataset=nope"], None, "unknown dataset 'nope'"),
    ("unknown method", ["method=gan"], None, "unknown method 'gan'"),
    ("unknown alpha", ["alpha=sideways"], None, "unknown alpha 'sideways'"),
    ("alpha above 1", ["alpha=constant", "alpha.value=2"], None, "alpha.value must be in [0, 1]"),
    ("zero epochs", ["epochs=0"], None, "epochs must be a positive integer"),
    ("negative batch", ["batch_size=-4"], None, "batch_size must be a positive integer"),
    ("text epochs", ["epochs=abc"], None, "epochs must be a positive integer"),
    ("checksum mismatch", ["method=generator", "alpha=one"], corrupt_data, "checksum"),
    ("missing data", ["dataset=pole"], None, "make data"),
    ("mismatched teacher", ["method=generator", "alpha=one"], wrong_teacher, "teacher checkpoint"),
]


def run_in_process(args, tmp: Path, monkeypatch, capfd):
    """What ``run_cli`` does, without a new interpreter (about 0.3 s instead of 3-5 s): ``dfkd-distill``'s entry
    function (:func:`dfkd.distill.cli`, the command-line check, then Hydra) with ``sys.argv`` set; returns
    ``(exit status, stdout, stderr)``. The shell itself is exercised by ``test_bad_input_from_the_shell``."""
    import dfkd.distill

    monkeypatch.setenv("DFKD_DATA_MIRROR", "")
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    monkeypatch.chdir(tmp)
    monkeypatch.setattr(sys, "argv", ["dfkd-distill", *TINY, f"results_dir={tmp / 'results'}",
                                      f"teacher_dir={tmp / 'teachers'}", f"data_dir={tmp / 'data'}", *args])
    capfd.readouterr()
    sigterm = signal.getsignal(signal.SIGTERM)  # the entry installs its own handler: keep pytest's
    try:
        dfkd.distill.cli()
        code = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    out, err = capfd.readouterr()
    return code, out, err


def assert_one_line(code, out, err, message):
    assert code not in (0, None), err
    assert "Traceback" not in err + out
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, err


@pytest.mark.parametrize("name,args,prepare,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_clear_line(workspace, name, args, prepare, message, monkeypatch, capfd):
    if prepare:
        args = [*args, *(prepare(workspace) or [])]
    before = snapshot(workspace)
    assert_one_line(*run_in_process(args, workspace, monkeypatch, capfd), message)
    assert snapshot(workspace) == before  # nothing finished was lost or overwritten


# One case of each path from a real shell: the command-line check before Hydra, a config error inside the job, a
# data error while loading.
SHELL = [b for b in BAD if b[0] in ("unknown dataset", "zero epochs", "checksum mismatch")]


@pytest.mark.parametrize("name,args,prepare,message", SHELL, ids=[b[0] for b in SHELL])
def test_bad_input_from_the_shell(workspace, name, args, prepare, message):
    if prepare:
        args = [*args, *(prepare(workspace) or [])]
    before = snapshot(workspace)
    proc = run_cli(args, workspace)
    assert proc.returncode == 2
    assert_one_line(proc.returncode, proc.stdout, proc.stderr, message)
    assert snapshot(workspace) == before


def test_corrupted_record_is_reported_and_redone(workspace, data_mirror):
    target = workspace / "results/records/cpusmall/mlp50/direct-decreasing/seed02.json"
    target.write_text('{"schema": 1, "test_rmse": 0.1')  # torn by hand
    proc = run_cli([], workspace, mirror=data_mirror)
    assert proc.returncode == 0, proc.stderr
    assert "damaged" in proc.stdout and "redoing seed 2" in proc.stdout
    assert json.loads(target.read_text())["seed"] == 2


def test_single_cell_from_the_shell_then_skip(workspace, data_mirror):
    proc = run_cli(["method=random", "alpha=zero", "seeds=1"], workspace, mirror=data_mirror)
    assert proc.returncode == 0, proc.stderr
    assert (workspace / "results/records/cpusmall/mlp50/random-0/seed01.json").is_file()
    again = run_cli(["method=random", "alpha=zero", "seeds=1"], workspace, mirror=data_mirror)
    assert again.returncode == 0 and "already done" in again.stdout


def _proc_text(pid: int, name: str) -> str:
    """``/proc/<pid>/<name>`` as text, "" once the process is gone (it may go between listing and reading)."""
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes().decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc")
def test_sigterm_of_a_sweep_stops_its_workers(workspace, data_mirror):
    """kill <pid> of a parallel sweep stops its launcher workers too (they used to train on, orphaned)."""
    from dfkd.cli import _children

    env = dict(os.environ, DFKD_DATA_MIRROR=str(data_mirror), DFKD_JOBS="2")
    cmd = [sys.executable, "-m", "dfkd.distill", "-m", "hydra/launcher=local", *TINY, "epochs=100000",
           "method=random,generator", "alpha=zero", f"results_dir={workspace / 'results'}",
           f"teacher_dir={workspace / 'teachers'}", f"data_dir={workspace / 'data'}"]
    errors = workspace / "sweep.err"  # a file, not a pipe: a long run can never block on a full pipe
    with errors.open("w") as err:
        proc = subprocess.Popen(cmd, env=env, cwd=workspace, stdout=subprocess.DEVNULL, stderr=err)
    seen = set()
    try:
        deadline, workers = time.time() + 90, []
        while time.time() < deadline and len(workers) < 2:  # the two workers are up and in their cells
            time.sleep(0.5)
            workers = [c for c in _children(proc.pid) if "LokyProcess" in _proc_text(c, "cmdline")]
            seen.update(workers)
            logs = list((workspace / "results" / "records").rglob("run.log"))
            if len(logs) < 3:  # the finished cell's own log, plus one per running cell
                workers = []
        assert len(workers) == 2, errors.read_text() if proc.poll() is not None else "workers did not start"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM

        def alive(w):
            stat = _proc_text(w, "stat")
            return bool(stat) and stat.rpartition(")")[2].split()[0] != "Z"  # a zombie has stopped

        deadline = time.time() + 20
        while time.time() < deadline and any(alive(w) for w in workers):
            time.sleep(0.2)
        left = [w for w in workers if alive(w)]
        assert not left, f"workers {left} outlived their killed parent"
    except BaseException:
        for w in seen:  # a failing run leaves none behind (only then: a passed run's pids may be reused by now)
            if "LokyProcess" in _proc_text(w, "cmdline"):
                os.kill(w, signal.SIGKILL)
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
