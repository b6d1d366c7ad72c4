"""Every Horovod call of lars_hvd lives here.

The optimizer (``lars_hvd.optim.lars``) knows nothing of distribution; this module initializes
Horovod, sizes TensorFlow's thread pools to the cores a rank owns, pins GPUs, wraps any Keras
optimizer in ``hvd.DistributedOptimizer`` and gives the callbacks every Horovod Keras job
needs, in the order they must run. Run under ``horovodrun -np N`` (or ``mpirun``), or as a
single process, where Horovod is a world of size 1.
"""

from __future__ import annotations

import os

import tensorflow as tf

from lars_hvd import compat
from lars_hvd.errors import UsageError
from lars_hvd.stack import check_horovod_tensorflow, check_keras, check_tf_keras

check_keras(tf.keras)
check_tf_keras(tf.__version__)
check_horovod_tensorflow()

import horovod.tensorflow as hvd_tf  # noqa: E402  (after the stack checks)
import horovod.tensorflow.keras as hvd  # noqa: E402

compat.trace_horovod_as_written()  # Horovod: its allreduce is traced as written
_CONFIGURED = False
_BN_SET = None  # the process set whose ranks share this rank's batch-norm statistics
_BN_GROUP = 1  # its size, as init was asked (process sets are fixed at hvd.init)


def init(pin_gpu: bool = True, set_threads: bool = True, *, bn_group: int = 1,
         hierarchical_allreduce: bool = False) -> None:
    """Initializes Horovod, then TF's threads and device visibility for this rank.

    Must run before TensorFlow creates its runtime (before the first op), because thread
    pools and visible devices are fixed then. Calling it again is a no-op.

    Args:
      bn_group: workers whose batch norm shares statistics (``--bn-group``): groups of this
        many consecutive ranks, each a Horovod process set (1: none; the world: all).
      hierarchical_allreduce: set ``HOROVOD_HIERARCHICAL_ALLREDUCE`` (read by ``hvd.init``).
    """
    global _CONFIGURED, _BN_SET, _BN_GROUP
    if _CONFIGURED:
        return
    if hierarchical_allreduce:
        # Horovod: NCCL reduces inside each node, allreduces across nodes, then broadcasts
        # inside; read once, by hvd.init (allreduce_note says whether this build honours it).
        os.environ["HOROVOD_HIERARCHICAL_ALLREDUCE"] = "1"
    # Horovod: initialize the communicator (MPI or Gloo, as horovodrun chose); with batch-norm
    # groups, their process sets are added once the world size is known.
    hvd.init(process_sets="dynamic" if bn_group > 1 else None)
    _BN_SET, _BN_GROUP = bn_process_set(bn_group), bn_group
    if set_threads:
        configure_threads(hvd.local_size())
    if pin_gpu:
        pin_gpu_to_local_rank(hvd.local_rank())
    _CONFIGURED = True


def threads_per_rank(local_size: int, cores: int | None = None) -> int:
    """Cores this rank may use: the machine's cores split among the ranks on it (>= 1)."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, int(cores or 1) // max(1, local_size))


def configure_threads(local_size: int) -> int:
    """Sizes TF's intra-/inter-op pools (and OpenMP's) to cores / local size.

    Returns:
      The number of threads each pool gets.
    """
    threads = threads_per_rank(local_size)
    # Horovod: several ranks share this machine's cores; unbounded pools would thrash.
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        # TF already ran an op in this process (a notebook, a test): its pools are fixed.
        if tf.config.threading.get_intra_op_parallelism_threads() not in (0, threads):
            print(f"lars_hvd: TensorFlow is already initialized; its thread pools keep their "
                  f"size instead of {threads}", flush=True)
    return threads


def pin_gpu_to_local_rank(local_rank: int) -> None:
    """Makes only GPU ``local_rank`` visible to this process, with memory growth."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    # Horovod: one GPU per process, chosen by the rank's index on its node.
    tf.config.set_visible_devices(gpus[local_rank % len(gpus)], "GPU")


