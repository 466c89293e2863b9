"""Where a long run stands, from the files it leaves (no training, nothing written): ``make status``.

    python -m dfkd.status                      # cells under results/ that are training or have failures
    python -m dfkd.status --all results/records/mnist

For every cell folder (``<dataset>/<student>/<method>-<alpha>``): its finished records (ok and
failed) and, for each stack still training, the epoch of its last checkpoint, the training time
so far and the time left at that pace. A run carried over several sessions (Table 5 on a CPU)
is resumed by rerunning its command; this shows how far it got.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from dfkd import records
from dfkd.engine.checkpoint import read_checkpoint


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def checkpoint_info(path: Path) -> dict | None:
    """Seeds, epoch, epochs, training seconds and save time of a stack checkpoint, or None if unreadable."""
    try:
        state = read_checkpoint(path)
        return {"seeds": list(state["key"]["seeds"]), "epoch": int(state["epoch"]), "epochs": int(state["epochs"]),
                "elapsed_s": float(state.get("elapsed_s", 0.0)), "saved_at": state.get("saved_at", "unknown")}
    except Exception:  # damaged, foreign or removed meanwhile: the run that owns it reports it
        return None


def cell_status(cell_dir: Path) -> dict:
    """Finished records and checkpointed stacks of one cell folder."""
    recs = [r for r in (records.read_record(p) for p in sorted(cell_dir.glob("seed*.json"))) if r is not None]
    stacks = []
    for path in sorted(cell_dir.glob(".ckpt-*.pt")):
        info = checkpoint_info(path)
        stacks.append({"file": path.name, **(info or {"unreadable": True})})
    return {"cell": cell_dir, "ok": sorted(r.get("seed") for r in recs if r.get("status", "ok") == "ok"),
            "failed": sorted(r.get("seed") for r in recs if r.get("status", "ok") != "ok"), "stacks": stacks}


def _stack_line(stack: dict, now: datetime) -> str:
    if stack.get("unreadable"):
        return f"    {stack['file']}: unreadable (the run that owns it reports it)"
    epoch, epochs, elapsed = stack["epoch"], stack["epochs"], stack["elapsed_s"]
    pace = elapsed / epoch if epoch else float("nan")
    left = pace * (epochs - epoch)
    try:
        age = (now - datetime.fromisoformat(stack["saved_at"])).total_seconds()
        saved = f"saved {_hours(max(age, 0.0))} ago"
    except (TypeError, ValueError):
        saved = "save time unknown"
    eta = f", about {_hours(left)} to go at {pace:.1f} s/epoch" if epoch else ""
    return (f"    seeds {stack['seeds']}: epoch {epoch}/{epochs} ({100 * epoch / epochs:.0f} %), "
            f"{_hours(elapsed)} trained{eta}; {saved}")


def find_cells(root: Path) -> list[Path]:
    """Cell folders under ``root``: folders holding records or checkpoints."""
    found = {p.parent for pattern in ("seed*.json", ".ckpt-*.pt") for p in root.rglob(pattern)}
    return sorted(found)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dfkd.status", description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="*", default=["results"], help="folders to search (default: results)")
    parser.add_argument("--all", action="store_true", help="also list cells whose stacks have all finished")
    args = parser.parse_args(argv)
    now = datetime.now(timezone.utc)
    cells = []
    for root in map(Path, args.roots):
        if not root.exists():
            print(f"error: {root} does not exist: pass a results folder, e.g. results/records", file=sys.stderr)
            return 2
        cells += find_cells(root)
    if not cells:
        print(f"no records or checkpoints under {', '.join(args.roots)}: start a run, e.g. `make quick`")
        return 0
    training = finished = 0
    for cell in cells:
        st = cell_status(cell)
        finished += len(st["ok"]) + len(st["failed"])
        training += len(st["stacks"])
        if not (args.all or st["stacks"] or st["failed"]):
            continue
        failed = f", {len(st['failed'])} failed {st['failed']}" if st["failed"] else ""
        running = f", {len(st['stacks'])} stack(s) in training" if st["stacks"] else ""
        print(f"{cell}: {len(st['ok'])} finished{failed}{running}")
        for stack in st["stacks"]:
            print(_stack_line(stack, now))
    print(f"{len(cells)} cell(s), {finished} finished run(s); {training} stack(s) with a checkpoint"
          + (" (rerun their command to resume them)" if training else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
