"""The results store of one cell: which seeds are pending, the stack's commit file, traces and checkpoints.

Crash safety: per-seed traces are written first, then the whole stack's records in one atomic
file (the commit point, :func:`commit_stack`), then one record per seed; an interruption anywhere
leaves either nothing of the stack (it is redone) or a committed stack whose records are restored
on the next run (:func:`restore_from_stack_files`), never a mix.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from dfkd.engine.checkpoint import read_checkpoint
from dfkd.errors import ConfigError
from dfkd.records import (SCHEMA, atomic_write_bytes, config_hash, now_utc, read_record, record_path,
                          write_json)


def check_writable(folder: Path) -> None:
    """Fail early, before any training, if results cannot be written to ``folder``."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(Path(folder) / ".dfkd-write-test", b"ok")
        (Path(folder) / ".dfkd-write-test").unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write results to {folder} ({exc.strerror or exc}): fix its permissions or "
                          f"choose another folder with results_dir=...") from None


def cell_logger(log, cell_dir: Path):
    """Log to the caller and append to the cell's own ``run.log`` beside its """
    path = Path(cell_dir) / "run.log"

    def emit(message: str) -> None:
        log(message)
        try:
            with open(path, "a") as fh:
                fh.write(f"[{now_utc()}] {message}\n")
        except OSError:
            pass  # the log is a convenience; the record is the result
    return emit


def pending_seeds(seeds: list[int], paths: dict, hashes: dict, cell_dir: Path, log) -> list[int]:
    """Seeds without a valid record of the current config; records of a committed stack are restored first."""
    restore_from_stack_files(cell_dir, paths, hashes, log)
    pending = []
    for s in seeds:
        rec = read_record(paths[s])
        if rec is None and paths[s].exists():
            log(f"record {paths[s]} is damaged or of another schema: redoing seed {s}")
        if rec is None or rec.get("config_hash") != hashes[s]:
            pending.append(s)
        elif rec.get("status") != "ok":
            log(f"seed {s} failed earlier ({rec.get('failure_reason')}): kept as failed; delete {paths[s]} to retry")
    return pending


def stack_key(pending: list[int], hashes: dict) -> str:
    """The name shared by a stack's commit file and its checkpoint: a hash of its seeds' config hashes."""
    return config_hash([hashes[s] for s in pending])


def checkpoint_path(cell_dir: Path, key: str) -> Path:
    return Path(cell_dir) / f".ckpt-{key}.pt"


def restore_from_stack_files(cell_dir: Path, paths: dict, hashes: dict, log) -> None:
    """Write records that a finished stack committed but an interruption kept from being written."""
    for stack_file in sorted(Path(cell_dir).glob(".stack-*.json")):
        stack = read_record(stack_file)
        if stack is None:
            stack_file.unlink(missing_ok=True)  # never committed: its run is redone (from its checkpoint, if any)
            continue
        # committed: a checkpoint of the same stack is no longer needed
        checkpoint_path(cell_dir, stack_file.name[len(".stack-"):].rsplit("-", 1)[0]).unlink(missing_ok=True)
        for rec in stack.get("records", []):
            seed = rec.get("seed")
            if seed in paths and rec.get("config_hash") == hashes.get(seed):
                current = read_record(paths[seed])
                if current is None or current.get("config_hash") != hashes[seed]:
                    write_json(paths[seed], rec)
                    log(f"restored the record of seed {seed} from its committed stack {stack_file.name}")
        stack_file.unlink(missing_ok=True)


def remove_spent_checkpoints(cell_dir: Path, log) -> None:
    """Delete checkpoints every one of whose seeds has since finished with the checkpoint's config hash.

    Such files are left by a stack that another grouping of the same seeds finished (say seeds 1-5 checkpointed,
    then rerun as [1,2,3] and [4,5]); nothing can resume from them. A checkpoint with an unfinished seed may
    belong to a running worker and is kept, as is one that cannot be read.
    """
    for path in sorted(Path(cell_dir).glob(".ckpt-*.pt")):
        try:
            key = read_checkpoint(path)["key"]
            seeds, hashes = list(key["seeds"]), list(key["hashes"])
        except Exception:  # damaged, foreign, or removed meanwhile: the run that owns it reports it
            continue
        finished = [(read_record(record_path(cell_dir, seed)) or {}).get("config_hash") == h
                    for seed, h in zip(seeds, hashes)]
        if seeds and all(finished):
            path.unlink(missing_ok=True)
            log(f"removed spent checkpoint {path.name}: its seeds {seeds} have finished")


def write_trace(path: Path, arrays: dict) -> None:
    """Atomically store one run's per-epoch arrays (float32, compressed)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: v.astype(np.float32) for k, v in arrays.items()})
    atomic_write_bytes(path, buf.getvalue())


def commit_stack(cell_dir: Path, key: str, recs: list[dict], checkpoint) -> None:
    """Write the stack's records atomically as one file (the commit point), drop its checkpoint, then write
    one record per seed and remove the commit file."""
    stack_file = Path(cell_dir) / f".stack-{key}-{os.getpid()}.json"
    write_json(stack_file, {"schema": SCHEMA, "records": recs})
    checkpoint.remove()
    for rec in recs:
        write_json(record_path(cell_dir, rec["seed"]), rec)
    stack_file.unlink(missing_ok=True)
