"""Packaging: a non-editable install carries the configs and experiment specs, and its commands work.

The fast test builds a wheel (about 2 s) and reads it. The slow ones install that wheel into a fresh
venv, outside the repository, and run its console scripts from a temporary folder. The venv gets
the project's dependencies from the test interpreter's site-packages through a plain path in a
``.pth`` file (so no torch download); a plain path does not run that folder's own ``.pth`` files,
so the source checkout's editable install of dfkd stays invisible, and a test checks that
``dfkd`` is imported from the wheel.
"""

from __future__ import annotations

import ast
import json
import math
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO_ROOT

SCRIPTS = {
    "dfkd-distill": "dfkd.distill:cli",
    "dfkd-teachers": "dfkd.teachers:cli",
    "dfkd-study": "dfkd.study:cli",
    "dfkd-teacher-study": "dfkd.teacher_study:cli",
    "dfkd-table5-matched": "dfkd.report.matched:main",
    "dfkd-report": "dfkd.report.__main__:main",
    "dfkd-data": "dfkd.data.__main__:main",
    "dfkd-status": "dfkd.status:main",
    "dfkd-bench": "dfkd.bench:main",
    "dfkd-own": "dfkd.own:cli",
}
TINY = ["dataset=cpusmall", "method=random", "alpha=zero", "seeds=1", "epochs=4", "steps_per_epoch=2",
        "teacher.max_epochs=3", "progress=false"]
SOURCES = ("pyproject.toml", "setup.py", "dfkd", "conf", "experiments")


def build_wheel(tmp: Path) -> Path:
    """Build the project's wheel from a copy of the sources (no build/ or egg-info left in the checkout)."""
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in SOURCES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    out = tmp / "wheel"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", str(src), "-w", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = out.glob("dfkd-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("build"))


def entry_points(whl: zipfile.ZipFile) -> dict[str, str]:
    (name,) = [n for n in whl.namelist() if n.endswith(".dist-info/entry_points.txt")]
    scripts, section = {}, None
    for line in whl.read(name).decode().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and section == "console_scripts":
            key, _, value = line.partition("=")
            scripts[key.strip()] = value.strip()
    return scripts


def test_wheel_ships_every_config_spec_and_module_and_names_the_commands(wheel):
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        scripts = entry_points(whl)
    confs = sorted(p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "conf").rglob("*.yaml"))
    assert len(confs) > 40 and "conf/config.yaml" in confs
    missing = [c for c in confs if f"dfkd/{c}" not in names]
    assert not missing, f"configs left out of the wheel: {missing}"
    specs = sorted(p.name for p in (REPO_ROOT / "experiments").glob("*.py"))
    assert {"table3.py", "table4.py", "fig7.py", "_tabular.py"} <= set(specs)
    missing = [s for s in specs if f"dfkd/experiments/{s}" not in names]
    assert not missing, f"experiment specs left out of the wheel: {missing}"
    modules = sorted(p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "dfkd").rglob("*.py"))
    missing = [m for m in modules if m not in names]
    assert not missing, f"modules left out of the wheel (a subpackage without __init__.py?): {missing}"
    assert not [n for n in names if n.split("/")[0] not in ("dfkd",) and ".dist-info/" not in n], \
        "the wheel must install nothing but the dfkd package"

    assert scripts == SCRIPTS
    # every module that runs as `python -m dfkd.X` has its command; each command's function exists
    runnable = {".".join(Path(m).with_suffix("").parts) for m in modules
                if 'if __name__ == "__main__":' in (REPO_ROOT / m).read_text()}
    targets = {t.split(":")[0] for t in SCRIPTS.values()}
    assert runnable == targets
    for target in SCRIPTS.values():
        module, func = target.split(":")
        tree = ast.parse((REPO_ROOT / (module.replace(".", "/") + ".py")).read_text())
        bound = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}  # def cli(): ...
        bound |= {e.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets  # main, cli = hydra_entry(...)
                  for e in (t.elts if isinstance(t, ast.Tuple) else [t]) if isinstance(e, ast.Name)}
        assert func in bound, target


def test_the_source_checkout_uses_its_top_level_conf_and_experiments():
    from dfkd import cli
    from dfkd.core import paths

    assert paths.CONF_DIR == REPO_ROOT / "conf" and paths.EXPERIMENTS_DIR == REPO_ROOT / "experiments"
    assert Path(cli.CONF_PATH).is_absolute()


