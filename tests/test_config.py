"""Every preset and every option of every config group composes and validates."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from dfkd.cli import CONF_DIR, check_keys, check_overrides, groups, options
from dfkd.engine.alpha import AlphaSchedule
from dfkd.errors import ConfigError
from dfkd.report.tables import load_table_specs, variant_names
from dfkd.settings import build_method, settings_from_dict

GROUP_OPTIONS = [(g, o) for g in groups() if g not in ("experiment", "variant") for o in options(g)]


def compose_dict(overrides, hydra_cfg=False):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=hydra_cfg)
    return cfg


def test_groups_are_what_the_docs_promise():
    assert {"dataset", "teacher", "student", "method", "alpha", "variant", "experiment"} <= set(groups())
    assert set(options("dataset")) >= {"compactiv", "cpusmall", "ctscan", "indoorloc", "mv", "pole", "puma32h"}
    assert set(options("alpha")) >= {"decreasing", "increasing", "zero", "one", "constant"}
    assert set(options("method")) >= {"random", "generator", "direct"}


@pytest.mark.parametrize("group,option", GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_every_group_option_composes_and_validates(group, option):
    cfg = OmegaConf.to_container(compose_dict([f"{group}={option}", "data_mirror=null"]), resolve=True)
    settings = settings_from_dict(cfg)
    assert cfg[group]["name"] == option
    if group == "method":
        assert build_method(settings).name == option


TABULAR = {"compactiv", "cpusmall", "ctscan", "indoorloc", "mv", "pole", "puma32h"}
SPECS = load_table_specs()


def sweep(value) -> list:
    """The values a sweep override expands to, parsed by Hydra's own parser."""
    return list(OverridesParser.create().parse_overrides([f"key={value}"])[0].sweep_string_iterator())


@pytest.mark.parametrize("variant", options("variant"))
def test_a_variant_is_named_by_its_method_and_alpha_label(variant):
    # One name per idea: variant=<name> composes method <m> and an alpha whose label is <a>, and its records
    # (field "variant" and folder results/records/<dataset>/<student>/<m>-<a>/) carry the same name.
    cfg = compose_dict([f"variant={variant}"])
    assert f"{cfg.method.name}-{AlphaSchedule(cfg.alpha.schedule, cfg.alpha.value).label}" == variant


def test_every_table_column_is_a_variant_option():
    names = {v for spec in SPECS.values() for v in variant_names(spec)}
    assert names - set(options("variant")) == set()


# Each preset's sweep against the spec(s) it produces records for: (preset, tables, datasets swept or fixed).
PRESET_TABLES = [("table3", ["table3"]), ("table4", ["table4"]), ("quick", ["table3", "table4"]),
                 ("table5", ["table5"]), ("table5_cpu", ["table5"]), ("mnist_quick", ["table5"]),
                 ("table6", ["table6"]), ("quick_table6", ["table6"])]


@pytest.mark.parametrize("preset,tables", PRESET_TABLES, ids=[p for p, _ in PRESET_TABLES])
def test_preset_sweeps_what_its_table_spec_declares(preset, tables):
    cfg = compose_dict([f"experiment={preset}", "data_mirror=null"], hydra_cfg=True)
    params = cfg.hydra.sweeper.params
    specs = [SPECS[t] for t in tables]
    variants = sweep(params.variant)
    assert len(variants) == len(set(variants))  # none twice
    assert set(variants) == {v for spec in specs for v in variant_names(spec)}
    datasets = sweep(params.dataset) if "dataset" in params else [cfg.dataset.name]
    assert len(datasets) == len(set(datasets))
    assert set(datasets) == {d for spec in specs for d in spec["datasets"]}
    students = sweep(params.student) if "student" in params else [cfg.student.name]
    assert sorted(students) == sorted({spec["student"] for spec in specs})


def test_any_method_composes_with_any_alpha():
    s = settings_from_dict(OmegaConf.to_container(compose_dict(["method=direct", "alpha=increasing"]), resolve=True))
    assert (s.method_name, s.alpha.label, s.alpha(0, 4)) == ("direct", "increasing", 0.25)


