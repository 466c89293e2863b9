"""results/reference/manifest.json names the commit that produced every committed run, and covers every file."""

from __future__ import annotations

import fnmatch
import json

from conftest import REPO_ROOT

REFERENCE = REPO_ROOT / "results" / "reference"


def manifest() -> dict:
    return json.loads((REFERENCE / "manifest.json").read_text())


def files_of(run: dict) -> list:
    return [p for p in sorted(REFERENCE.rglob("*")) if p.is_file()
            and any(fnmatch.fnmatch(p.relative_to(REFERENCE).as_posix(), pattern) for pattern in run["paths"])]


def test_every_run_names_its_commits_command_and_time():
    runs = manifest()["runs"]
    assert len({r["name"] for r in runs}) == len(runs)
    for run in runs:
        assert run["commits"] and all(len(c.split("+")[0]) == 40 for c in run["commits"]), run["name"]
        assert run["command"] and run["finished"] and run["paths"], run["name"]
        assert files_of(run), f"run {run['name']}: its paths match no committed file"


def test_every_committed_file_belongs_to_one_run():
    runs = manifest()["runs"]
    owners = {}
    for run in runs:
        for path in files_of(run):
            owners.setdefault(path, []).append(run["name"])
    every = [p for p in sorted(REFERENCE.rglob("*")) if p.is_file() and p.name != "manifest.json"]
    orphans = [str(p.relative_to(REFERENCE)) for p in every if p not in owners]
    shared = {str(p.relative_to(REFERENCE)): o for p, o in owners.items() if len(o) > 1}
    assert not orphans, f"files of no run in manifest.json: {orphans[:5]}"
    assert not shared, f"files claimed by two runs: {list(shared.items())[:5]}"


def test_each_record_was_written_by_a_commit_its_run_names():
    for run in manifest()["runs"]:
        commits = set(run["commits"])
        for path in files_of(run):
            if path.suffix != ".json" or not path.name.startswith("seed"):
                continue
            rec = json.loads(path.read_text())
            assert rec.get("git_commit") in commits, (run["name"], str(path), rec.get("git_commit"))
