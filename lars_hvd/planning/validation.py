"""The checks of a training config: each field against its declaration
(``config.flag``), the optimizer settings the chosen ``--optimizer`` does not use, and the
rules that span flags. ``validate`` raises one UsageError naming every value and its fix."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from lars_hvd.errors import UsageError
from lars_hvd.planning.config import (
    OptimizerConfig,
    TrainConfig,
    flat_fields,
    owners,
    spelled,
    uses,
)


def foreign_settings(config: TrainConfig) -> list[str]:
    """A message for each optimizer setting changed from its default that the chosen
    ``--optimizer`` does not use (it would be ignored)."""
    o = config.optimizer
    return [f"{spelled(f.name)} is a setting of --optimizer {' or '.join(owners(f))}, not of "
            f"--optimizer {o.optimizer}: drop it or pass --optimizer {owners(f)[0]}"
            for f in dataclasses.fields(OptimizerConfig)
            if not uses(f, o.optimizer) and getattr(o, f.name) != f.default]


def field_errors(config: TrainConfig) -> list[str]:
    """Every field against its own declaration: finite floats, bounds, path kinds."""
    errors = []
    for name, (section, f, _) in flat_fields().items():
        value = getattr(getattr(config, section), name)
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            errors.append(f"{spelled(name)} must be a finite number (got "
                          f"{' '.join(map(str, values))})")
            continue
        if f.metadata["bounds"] and (error := f.metadata["bounds"].error(name, value)):
            errors.append(error)
        if f.metadata["path"]:
            errors += path_errors(name, value, f.metadata["path"])
    return errors


def path_errors(flag_name: str, path: str | None, kind: str) -> list[str]:
    """Why ``path`` cannot serve as ``--flag-name`` (a ``folder``, ``file`` or ``file
    prefix``), or nothing."""
    if path is None or (kind == "file prefix" and path == "memory"):
        return []
    path, flag_text = Path(path), f"{spelled(flag_name)} {path}"
    if kind == "folder" and path.exists() and not path.is_dir():
        return [f"{flag_text} is a file, not a folder; name a folder (or a new path)"]
    if kind in ("file", "file prefix") and path.is_dir():
        return [f"{flag_text} is a folder; name a file{' prefix' if 'prefix' in kind else ''} "
                f"inside it instead"]
    if kind == "file" and path.exists() and not path.is_file():
        return [f"{flag_text} is not a regular file (a device or a pipe); name a file"]
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return [f"{flag_text}: {parent} is a file, so nothing can be made below it; choose "
                f"another path"]
    return []


def validate(config: TrainConfig) -> None:
    """Raises UsageError naming the value and the fix for a setting that cannot work: a
    field outside its declaration, or a combination that the fields alone cannot refuse."""
    r, s, o = config.job, config.schedule, config.optimizer
    checks = [
        (not (o.rmsprop_warmup_epochs and o.nesterov),
         "--rmsprop-warmup-epochs has no Nesterov form: drop --nesterov"),
        (o.rmsprop_warmup_epochs <= r.epochs,
         f"--rmsprop-warmup-epochs {o.rmsprop_warmup_epochs:g} is past --epochs {r.epochs}: "
         f"the run would end before it is momentum SGD; lower it"),
        (not (o.rmsprop_warmup_epochs and r.batch_schedule),
         "--rmsprop-warmup-epochs counts micro-batches of one accumulation, and a "
         "--batch-schedule changes it: use one of the two"),
        (0 <= s.warmup_epochs < r.epochs,
         f"--warmup-epochs must be in [0, --epochs={r.epochs}) (got {s.warmup_epochs})"),
        (not (r.resume and r.run_dir is None),
         "--resume needs --run-dir: the run to continue"),
        (not (r.elastic and config.model.bn_group > 1),
         f"--bn-group {config.model.bn_group} needs a fixed world (its process sets are made "
         f"at start-up) and --elastic changes it: drop one of the two"),
        (not (r.elastic and r.run_dir is None),
         "--elastic needs --run-dir: a folder every worker (also one that joins later) "
         "agrees on"),
    ]
    errors = (field_errors(config) or foreign_settings(config)
              or [message for ok, message in checks if not ok])
    if errors:
        raise UsageError("invalid configuration: " + "; ".join(errors) + ".")