# -- an installed wheel, run from outside the repository -----------------------------------------
class Installed:
    def __init__(self, root: Path):
        self.root = root
        self.venv = root / "venv"
        self.work = root / "work"  # cwd of every command: no conf/ or experiments/ here
        self.work.mkdir()

    def env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env.update(PATH=f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", HYDRA_FULL_ERROR="0",
                   DFKD_DATA_MIRROR="")
        env.update(extra)
        return env

    def run(self, *cmd, timeout=300, **env) -> subprocess.CompletedProcess:
        exe = self.venv / "bin" / cmd[0]
        return subprocess.run([str(exe), *cmd[1:]], capture_output=True, text=True, cwd=self.work,
                              env=self.env(**env), timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    root = tmp_path_factory.mktemp("installed")
    whl = build_wheel(root)
    inst = Installed(root)
    subprocess.run([sys.executable, "-m", "venv", str(inst.venv)], check=True, timeout=300)
    proc = inst.run("python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(whl))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the dependencies (torch, hydra, ...) from this interpreter, as plain paths: their .pth files
    # (among them the editable dfkd's finder) are not run
    purelib = Path(inst.run("python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip())
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (purelib / "_dfkd_test_deps.pth").write_text("\n".join(deps) + "\n")
    return inst


@pytest.mark.slow
def test_installed_dfkd_is_the_wheel_with_its_configs_inside(installed):
    proc = installed.run("python", "-c", "import dfkd, dfkd.core.paths as c; print(dfkd.__file__); "
                         "print(c.CONF_DIR); print(c.EXPERIMENTS_DIR)")
    assert proc.returncode == 0, proc.stderr
    init, conf, experiments = (Path(line) for line in proc.stdout.split())
    package = init.parent
    assert installed.venv in package.parents and REPO_ROOT not in package.parents
    assert conf == package / "conf" and (conf / "config.yaml").is_file()
    assert experiments == package / "experiments" and (experiments / "table3.py").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_installed_command_help(installed, script):
    proc = installed.run(script, "--help", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "usage" in proc.stdout.lower() or "== Config ==" in proc.stdout


@pytest.mark.slow
def test_installed_distill_composes_and_rejects_unknown_options_in_one_line(installed):
    proc = installed.run("dfkd-distill", "--cfg", "job", "dataset=pole", "experiment=table3")
    assert proc.returncode == 0, proc.stderr
    assert "name: pole" in proc.stdout and "experiment_name: table3" in proc.stdout
    proc = installed.run("dfkd-teachers", "--cfg", "job", "dataset=mv")
    assert proc.returncode == 0 and "name: mv" in proc.stdout, proc.stderr
    proc = installed.run("dfkd-distill", "dataset=nosuch")
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown dataset 'nosuch'"), proc.stderr


@pytest.fixture(scope="module")
def installed_run(installed, data_mirror):
    """A tiny cpusmall cell trained by the installed ``dfkd-distill``."""
    out = installed.work / "run"
    proc = installed.run("dfkd-distill", *TINY, f"results_dir={out / 'results'}",
                         f"teacher_dir={out / 'teachers'}", f"data_dir={out / 'data'}",
                         DFKD_DATA_MIRROR=str(data_mirror))
    return out, proc


@pytest.mark.slow
def test_installed_distill_trains_a_tiny_cell(installed, installed_run):
    out, proc = installed_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rec = json.loads((out / "results/records/cpusmall/mlp50/random-0/seed01.json").read_text())
    assert rec["status"] == "ok" and math.isfinite(rec["test_rmse"])
    proc = installed.run("dfkd-status", "--all", str(out / "results"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
def test_installed_report_tabulates_the_tiny_cell(installed, installed_run):
    out, proc = installed_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = installed.run("dfkd-report", "--records", str(out / "results/records"), "--out", str(out / "tables"),
                         "--tables", "table4", "--data-dir", str(out / "data"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "tables/table4.md").is_file()


@pytest.mark.slow
def test_installed_data_installs_from_the_mirror(installed, data_mirror):
    proc = installed.run("dfkd-data", "--datasets", "cpusmall", "--mirror", str(data_mirror),
                         "--data-dir", str(installed.work / "data"), "--no-download", "--strict")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (installed.work / "data/cpusmall/X.npy").is_file()
