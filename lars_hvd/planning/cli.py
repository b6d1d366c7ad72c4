"""The command line of ``python -m lars_hvd.train``: one flag per config field (``config``)
plus the command's own flags (``--preset``, ``--dry-run``, ``--world-size``, ``--hardware``,
``--network-gbits``, ``--sharp``, ``--plot-lr``), and the checks of those."""

from __future__ import annotations

import argparse
import dataclasses
import typing

from lars_hvd.errors import UsageError
from lars_hvd.planning.config import TrainConfig, flat_fields, preset, spelled, with_values
from lars_hvd.planning.presets import PRESETS
from lars_hvd.planning.validation import path_errors, validate


def build_parser() -> argparse.ArgumentParser:
    """The CLI: one flag per config field; defaults (before any preset) shown in --help."""
    parser = argparse.ArgumentParser(
        prog="python -m lars_hvd.train",
        description="Train with LARS under Horovod at a fixed global batch. Run as is for one "
                    "process, or as `horovodrun -np N python -m lars_hvd.train ...`.",
    )
    parser.add_argument("--preset", default="fashion-mnist", choices=sorted(PRESETS),
                        help="a whole experiment; flags given here override it "
                             "(default: fashion-mnist)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved plan and exit (no data, no Horovod job)")
    parser.add_argument("--world-size", type=int, default=None,
                        help="with --dry-run: plan for this many workers (default: 1)")
    parser.add_argument("--hardware", metavar="PROFILE", default=None,
                        help="with --dry-run: project step, epoch and run time on this "
                             "hardware (`--hardware list` shows the profiles; docs/cost.md)")
    parser.add_argument("--network-gbits", type=float, default=None,
                        help="with --hardware: a node's network in Gb/s, all its adapters "
                             "(default: the profile's)")
    parser.add_argument("--sharp", action="store_true",
                        help="with --hardware: NCCL's CollNet on the fabric's SHARP in-network "
                             "reduction where faster (a cluster enables it with "
                             "NCCL_COLLNET_ENABLE=1 and NVIDIA's SHARP plugin; --hardware list "
                             "says which profiles have it)")
    parser.add_argument("--plot-lr", metavar="FILE.png", default=None,
                        help="draw the resolved learning-rate schedule to FILE.png and exit")
    groups = {}
    for name, (section, f, hint) in flat_fields().items():
        group = groups.setdefault(section, parser.add_argument_group(section))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        # Only flags actually given end up in the namespace, so they can override a preset.
        kwargs = {"dest": name, "default": argparse.SUPPRESS,
                  "help": f"{f.metadata['help']} (default: {shown})"}
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        base = _base_type(hint)
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif base is tuple:
            kwargs.update(type=float, nargs="+")
        else:
            kwargs["type"] = base
        group.add_argument(spelled(name), **kwargs)
    return parser


def _base_type(hint):
    if typing.get_origin(hint) is tuple:
        return tuple
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def parse_args(argv=None) -> tuple[TrainConfig, argparse.Namespace]:
    """Parses the command line: the preset first, then the flags that were given. Raises
    UsageError for a setting that cannot work (``validate``) or a command flag out of place
    (``check_command``)."""
    args = build_parser().parse_args(argv)
    fields = flat_fields()
    overrides = {k: tuple(v) if isinstance(v, list) else v
                 for k, v in vars(args).items() if k in fields}
    # A preset's settings of another optimizer than the --optimizer given do not carry over.
    config = with_values(preset(args.preset, overrides.get("optimizer")), overrides)
    validate(config)
    check_command(args)
    return config, args


def check_command(args: argparse.Namespace) -> None:
    """The command's own flags (not settings of the run): each where it belongs."""
    if args.hardware != "list" and (args.hardware or args.network_gbits is not None
                                    or args.sharp) and not args.dry_run:
        raise UsageError("--hardware, --network-gbits and --sharp project a --dry-run; add "
                         "--dry-run (or drop them to train).")
    if args.sharp and args.hardware in (None, "list"):
        raise UsageError("--sharp prices a projection; add --hardware PROFILE (one with "
                         "SHARP: --hardware list).")
    if args.network_gbits is not None and not args.network_gbits > 0:
        raise UsageError(f"--network-gbits must be > 0 (got {args.network_gbits:g}).")
    if args.world_size is not None and not (args.dry_run or args.plot_lr):
        raise UsageError("--world-size plans a --dry-run; a real run takes its size "
                         "from horovodrun/mpirun.")
    if args.world_size is not None and args.world_size < 1:
        raise UsageError(f"--world-size must be >= 1 (got {args.world_size}).")
    if args.plot_lr and (errors := path_errors("plot_lr", args.plot_lr, "file")):
        raise UsageError(errors[0] + ".")