@pytest.mark.parametrize("preset,student", [("table3", "mlp25"), ("table4", "mlp50")])
def test_table_presets(preset, student):
    cfg = compose_dict([f"experiment={preset}"], hydra_cfg=True)
    assert cfg.student.name == student and cfg.experiment_name == preset and cfg.seeds == 10
    assert cfg.epochs == 2000 and cfg.missing_data == "skip"
    assert set(sweep(cfg.hydra.sweeper.params.dataset)) == TABULAR
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")


def test_quick_preset_is_reduced_and_kept_apart():
    cfg = compose_dict(["experiment=quick"], hydra_cfg=True)
    assert cfg.seeds == 3 and cfg.epochs == 100 and cfg.experiment_name == "quick"
    assert Path(cfg.results_dir) == Path("results/quick")
    assert set(cfg.hydra.sweeper.params.student.split(",")) == {"mlp25", "mlp50"}


@pytest.mark.parametrize("overrides,match", [
    (["epochs=0"], "epochs must be a positive integer"),
    (["epochs=-5"], "epochs must be a positive integer"),
    (["epochs=abc"], "epochs must be a positive integer"),
    (["batch_size=0"], "batch_size must be a positive integer"),
    (["steps_per_epoch=-1"], "steps_per_epoch"),
    (["seeds=0"], "seeds must be a positive integer"),
    (["alpha=constant", "alpha.value=1.5"], r"alpha.value must be in \[0, 1\]"),
    (["alpha=constant", "alpha.value=-0.1"], r"alpha.value must be in \[0, 1\]"),
    (["device=tpu"], "device must be"),
    (["teacher.batch_size=0"], "teacher.batch_size"),
])
def test_bad_values_are_one_line_config_errors(overrides, match):
    cfg = OmegaConf.to_container(compose_dict(overrides), resolve=True)
    with pytest.raises(ConfigError, match=match) as info:
        settings_from_dict(cfg)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("arg,ok", [
    ("dataset=pole", True), ("dataset=pole,mv", True), ("method=direct", True), ("experiment=table3", True),
    ("dataset=nope", False), ("method=gan", False), ("alpha=sideways", False), ("dataset=pole,nope", False),
    ("epochs=5", True), ("hydra/launcher=local", True),
])
def test_check_overrides(arg, ok):
    if ok:
        check_overrides([arg])
    else:
        with pytest.raises(ConfigError, match="choose one of"):
            check_overrides([arg])


@pytest.mark.parametrize("preset,epochs,results", [("table5", 1000, "results"), ("table5_cpu", 150, "results/table5_cpu"),
                                                    ("mnist_quick", 3, "results/quick")])
def test_mnist_presets(preset, epochs, results):
    cfg = compose_dict([f"experiment={preset}", "data_mirror=null"], hydra_cfg=True)
    assert (cfg.dataset.name, cfg.teacher.name, cfg.student.name) == ("mnist", "cnn10", "cnn5")
    assert cfg.seeds == 5 and cfg.epochs == epochs and cfg.steps_per_epoch == 10 and cfg.results_dir == results
    s = settings_from_dict(OmegaConf.to_container(compose_dict([f"experiment={preset}", "variant=direct_mnist-decreasing",
                                                                "data_mirror=null"]), resolve=True))
    assert (s.student.arch, s.student.loss, s.student.arch_params["filters"]) == ("cnn", "logcosh", 5)
    assert s.teacher.config.arch_params["filters"] == 10 and s.teacher.config.loss == "logcosh"
    method = build_method(s)
    assert (method.name, method.steps, method.lr, method.objective.target) == ("direct_mnist", 20, 1e-3, 1.0)


@pytest.mark.parametrize("preset", ["table5", "table5_cpu"])
def test_table5_seed_split_covers_each_run_once(preset):
    # The sweep's seed groups (two jobs per method, so both cores stay busy) must make 5 runs, none twice.
    sweep = compose_dict([f"experiment={preset}", "data_mirror=null"], hydra_cfg=True).hydra.sweeper.params.seeds
    groups = list(OverridesParser.create().parse_overrides([f"seeds={sweep}"])[0].sweep_iterator())
    assert len(groups) == 2 and sorted(sum(groups, [])) == [1, 2, 3, 4, 5]