def bn_process_set(group: int):
    """The process set of this rank's batch-norm group: ``group`` consecutive ranks (on one
    node when ``group`` <= the ranks a node runs), added in the same order on every rank;
    Horovod's global set for the whole world; None for 1, or a group that does not divide
    the world (the plan refuses it, naming the fix)."""
    world = hvd.size()
    if group <= 1 or world % group:
        return None
    if group == world:
        return hvd.global_process_set
    # Horovod: every rank adds every set, in the same order.
    sets = [hvd.add_process_set(list(range(first, first + group)))
            for first in range(0, world, group)]
    return sets[hvd.rank() // group]


@tf.keras.utils.register_keras_serializable(package="lars_hvd")
class GroupBatchNormalization(tf.keras.layers.BatchNormalization):
    """Batch norm whose batch moments are those of this rank's ``--bn-group``: the group's
    mean and E[x^2] in one allreduce, whose gradient is the allreduce of the gradients, so
    the backward pass sees the group's statistics exactly. Keras's non-fused kernel (the
    fused one computes its moments inside); outside a group, Keras's own batch norm."""

    def __init__(self, **kwargs):
        super().__init__(**{**kwargs, "fused": False})

    def _calculate_mean_and_var(self, inputs, reduction_axes, keep_dims, mask=None):
        mean, variance = super()._calculate_mean_and_var(inputs, reduction_axes, keep_dims,
                                                         mask=mask)
        if _BN_SET is None:
            return mean, variance
        # The group's [E[x], E[x^2]], averaged over its workers (equal micro-batches).
        moments = group_average(tf.stack([mean, variance + tf.square(mean)]))
        group_mean, mean_of_square = tf.unstack(moments)
        return group_mean, mean_of_square - tf.square(group_mean)


def group_average(value):
    """The mean of ``value`` over this rank's batch-norm group (``init(bn_group=...)``)."""
    # Horovod: one allreduce within the group's process set only.
    return hvd_tf.allreduce(value, op=hvd_tf.Average, process_set=_BN_SET)


def synchronize_batch_norm(model: tf.keras.Model, group: int) -> tf.keras.Model:
    """``model`` with each BatchNormalization a ``GroupBatchNormalization`` over this rank's
    ``--bn-group`` of ``group`` workers (same config and weights: checkpoints stay
    compatible); ``model`` itself for a group of 1. Raises RuntimeError for a group other
    than the one ``init`` made the process sets for."""
    if group <= 1:
        return model
    if group != _BN_GROUP or _BN_SET is None:
        raise RuntimeError(f"batch-norm groups of {group} asked for, but distributed.init made "
                           f"them for {_BN_GROUP} (process sets are fixed at hvd.init): pass "
                           f"bn_group={group} to its first call")

    def clone(layer):
        if type(layer) is tf.keras.layers.BatchNormalization:
            return GroupBatchNormalization(**layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    synced = tf.keras.models.clone_model(model, clone_function=clone)
    # (clone_model hands a nested model to clone() whole, so its batch norm stays per worker)
    if missed := [layer.name for layer in synced.submodules
                  if type(layer) is tf.keras.layers.BatchNormalization]:
        raise ValueError(f"--bn-group reaches the batch norm of {model.name}'s own layers "
                         f"only, not {missed} inside a nested model: build the model flat.")
    synced.set_weights(model.get_weights())
    return synced


def allreduce_note() -> str:
    """What Horovod 0.28.1 makes of ``HOROVOD_HIERARCHICAL_ALLREDUCE`` here ("" when unset):
    its ``operations.cc`` honours it only in a build with NCCL, under the MPI controller,
    for GPU tensors, across more than one node; elsewhere it keeps its flat allreduce."""
    if os.environ.get("HOROVOD_HIERARCHICAL_ALLREDUCE", "0").strip() in ("", "0"):
        return ""
    asked = "allreduce                hierarchical asked for, but"
    if not hvd.mpi_enabled():
        return (f"{asked} Horovod has it only under MPI (mpirun, horovodrun --mpi): Gloo keeps "
                f"its flat allreduce")
    if not hvd.nccl_built():
        return (f"{asked} this Horovod has no NCCL (a CPU build): it keeps its flat allreduce "
                f"(docs/scaling-out.md)")
    if hvd.size() == hvd.local_size():
        return f"{asked} one node: Horovod keeps its flat allreduce"
    return (f"allreduce                hierarchical: NCCL inside each node of "
            f"{hvd.local_size()}, then across {hvd.size() // hvd.local_size()} nodes")


def rank() -> int:
    return hvd.rank()


def size() -> int:
    return hvd.size()


def is_rank0() -> bool:
    """True on the one process that prints, logs and writes checkpoints."""
    return hvd.rank() == 0


def distributed_optimizer(
    optimizer: tf.keras.optimizers.Optimizer,
    *,
    backward_passes_per_step: int = 1,
    fp16_allreduce: bool = False,
) -> tf.keras.optimizers.Optimizer:
    """Wraps ``optimizer`` so that gradients are averaged over all ranks before it applies them.

    Horovod rebuilds the optimizer from ``optimizer.get_config()`` (the instance passed in is
    discarded), so everything the optimizer needs must be in its config.

    Args:
      optimizer: any Keras 2 optimizer, e.g. ``lars_hvd.LARS``.
      backward_passes_per_step: gradient-accumulation steps: each rank sums this many
        micro-batch gradients locally, then one allreduce and one optimizer step follow.
        The accumulated gradient is divided by this number, so the step sees the *mean*
        gradient of the global batch (what LARS's trust ratio must see). Note that Keras's
        ``optimizer.iterations`` still counts every micro-batch.
      fp16_allreduce: compress gradients to float16 for the allreduce (half the bytes).

    Returns:
      The wrapped optimizer, an instance of a subclass of ``type(optimizer)`` with the same
      name; use it in ``model.compile`` / ``model.fit``, not with a bare ``apply_gradients``
      (Horovod averages in ``compute_gradients``).
    """
    if int(backward_passes_per_step) != backward_passes_per_step or backward_passes_per_step < 1:
        raise ValueError(
            "backward_passes_per_step must be an integer >= 1. "
            f"Received: backward_passes_per_step={backward_passes_per_step!r}."
        )
    # Horovod: float16 compression halves allreduce traffic; gradients are cast back after.
    compression = hvd.Compression.fp16 if fp16_allreduce else hvd.Compression.none
    # Horovod: allreduce-average gradients in compute_gradients; with accumulation, average
    # the accumulated sum too, so one step sees the mean gradient of the whole global batch.
    return hvd.DistributedOptimizer(
        optimizer,
        compression=compression,
        backward_passes_per_step=int(backward_passes_per_step),
        average_aggregated_gradients=True,
    )


def broadcast_model(model: tf.keras.Model, root_rank: int = 0) -> None:
    """Overwrites every rank's model variables with ``root_rank``'s.

    Call before the first step: Horovod's broadcast callback only runs after the first
    batch, so the first step would otherwise average gradients taken at different weights.
    """
    # Horovod: every rank starts from the same weights (rank 0's).
    hvd_tf.broadcast_variables(model.variables, root_rank=root_rank)


def broadcast_variables(variables, root_rank: int = 0) -> None:
    """Overwrites ``variables`` on every rank with ``root_rank``'s values."""
    # Horovod: rank 0 restored a checkpoint; the others take its state.
    hvd_tf.broadcast_variables(variables, root_rank=root_rank)


def rank0_decides(decide):
    """Runs ``decide()`` on rank 0 only; returns its result on every rank.

    If rank 0 meets a UsageError (a refused run directory, an unreadable checkpoint), every
    rank raises it with rank 0's message, instead of the others waiting forever at their
    next collective.
    """
    outcome = None
    if is_rank0():
        try:
            outcome = ("ok", decide())
        except UsageError as err:
            outcome = ("error", str(err))
    # Horovod: share rank 0's decision (or refusal) with every rank.
    status, value = broadcast_object(outcome)
    if status == "error":
        raise UsageError(value)
    return value


def broadcast_object(obj, root_rank: int = 0):
    """``root_rank``'s picklable ``obj``, on every rank."""
    return hvd_tf.broadcast_object(obj, root_rank=root_rank)


def allgather_object(obj) -> list:
    """Every rank's picklable ``obj``, in rank order, on every rank."""
    return hvd_tf.allgather_object(obj)


def elastic_state(model, **attributes):
    """Elastic Horovod's in-memory copy of model and optimizer (plus ``attributes``), which
    a reset rolls back to and a new worker receives."""
    return hvd.elastic.KerasState(model, **attributes)


def elastic_run(function):
    """``function(state)``, re-run by elastic Horovod after every change of the worker set."""
    return hvd.elastic.run(function)


def callbacks(root_rank: int = 0) -> list[tf.keras.callbacks.Callback]:
    """The Horovod callbacks, in the order Keras must run them (before any user callback).

    1. Broadcast rank 0's variables (model and optimizer slots) after the first batch, so a
       model restored or initialized on rank 0 only is everyone's model.
    2. Average the epoch's metrics over ranks before anything (logging, checkpoints) reads them.
    """
    return [
        # Horovod: make all ranks' model and optimizer state rank 0's.
        hvd.callbacks.BroadcastGlobalVariablesCallback(root_rank),
        # Horovod: log metrics averaged over all ranks, not rank 0's shard alone.
        compat.metric_average_callback(hvd),
    ]


def allreduce(value, *, average: bool = True, fp16: bool = False, name: str | None = None):
    """The mean (or sum) of ``value`` over all ranks, optionally sent as float16."""
    # Horovod: fp16 compression halves the bytes on the wire; the result is cast back.
    return hvd_tf.allreduce(value, op=hvd_tf.Average if average else hvd_tf.Sum,
                            compression=hvd.Compression.fp16 if fp16 else hvd.Compression.none,
                            name=name)


def allreduce_sum(value):
    """The sum of ``value`` over all ranks."""
    return hvd_tf.allreduce(value, op=hvd_tf.Sum)


def allreduce_mean_list(values) -> list:
    """The mean over all ranks of each tensor in ``values`` (one fused grouped allreduce)."""
    return hvd_tf.grouped_allreduce([tf.convert_to_tensor(v) for v in values],
                                    op=hvd_tf.Average)
