"""Shared plumbing of the Hydra entry points: early checks and one-line errors.

Hydra reports an unknown config option in a dozen lines; a researcher should get
one that names the fix. :func:`check_overrides` looks at ``sys.argv`` before
Hydra does, and :func:`guarded` turns every :class:`~dfkd.errors.DfkdError`
raised inside a job into ``error: <message>`` on stderr and exit status 2.
:func:`hydra_entry` makes an entry module's ``main`` (the Hydra task) and ``cli`` (its console command) from these.
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
import sys
from pathlib import Path

import hydra
from omegaconf import OmegaConf

from dfkd.core.paths import CONF_DIR
from dfkd.errors import ConfigError, DfkdError
from dfkd.records import real_label

# ${dfkd_real:${real_fraction},${real_rows}} in conf/config.yaml's log folders: '-p0.1' / '-n500' / '' (data-free),
# so that the log folder of a cell is named like its records folder.
OmegaConf.register_new_resolver("dfkd_real", lambda f, r: f"-{real_label(f, r)}" if real_label(f, r) else "",
                                replace=True)


CONF_PATH = str(CONF_DIR)  # absolute, for @hydra.main(config_path=...): independent of cwd and of how dfkd runs
_SWEEP_FN = re.compile(r"^\w+\(.*\)$")  # choice(...), range(...), glob(...): left to Hydra


def options(group: str) -> list[str]:
    """The option names of a config group (the yaml files of ``conf/<group>/``)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def groups(config_dir: Path = CONF_DIR) -> list[str]:
    """The config groups of a primary config folder, ours by default (not Hydra's own, nor ``own/``: the primary
    config folder of ``python -m dfkd.own``)."""
    return sorted(p.name for p in Path(config_dir).iterdir() if p.is_dir() and p.name not in ("hydra", "own"))


def check_overrides(argv: list[str]) -> None:
    """Reject unknown group options in command-line overrides with a one-line ConfigError."""
    known = set(groups())
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, _, value = arg.partition("=")
        key = key.lstrip("+~").split("@")[0]
        if key == "results_dir" and value and "," not in value and "$" not in value:
            from dfkd.store import check_writable

            check_writable(Path(value))  # Hydra writes its logs there before any of our code runs
        if key not in known or not value or _SWEEP_FN.match(value):
            continue
        valid = options(key)
        for choice in value.split(","):
            if choice not in valid and choice != "null":
                raise ConfigError(f"unknown {key} '{choice}': choose one of {', '.join(valid)} (conf/{key}/)")
    check_required_choices(argv)


def _key_overrides(argv: list[str], known: set[str]) -> list[str]:
    """The keys that plain ``key=value`` overrides set (not ``+key`` additions, deletions, groups or hydra's own)."""
    keys = []
    for arg in argv:
        key = arg.partition("=")[0]
        if arg.startswith("-") or "=" not in arg or key[:1] in "+~" or "/" in key or "@" in key:
            continue
        if key not in known and key.split(".")[0] != "hydra":
            keys.append(key)
    return keys


def check_keys(argv: list[str], config_name: str = "config", config_dir: str | Path = CONF_DIR) -> None:
    """A misspelt key (``datset=pole``, ``teacher.epochz=3``) in one line that names the key meant.

    Hydra's own message spans five lines and proposes ``+datset=pole``, which adds the typo as a new key. The
    config is composed with the command line's group choices (the first of a sweep's); a key that is not in it is
    reported with the closest keys at its level. A composition that fails for another reason is left to Hydra.
    """
    known = set(groups(config_dir))
    keys = _key_overrides(argv, known)
    if not keys:
        return
    choices = []
    for arg in argv:
        key, _, value = arg.partition("=")
        if not arg.startswith("-") and (key in known or "/" in key) and value and not _SWEEP_FN.match(value):
            choices.append(f"{key}={value.split(',')[0]}")
    try:
        with hydra.initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = hydra.compose(config_name, overrides=choices)
    except Exception:  # noqa: BLE001  (a bad choice or a required one: other checks and Hydra say so)
        return
    for key in keys:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if not OmegaConf.is_config(node) or OmegaConf.is_list(node):
            continue  # a list index or a value below a leaf: Hydra's message is the clear one
        if leaf in node:
            continue
        near = difflib.get_close_matches(leaf, [str(k) for k in node.keys()], n=3, cutoff=0.6)
        prefix = f"{parent}." if parent else ""
        hint = f"did you mean {' or '.join(prefix + n for n in near)}? " if near else ""
        primary = (Path(config_dir) / f"{config_name}.yaml").relative_to(CONF_DIR.parent).as_posix()
        where = f"{parent} has no key {leaf!r}" if parent else f"no key {leaf!r} in {primary}"
        raise ConfigError(f"unknown option {key!r} ({where}): {hint}"
                          f"to add a new key on purpose, write +{key}=...")


