"""Flags, presets, resolve() and --dry-run: the numbers a run is made of."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from lars_hvd.errors import UsageError
from lars_hvd.planning import cli
from lars_hvd.planning import config as c
from lars_hvd.planning import plan as p
from lars_hvd.train import main


def test_one_kebab_case_flag_per_field_with_its_default_in_help():
    parser = cli.build_parser()
    options = {a.dest: a for a in parser._actions}
    for name, (_, f, _) in c.flat_fields().items():
        action = options[name]
        assert action.option_strings == [f"--{name.replace('_', '-')}"] or action.option_strings[
            0] == f"--{name.replace('_', '-')}"  # booleans also get --no-<flag>
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        assert action.help.endswith(f"(default: {shown})"), name
    help_text = " ".join(parser.format_help().split())
    assert "--global-batch-size GLOBAL_BATCH_SIZE examples per optimizer step, over all " \
           "workers (default: 4096)" in help_text


def test_preset_then_flags_override():
    config, _ = cli.parse_args(["--preset", "resnet50-imagenet-32k", "--global-batch-size",
                              "16384", "--no-exclude-low-rank", "--step-boundaries", "5", "9"])
    assert config.model.model == "resnet50" and config.job.epochs == 90
    assert config.job.global_batch_size == 16384  # the flag beat the preset's 32768
    assert config.optimizer.exclude_low_rank is False
    assert config.schedule.step_boundaries == (5.0, 9.0)
    default, _ = cli.parse_args([])
    assert default == c.preset("fashion-mnist")  # the default preset


def test_config_round_trips_through_json():
    config = c.preset("resnet50-imagenet-mlperf")
    again = c.TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


@pytest.mark.parametrize(
    "args,world,per_worker,accumulation",
    [((4096, None), 2, 2048, 1), ((32768, 256), 8, 256, 16), ((32768, 256), 1024, 32, 1),
     ((32768, 256), 1, 256, 128), ((3200, 400), 8, 400, 1),
     ((3000, 64), 8, 25, 15)],  # 375 per worker: the smallest divisor bringing it under 64
)
def test_split_global_batch(args, world, per_worker, accumulation):
    global_batch, max_per_worker = args
    got = p.split_global_batch(global_batch, world, max_per_worker)
    assert got == (per_worker, accumulation)
    assert world * got[0] * got[1] == global_batch


def test_unsplittable_global_batch_names_nearest_sizes():
    with pytest.raises(UsageError, match="1000 cannot be split over 64 workers; the nearest "
                                         "valid sizes are 960 and 1024"):
        p.split_global_batch(1000, 64, None)


@pytest.mark.parametrize("world", [1, 8, 64, 1024])
def test_dry_run_plans_32k_for_any_world_size(world, capsys):
    assert main(["--preset", "resnet50-imagenet-32k", "--dry-run", "--world-size",
                 str(world)]) is None
    out = capsys.readouterr().out
    plan = p.resolve(c.preset("resnet50-imagenet-32k"), world)
    assert plan.global_batch_size == 32768
    assert plan.world_size * plan.accumulation_steps * plan.per_worker_batch == 32768
    assert plan.per_worker_batch <= 256
    # Steps, warmup and LR do not depend on the number of workers.
    assert (plan.steps_per_epoch, plan.total_steps, plan.warmup_steps) == (39, 3510, 975)
    assert plan.peak_learning_rate == 31.2
    assert f"= {world} workers x {plan.accumulation_steps} accumulation step(s) x " \
           f"{plan.per_worker_batch} per-worker batch" in out


def test_linear_scaling_rule_and_rule_is_logged():
    config, _ = cli.parse_args(["--optimizer", "sgd", "--lr-scaling", "linear",
                              "--learning-rate", "0.1", "--global-batch-size", "8192"])
    plan = p.resolve(config, 4)
    assert plan.peak_learning_rate == pytest.approx(3.2)
    assert "0.1 per 256 examples" in plan.learning_rate_rule


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--learning-rate", "0"], "--learning-rate must be > 0 (got 0.0)"),
        (["--global-batch-size", "-8"], "--global-batch-size must be > 0 (got -8)"),
        (["--epochs", "2", "--warmup-epochs", "2"], "--warmup-epochs must be in"),
        (["--momentum", "1.5"], "--momentum must be in [0, 1) (got 1.5)"),
        (["--resume"], "--resume needs --run-dir"),
        (["--step-boundaries", "9", "3"], "--step-boundaries must be increasing"),
    ],
)
def test_bad_settings_name_the_value(argv, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        cli.parse_args(argv)


OWNED = [f for f in dataclasses.fields(c.OptimizerConfig) if f.metadata["optimizers"]]


def moved_off_default(f: dataclasses.Field) -> list[str]:
    """Flags that set field ``f`` to a value other than its default."""
    flag = c.spelled(f.name)
    if isinstance(f.default, bool):
        return ["--no-" + flag[2:] if f.default else flag]
    if isinstance(f.default, str):
        return [flag, next(v for v in f.metadata["choices"] if v != f.default)]
    return [flag, str(f.default / 2 or 0.5)]


@pytest.mark.parametrize("f", OWNED, ids=[f.name for f in OWNED])
def test_a_setting_of_another_optimizer_is_refused_not_ignored(f):
    """Every optimizer setting declares who uses it; changed for another optimizer it would be
    ignored, so it is refused, with the flag and both fixes named."""
    owners = f.metadata["optimizers"]
    for other in sorted(set(c.OPTIMIZERS) - set(owners)):
        with pytest.raises(UsageError, match=re.escape(
                f"{c.spelled(f.name)} is a setting of --optimizer {' or '.join(owners)}, not "
                f"of --optimizer {other}: drop it or pass --optimizer {owners[0]}")):
            cli.parse_args(["--optimizer", other, *moved_off_default(f)])
    config, _ = cli.parse_args(["--optimizer", owners[0], *moved_off_default(f)])
    assert getattr(config.optimizer, f.name) != f.default  # where it belongs, it is taken


def test_a_preset_switched_to_another_optimizer_keeps_only_what_that_one_uses():
    """The MLPerf preset sets LARS's trust-ratio form; with --optimizer sgd that setting is
    not the user's, so it is dropped instead of refused, and the rest of the preset holds."""
    config, _ = cli.parse_args(["--preset", "resnet50-imagenet-mlperf", "--optimizer", "sgd"])
    assert config.optimizer.trust_ratio_mode == c.OptimizerConfig.trust_ratio_mode == "paper"
    assert (config.optimizer.momentum, config.job.global_batch_size) == (0.9, 3200)
    lars, _ = cli.parse_args(["--preset", "resnet50-imagenet-mlperf"])
    assert lars.optimizer.trust_ratio_mode == "decayed_grad"


