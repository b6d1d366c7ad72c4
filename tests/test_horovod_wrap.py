"""hvd.DistributedOptimizer rebuilds LARS from get_config(): nothing may be lost (1 process)."""

from __future__ import annotations

import pytest
import tensorflow as tf
from test_serialization import NON_DEFAULT, paper_schedule

from lars_hvd import distributed
from lars_hvd.optim.lars import LARS

pytestmark = pytest.mark.core

distributed.init(pin_gpu=False, set_threads=False)  # a world of size 1


def test_wrapped_lars_keeps_the_whole_config():
    original = LARS(**NON_DEFAULT)
    wrapped = distributed.distributed_optimizer(original, backward_passes_per_step=2)
    assert wrapped is not original  # Horovod discards the instance ...
    assert isinstance(wrapped, LARS) and type(wrapped).__name__ == "LARS"
    config, expected = wrapped.get_config(), original.get_config()
    for key in NON_DEFAULT:  # ... so everything must come back through the config
        if key != "name":
            assert config[key] == expected[key], key
    assert wrapped.exclude_from_weight_decay == ["batch_normalization", "bias"]
    assert wrapped.exclude_from_layer_adaptation == ["batch_normalization"]
    assert wrapped.exclude_low_rank is False


def test_wrapped_lars_keeps_its_schedule():
    wrapped = distributed.distributed_optimizer(LARS(learning_rate=paper_schedule()))
    for step in (0, 5, 10, 60):
        assert float(wrapped._learning_rate(step)) == pytest.approx(
            float(paper_schedule()(step))
        )


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_bad_accumulation_steps(bad):
    with pytest.raises(ValueError, match=f"backward_passes_per_step={bad!r}"):
        distributed.distributed_optimizer(LARS(), backward_passes_per_step=bad)


def test_threads_split_among_local_ranks():
    assert distributed.threads_per_rank(2, cores=2) == 1
    assert distributed.threads_per_rank(1, cores=2) == 2
    assert distributed.threads_per_rank(8, cores=2) == 1  # never 0
    assert distributed.threads_per_rank(4, cores=96) == 24


def test_callbacks_broadcast_first_then_average_metrics():
    names = [type(cb).__name__ for cb in distributed.callbacks()]
    assert names == ["BroadcastGlobalVariablesCallback", "MetricAverageCallback"]
    assert distributed.size() == 1 and distributed.is_rank0()
    assert float(distributed.allreduce(tf.constant(3.0))) == 3.0  # mean of one rank


def test_horovods_allreduce_is_traced_as_written_and_lars_hvd_converted():
    """AutoGraph calls Horovod's functions as written (each process traces its first step
    sooner) and still converts lars_hvd's own, which may branch on tensors."""
    import horovod.tensorflow as hvd_tf
    from tensorflow.python.autograph.impl import conversion

    from lars_hvd.optim import rules

    assert conversion.is_allowlisted(hvd_tf.allreduce)
    assert conversion.is_allowlisted(hvd_tf.mpi_ops._allreduce)
    assert not conversion.is_allowlisted(rules.trust_ratio)