def test_subset_is_for_image_datasets_only():
    with pytest.raises(ConfigError, match="image datasets only"):
        settings_from_dict(OmegaConf.to_container(compose_dict(["dataset=pole", "subset.train=100"]), resolve=True))


def test_table6_presets():
    cfg = compose_dict(["experiment=table6"], hydra_cfg=True)
    assert (cfg.dataset.name, cfg.teacher.name, cfg.student.name) == ("protein", "svr", "rbf100")
    assert (cfg.seeds, cfg.epochs, cfg.steps_per_epoch, cfg.rows_per_step) == (5, 1000, 100, 10)
    assert sweep(cfg.hydra.sweeper.params.variant) == ["de-0.5", "random-0"]
    quick = compose_dict(["experiment=quick_table6"], hydra_cfg=True)
    assert quick.experiment_name == "quick" and Path(quick.results_dir) == Path("results/quick")
    assert quick.epochs < cfg.epochs and quick.dataset.name == "protein"


@pytest.mark.parametrize("module", ["dfkd.distill", "dfkd.teachers", "dfkd.study", "dfkd.teacher_study", "dfkd.own"])
def test_each_entry_names_its_hydra_job_and_log_after_its_module(module):
    """``cli.hydra_entry`` builds every entry's task in dfkd/cli.py; the job (and its log file, ``<job>.log``) is
    still named after the entry module, under ``python -m`` as well as from the installed command."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", module, "--cfg", "hydra"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    job = OmegaConf.create(proc.stdout).hydra.job
    assert job.name == module.rpartition(".")[2]
    from importlib import import_module

    main = import_module(module).main
    assert main.__wrapped__.__module__ == module and main.__wrapped__.__qualname__ == "main"


@pytest.mark.parametrize("argv", [
    ["seeds=2", "epochs=5"], ["dataset=pole,mv", "method=direct,generator", "epochs=3"],
    ["experiment=table5", "variant=direct_mnist-decreasing", "dataset.split.n_val=100", "subset.train=200"],
    ["experiment=table5_matched", "teacher=cnn10_same", "teacher.label_dropout=false"],
    ["+foo=1", "~threads", "hydra.verbose=true", "hydra/launcher=local", "-m", "--cfg", "job"],
    ["dataset=nope", "datset=pole"],  # a composition that fails is left to the group check and Hydra
])
def test_check_keys_passes_real_keys(argv):
    check_keys(argv)


@pytest.mark.parametrize("argv,config_name,match", [
    (["seed=3"], "config", r"unknown option 'seed' \(no key 'seed' in conf/config.yaml\): did you mean seeds\? "
                           r"to add a new key on purpose, write \+seed=\.\.\.$"),
    (["experiment=table5", "subset.trian=5"], "config", r"subset has no key 'trian'\): did you mean subset.train\?"),
    (["dataset=mnist", "teacher=cnn10", "teacher.params.paddin=same"], "config", r"did you mean teacher.params.padding\?"),
    (["qqq=1"], "config", r"no key 'qqq' in conf/config.yaml\): to add"),
    (["imagez=3"], "study", r"conf/study.yaml"),
    (["p_mn=0.1"], "mnist_teachers", r"did you mean p_min\?"),
])
def test_check_keys_names_the_key_meant_in_one_line(argv, config_name, match):
    with pytest.raises(ConfigError, match=match) as exc:
        check_keys(argv, config_name)
    assert "\n" not in str(exc.value)


def test_check_keys_reads_the_own_entry_s_primary_config():
    own = CONF_DIR / "own"
    check_keys(["teacher=model.pt", "data.x=rows.csv"], "own", own)
    with pytest.raises(ConfigError, match=r"no key 'teachr' in conf/own/own.yaml\): did you mean teacher\?"):
        check_keys(["teachr=model.pt"], "own", own)