def test_bad_choice_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["--optimizer", "adam"])
    assert "invalid choice: 'adam'" in capsys.readouterr().err


def test_global_batch_larger_than_the_data():
    config, _ = cli.parse_args(["--train-examples", "1000", "--global-batch-size", "2048"])
    with pytest.raises(UsageError, match="larger than the 1000 training examples"):
        p.resolve(config, 1)


def test_plot_lr_writes_a_png(tmp_path):
    path = tmp_path / "lr.png"
    main(["--plot-lr", str(path), "--world-size", "4", "--max-per-worker-batch", "512"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".lr.png*"))  # no temporary file left behind


# The numbers each preset's source gives (see the source line of each preset).
CITED = {
    "alexnet-bn-imagenet-8k": {"global_batch_size": 8192, "epochs": 100, "learning_rate": 10.0,
                               "warmup_start_lr": 1.0, "poly_power": 2.0, "momentum": 0.9,
                               "weight_decay": 5e-4, "trust_coefficient": 0.001},
    "resnet50-imagenet-32k": {"global_batch_size": 32768, "epochs": 90, "learning_rate": 31.2,
                              "warmup_epochs": 25.0, "poly_power": 2.0, "momentum": 0.9,
                              "weight_decay": 1e-4, "trust_coefficient": 0.001},
    "resnet50-imagenet-mlperf": {"global_batch_size": 3200, "epochs": 37,
                                 "learning_rate": 11.0, "warmup_epochs": 2.0,
                                 "end_learning_rate": 1e-4, "weight_decay": 5e-5,
                                 "label_smoothing": 0.1},
    "fashion-mnist": {"global_batch_size": 4096, "learning_rate": 10.0,
                      "trust_coefficient": 0.001, "poly_power": 2.0, "momentum": 0.9},
}


@pytest.mark.parametrize("name", sorted(c.PRESETS))
def test_every_preset_resolves_to_the_numbers_its_source_cites(name):
    preset = c.PRESETS[name]
    assert len(preset.source) > 40 and re.search(r"\b(19|20)\d\d\b|MLPerf", preset.source)
    config = c.preset(name)
    fields = c.flat_fields()
    for key, value in CITED[name].items():
        assert getattr(getattr(config, fields[key][0]), key) == value, (name, key)
    for key, value in CITED[name].items():  # and the source line states each of them
        if key not in ("global_batch_size", "trust_coefficient", "poly_power", "momentum"):
            continue
        shown = {"global_batch_size": f"{value // 1024}K" if value % 1024 == 0 else
                 f"{value:,}", "trust_coefficient": "eta 0.001",
                 "poly_power": "poly", "momentum": "momentum 0.9"}[key]
        assert shown in preset.source or str(value) in preset.source, (name, key, shown)
    plan = p.resolve(config, 8)
    assert plan.total_steps > 0 and plan.per_worker_batch <= (
        config.job.max_per_worker_batch or plan.per_worker_batch)


