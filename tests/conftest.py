"""Shared test setup: this folder is on sys.path (for lars_reference), TF is quiet, and
lars_hvd is imported before any test imports TensorFlow (Keras 2 on the current stack).

Tiers by marker (declared in pytest.ini; docs/testing.md):
- ``multiprocess``: the test starts a process (a Python interpreter, horovodrun, mpirun, a
  shell script, a cluster). A test without it that starts one fails: an audit hook refuses
  the start (``make test-fast`` runs the others and must start nothing).
- ``cluster``: Slurm or two hosts (also ``multiprocess``).
- ``core``: run on the second stack too (``make test-core STACK=current``).

A test marked ``fashion_mnist`` needs Debian's dataset-fashion-mnist: without it the test is
skipped with the reason, and under ``CI`` it fails (CI installs the package, so a skip there
would hide a broken install).

Each test's CPU seconds (its process and the processes it waited for) go into its JUnit XML
record as the property ``cpu_seconds``, for tests/durations.py."""

import contextlib
import os
import resource
import sys

import pytest

import lars_hvd  # noqa: F401  (first: on the current stack it sets TF_USE_LEGACY_KERAS)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Open MPI's ranks wait in a collective by spinning; the suite runs more ranks than this
# machine has cores (two workers, each job 2 ranks), so a waiting rank yields its core
# instead (test_distributed.py's MPI job: 24.6 -> 19.6 CPU-s alone). What is checked is the
# same; the benchmarks, run outside the tests, keep Open MPI's default.
os.environ.setdefault("OMPI_MCA_mpi_yield_when_idle", "1")


def _share_the_cores_among_workers() -> None:
    """A pytest-xdist worker is one of N test processes on this machine: its TensorFlow
    pools get cores / N threads, as a rank's do among the ranks on one machine, and the
    runtime starts now so that they stay so (a test's ``distributed.init`` cannot resize
    them). Without workers, TensorFlow is left to the tests."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    import tensorflow as tf

    from lars_hvd import distributed

    threads = distributed.threads_per_rank(workers)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.constant(0)  # the runtime starts with these pools


_share_the_cores_among_workers()

# Audit events of every way Python starts a process (subprocess, os.system, fork, spawn, exec).
_PROCESS_EVENTS = frozenset({"subprocess.Popen", "os.system", "os.fork", "os.forkpty",
                             "os.posix_spawn", "os.spawn", "os.exec"})
# What libraries run once to learn about the machine (platform.processor(): uname -p;
# numpy.testing's first import: lscpu; matplotlib's first figure on a machine builds its font
# cache with fc-list), whichever test comes first: not a test's process.
_INTROSPECTION = frozenset({"uname", "lscpu", "fc-list"})
_guarded = None  # the test now running when it may not start a process


def _refuse_processes(event: str, args: tuple) -> None:
    item = _guarded
    if item is not None and event in _PROCESS_EVENTS and not _introspection(event, args):
        item.started_process = f"{event} {args[:2]!r}"
        raise RuntimeError(f"{item.nodeid} starts a process ({event}) but is not marked "
                           f"multiprocess: mark it (pytest.mark.multiprocess), or keep it "
                           f"in this process")


def _introspection(event: str, args: tuple) -> bool:
    argv = args[1] if event == "subprocess.Popen" and len(args) > 1 else None
    return isinstance(argv, (list, tuple)) and bool(argv) and \
        os.path.basename(str(argv[0])) in _INTROSPECTION


sys.addaudithook(_refuse_processes)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    item.cpu_at_start = _cpu_seconds()
    _needs_fashion_mnist(item)
    with _guard(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    with _guard(item):
        result = yield
    started = getattr(item, "started_process", None)
    if started:  # also when the test caught the refusal
        pytest.fail(f"not marked multiprocess, but started a process: {started}",
                    pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item):
    try:
        return (yield)
    finally:  # (read by tests/durations.py from --junitxml)
        item.user_properties.append(
            ("cpu_seconds", round(_cpu_seconds() - item.cpu_at_start, 2)))


def _cpu_seconds() -> float:
    """CPU seconds of this process and of the processes it waited for (user + system)."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                        resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@contextlib.contextmanager
def _guard(item):
    """Process starts are refused inside, unless ``item`` is marked multiprocess."""
    global _guarded
    if item.get_closest_marker("multiprocess") is None:
        _guarded = item
    try:
        yield
    finally:
        _guarded = None


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("cluster") and not item.get_closest_marker("multiprocess"):
            raise pytest.UsageError(f"{item.nodeid} is marked cluster but not multiprocess")


def _needs_fashion_mnist(item):
    if item.get_closest_marker("fashion_mnist") is None:
        return
    from lars_hvd.data import fashion_mnist

    if fashion_mnist.default_dir().is_dir():
        return
    why = (f"dataset-fashion-mnist is not installed ({fashion_mnist.default_dir()} is missing; "
           f"make install installs it)")
    if os.environ.get("CI"):
        pytest.fail(f"CI must run this test, but: {why}", pytrace=False)
    pytest.skip(why)
