"""Entry point: distil your own regressor from a file into a run folder (the command over ``DistilledRegressor``).

    python -m dfkd.own teacher=model.pt 'bounds=[[0,1],[-5,5]]' method=direct export=onnx out=runs/mine
    python -m dfkd.own teacher=svr.joblib 'bounds=[[0,1],[-5,5]]' method=de out=runs/svr

Config: ``conf/own/own.yaml``. Every input is checked (the teacher file loads and answers, bounds, data, the
method, onnx when asked for, the run folder can be written) before anything is written; a mistake is one line
``error: ...`` and exit status 2. The run folder gets ``config.yaml`` (resolved), ``student.pt`` (the student's
state dict and metadata), ``fidelity.json`` and the export; while training, ``.ckpt.pt`` (the engine's
:class:`~dfkd.engine.checkpoint.Checkpoint`) lets a rerun of the same config resume; a finished run is not redone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from dfkd.cli import CONF_PATH, hydra_entry
from dfkd.errors import ConfigError
from dfkd.records import atomic_write_bytes, config_hash, git_commit

OWN_CONF = str(Path(CONF_PATH) / "own")
#: Config keys that do not change the result (not in the checkpoint key or the finished-run check).
NOT_HASHED = ("out", "progress", "checkpoint_every_s")
EXPORT_SUFFIX = {"onnx": ".onnx", "torchscript": ".ts"}


def _rows(path, what: str) -> np.ndarray:
    path = Path(str(path))
    if not path.is_file():
        raise ConfigError(f"{what} file {path} does not exist")
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif path.suffix in (".csv", ".txt"):
            arr = np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None, ndmin=2)
        else:
            raise ConfigError(f"{what} file {path}: use .npy or .csv")
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"{what} file {path} cannot be read ({' '.join(str(exc).split())})") from None
    return np.asarray(arr, dtype=np.float64)


def _bounds(raw):
    if raw is None:
        return None
    if isinstance(raw, str):  # "lo:hi,lo:hi"
        try:
            return [tuple(float(v) for v in pair.split(":")) for pair in raw.split(",")]
        except ValueError:
            raise ConfigError(f"bounds must be [[lo, hi], ...] or 'lo:hi,lo:hi', got {raw!r}") from None
    return raw


def _check_out(out: Path) -> None:
    folder = out
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write the run folder {out}: {folder} is not a writable folder; choose another out=")


def run_own(cfg: dict, log=print) -> dict:
    """Run the command on a resolved config dict; returns ``{"out", "fidelity", "export", "resumed"}``."""
    from dfkd.engine.checkpoint import Checkpoint
    from dfkd.estimator import EXPORT_FORMATS, DistilledRegressor, InputError, check_export_path, has_onnx

    if cfg.get("teacher") in (None, "", "???"):
        raise ConfigError("no teacher: add teacher=path/to/model.pt (or .joblib)")
    if cfg.get("out") in (None, "", "???"):
        raise ConfigError("no run folder: add out=path/to/folder")
    out = Path(str(cfg["out"]))
    fmt = cfg.get("export")
    if fmt not in (None, *EXPORT_FORMATS):
        raise ConfigError(f"export must be onnx, torchscript or null, got {fmt!r}")
    if fmt == "onnx" and not has_onnx():
        raise ConfigError("export=onnx needs onnx and onnxruntime: pip install 'dfkd[onnx]' (or export=torchscript)")
    _check_out(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out={out} is a file: choose a folder")
    export_path = out / f"student{EXPORT_SUFFIX[fmt]}" if fmt else None
    if export_path is not None:
        check_export_path(export_path)
    hashed = {k: v for k, v in cfg.items() if k not in NOT_HASHED}
    key = config_hash(hashed)
    done = out / "fidelity.json"
    if (out / "config.yaml").exists():
        import yaml

        old = yaml.safe_load((out / "config.yaml").read_text()) or {}
        if config_hash({k: v for k, v in old.items() if k not in NOT_HASHED}) != key:
            raise ConfigError(f"run folder {out} holds a run of another config: choose another out= or delete it")
        if done.exists():
            log(f"{out}: finished already (fidelity.json): nothing to do; delete the folder to redo it")
            return {"out": str(out), "fidelity": json.loads(done.read_text()), "export": None, "resumed": False}

    X = _rows(cfg["data"], "data") if cfg.get("data") else None
    y = _rows(cfg["targets"], "targets").reshape(-1) if cfg.get("targets") else None
    if y is not None and (X is None or y.shape[0] != X.shape[0]):
        raise ConfigError("targets need data= with one row per target")
    est = DistilledRegressor(
        teacher=str(cfg["teacher"]), method=cfg.get("method", "direct"), student_hidden=cfg.get("student_hidden", 50),
        input_bounds=_bounds(cfg.get("bounds")), input_moments=cfg.get("moments"), epochs=cfg.get("epochs", 200),
        alpha=cfg.get("alpha", "decreasing"), random_state=cfg.get("random_state", 0), device=cfg.get("device", "auto"),
        steps_per_epoch=cfg.get("steps_per_epoch", 10), batch_size=cfg.get("batch_size"), lr=cfg.get("lr", 1e-3),
        start=cfg.get("start", "auto"), probe_rows=cfg.get("probe_rows", 1000))
    try:
        plan = est._plan(X, y)  # every check and the teacher's probe answers; nothing written yet
    except InputError:
        raise
    except ValueError as exc:  # scikit-learn's own checks of X
        raise ConfigError(" ".join(str(exc).split())) from None

    import torch
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "config.yaml", yaml.safe_dump(cfg, sort_keys=False).encode())
    ckpt = Checkpoint(out / ".ckpt.pt", float(cfg.get("checkpoint_every_s", 300) or 0), key=key, log=log,
                      commit=git_commit())
    log(f"distilling {cfg['teacher']} ({plan.kind} teacher, method {plan.method_name}, {plan.cfg.epochs} epochs) "
        f"into {out}")
    est._train(plan, progress=bool(cfg.get("progress", True)), checkpoint=ckpt)
    fid = est.fidelity(X, y)
    import io

    buf = io.BytesIO()
    torch.save({"state_dict": est.student_.state_dict(), "metadata": est.metadata(fid),
                "history": est.history_}, buf)
    atomic_write_bytes(out / "student.pt", buf.getvalue())
    exported = est.export(export_path, fmt, fidelity=fid) if fmt else None
    atomic_write_bytes(done, json.dumps(fid, indent=2).encode())
    ckpt.remove()
    for name, entry in fid["probe_sets"].items():
        log(f"fidelity on {name} ({entry['rows']} rows): RMSE {entry['rmse']:.4g} (untrained student "
            f"{entry['untrained_rmse']:.4g}), MAE {entry['mae']:.4g}, max {entry['max_abs']:.4g}, R^2 {entry['r2']:.4f}")
    if exported:
        log(f"exported {exported['path']} (max abs difference to the student {exported['max_abs_diff']:.2g})")
    return {"out": str(out), "fidelity": fid, "export": exported, "resumed": ckpt.resumed_epoch is not None}


# `dfkd-own`: python -m dfkd.own (its own primary config folder, so no check of our groups' options)
main, cli = hydra_entry(run_own, "own", config_path=OWN_CONF, check_groups=False)

if __name__ == "__main__":
    cli()