@pytest.mark.parametrize("argv,message", [
    (["--learning-rate", "inf"], "--learning-rate must be a finite number (got inf)"),
    (["--weight-decay", "nan"], "--weight-decay must be a finite number (got nan)"),
    (["--step-boundaries", "1", "inf"], "--step-boundaries must be a finite number"),
])
def test_non_finite_floats_are_refused(argv, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        cli.parse_args(argv)


def test_path_flags_are_checked_for_their_kind(tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(UsageError, match=r"--run-dir .*file.txt is a file, not a folder"):
        cli.parse_args(["--run-dir", str(a_file)])
    with pytest.raises(UsageError, match=r"--data-dir .*file.txt is a file, not a folder"):
        cli.parse_args(["--data-dir", str(a_file)])
    with pytest.raises(UsageError, match=r"--cache .* is a folder; name a file prefix"):
        cli.parse_args(["--cache", str(tmp_path)])
    with pytest.raises(UsageError, match=r"--plot-lr .* is a folder; name a file"):
        cli.parse_args(["--plot-lr", str(tmp_path)])
    with pytest.raises(UsageError, match=r"--plot-lr /dev/null is not a regular file"):
        cli.parse_args(["--plot-lr", "/dev/null"])  # (it would be replaced, not written)
    with pytest.raises(UsageError, match=r"file.txt is a file, so nothing can be made below"):
        cli.parse_args(["--run-dir", str(a_file / "run")])
    cli.parse_args(["--run-dir", str(tmp_path / "new" / "run"), "--cache", "memory"])  # fine


@pytest.mark.multiprocess
def test_planning_imports_neither_tensorflow_nor_horovod(tmp_path):
    """--dry-run and the plan need no TensorFlow; --plot-lr needs TF but not Horovod."""
    import subprocess
    import sys

    code = ("import sys; from lars_hvd.train import main; main({argv}); "
            "print(sorted({{m.split('.')[0] for m in sys.modules}} & {{'tensorflow', "
            "'horovod'}}))")
    for argv, expected in ((["--dry-run", "--preset", "resnet50-imagenet-32k"], "[]"),
                           (["--dry-run", "--world-size", "1024", "--preset",
                             "resnet50-imagenet-32k", "--hardware", "dgx1-p100"], "[]"),
                           (["--dry-run", "--world-size", "1024", "--preset",
                             "resnet50-imagenet-32k", "--hardware", "dgx1-v100",
                             "--batch-schedule", "46:65536"], "[]"),
                           (["--hardware", "list"], "[]"),
                           (["--plot-lr", str(tmp_path / "lr.png")], "['tensorflow']")):
        out = subprocess.run([sys.executable, "-c", code.format(argv=argv)], check=True,
                             capture_output=True, text=True).stdout
        assert out.strip().splitlines()[-1] == expected, out


@pytest.mark.multiprocess
def test_the_layers_state_their_rules_in_sys_modules():
    """planning/ imports neither TensorFlow nor Horovod; optim/ no Horovod and no config."""
    import subprocess
    import sys

    code = ("import sys, importlib\n"
            "for name in sys.argv[1:]: importlib.import_module(name)\n"
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'horovod') or m.startswith('lars_hvd.'))))")

    def loaded(*modules):
        return subprocess.run([sys.executable, "-c", code, *modules], check=True,
                              capture_output=True, text=True).stdout.split()

    planning = loaded("lars_hvd.planning.cli", "lars_hvd.planning.dry_run",
                      "lars_hvd.planning.cost_validation", "lars_hvd.slurm",
                      "lars_hvd.signals")
    assert not [m for m in planning if m.startswith(("tensorflow", "horovod"))], planning
    optim = loaded("lars_hvd.optim.lars", "lars_hvd.optim.lamb", "lars_hvd.optim.schedules")
    assert "tensorflow" in optim
    assert not [m for m in optim if m.startswith(("horovod", "lars_hvd.planning",
                                                  "lars_hvd.run", "lars_hvd.distributed"))]


def test_a_run_directory_of_an_older_release_resumes_by_setting_names(tmp_path):
    """plan.json keeps the config by section, and sections have been renamed (``run`` is
    ``job``): a resume compares settings by name, so an older run directory resumes, and a
    setting that differs is still named."""
    from lars_hvd.run.run_dir import check_resumable

    current = c.TrainConfig().to_dict()
    older = {("run" if section == "job" else section): values
             for section, values in current.items()}
    check_resumable(older, current, tmp_path)  # the same settings: resumable
    older["run"] = {**older["run"], "epochs": current["job"]["epochs"] + 1}
    with pytest.raises(UsageError, match=r"--epochs was \d+, now \d+"):
        check_resumable(older, current, tmp_path)
