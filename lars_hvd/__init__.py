"""lars_hvd: LARS for Keras 2, trained at a fixed global batch with Horovod.

``from lars_hvd import LARS`` imports TensorFlow (lazily, on first use), so that
``python -m lars_hvd.stack`` can report a broken stack instead of crashing on import.
"""

__version__ = "0.1.0"
__all__ = ["LARS", "LinearWarmup"]  # noqa: F822 (imported lazily by __getattr__)


def __getattr__(name: str):
    if name == "LARS":
        from lars_hvd.optimizer import LARS

        return LARS
    if name == "LinearWarmup":
        from lars_hvd.schedules import LinearWarmup

        return LinearWarmup
    raise AttributeError(f"module 'lars_hvd' has no attribute {name!r}")
