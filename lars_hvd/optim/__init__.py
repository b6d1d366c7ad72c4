"""The optimizers a Keras user imports: LARS, LAMB, RMSprop warm-up and the LR schedules.

The rule of this package: only the algorithms, their state and their config. It imports
neither Horovod nor lars_hvd's configuration (``lars_hvd.distributed`` wraps these optimizers
for Horovod; ``lars_hvd.run.optimizer_factory`` builds them from flags). Its modules import
TensorFlow; this file imports it only when a name is first used, so that ``modes`` (the
choice lists, read by the flags) stays TensorFlow-free.

    from lars_hvd.optim import LARS, LAMB, RMSpropWarmup, LinearWarmup, warmup_then_decay
"""

from __future__ import annotations

import importlib

_NAMES = {
    "LARS": "lars", "trust_ratio": "lars",
    "LAMB": "lamb",
    "RMSpropWarmup": "rmsprop_warmup",
    "LinearWarmup": "schedules", "PerOptimizerStep": "schedules",
    "warmup_then_decay": "schedules",
}
__all__ = list(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f"lars_hvd.optim.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'lars_hvd.optim' has no attribute {name!r}")