_REQUIRED = re.compile(r"^\s*-\s*override\s+/(\w+)\s*:\s*\?\?\?\s*$", re.M)


def check_required_choices(argv: list[str]) -> None:
    """A preset whose defaults say ``override /<group>: ???`` (e.g. table5_matched's teacher) needs that group on
    the command line: say so in one line instead of Hydra's list of options."""
    given = {a.partition("=")[0].lstrip("+~").split("@")[0]: a.partition("=")[2] for a in argv
             if not a.startswith("-") and "=" in a}
    for preset in given.get("experiment", "").split(","):
        path = CONF_DIR / "experiment" / f"{preset}.yaml"
        if not preset or not path.is_file():
            continue
        for group in _REQUIRED.findall(path.read_text()):
            if not given.get(group):
                raise ConfigError(f"experiment={preset} needs {group}=<option>: choose one of "
                                  f"{', '.join(options(group))} (conf/{group}/; see conf/experiment/{preset}.yaml)")


def report(exc: DfkdError) -> None:
    """Print a user error as one line on stderr."""
    print(f"error: {exc}", file=sys.stderr, flush=True)


def guarded(task):
    """Wrap a Hydra task function: DfkdError -> one line on stderr and exit 2."""

    @functools.wraps(task)
    def wrapper(cfg):
        try:
            return task(OmegaConf.to_container(cfg, resolve=True))
        except DfkdError as exc:
            logging.getLogger("dfkd").debug("user error", exc_info=True)
            report(exc)
            sys.exit(2)

    return wrapper


def _children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux ``/proc``; empty where there is none)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        if len(fields) > 1 and int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def stop_workers_on_sigterm() -> None:
    """On SIGTERM, stop this process's launcher workers too, then die of SIGTERM as usual.

    The joblib launcher's workers are children that outlive a killed parent: without this, ``kill <pid>`` of a
    sweep left its workers training (and writing checkpoints) for as long as their cells ran. They stop at once;
    what they lose is the work since their last checkpoint (``checkpoint_every_s``), as after any interruption.
    Ctrl-C needs none of this (the terminal signals the whole process group)."""
    import os
    import signal

    def handler(signum, frame):
        for child in _children(os.getpid()):
            try:
                os.kill(child, signal.SIGTERM)
            except OSError:
                pass
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, handler)


def main_with_checks(hydra_main, config_name: str = "config", config_dir: str | Path = CONF_DIR,
                     check_groups: bool = True) -> None:
    """Run a ``@hydra.main`` function (primary config ``config_name`` in ``config_dir``) after checking the
    command line: its keys, and with ``check_groups`` the options of our config groups."""
    try:
        if check_groups:
            check_overrides(sys.argv[1:])
        check_keys(sys.argv[1:], config_name, config_dir)
    except DfkdError as exc:
        report(exc)
        sys.exit(2)
    stop_workers_on_sigterm()
    hydra_main()


def hydra_entry(run, config_name: str, *, config_path: str = CONF_PATH, check_groups: bool = True):
    """The ``main`` and ``cli`` of an entry module whose job is ``run(cfg)`` on the composed config as a dict.

    ``main`` is the ``@hydra.main`` task (``guarded``: a :class:`~dfkd.errors.DfkdError` is one line and exit 2);
    ``cli`` the console command, which checks the command line's keys first, and its group options unless
    ``check_groups`` is false (an entry with its own primary config folder, whose groups are not ours). Hydra
    names the job, and so its log file, after the module that defines ``run``, as it did when each module
    decorated its own ``main``.
    """

    def task(cfg: dict):
        return run(cfg)

    module = run.__module__
    if module == "__main__":  # python -m dfkd.x: Hydra would name the job after the file defining task (cli.py)
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec is not None else module
    task.__module__, task.__qualname__ = module, "main"
    main = hydra.main(config_path=config_path, config_name=config_name, version_base="1.3")(guarded(task))

    def cli() -> None:
        main_with_checks(main, config_name, config_path, check_groups)

    cli.__module__ = run.__module__
    return main, cli
