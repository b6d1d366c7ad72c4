"""launch/slurm.sbatch on a real two-node Slurm cluster (tests/slurm_cluster.sh), submitted
as a user submits it: training across both nodes through srun --mpi=pmix and through mpirun,
a job signalled mid-epoch that requeues itself and ends as an uninterrupted one does, and a
killed rank.

Needs root and Debian's Slurm packages (CI installs them; elsewhere the tests skip with the
reason, and under CI a skip is a failure).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from lars_hvd import horovodrun
from lars_hvd.data import fashion_mnist

pytestmark = [pytest.mark.multiprocess, pytest.mark.cluster]

REPO = Path(__file__).resolve().parent.parent
CLUSTER = REPO / "tests" / "slurm_cluster.sh"
# The default job, small and deterministic: 32 optimizer steps an epoch.
# An epoch takes about a second here: the ranks agree on signals every 0.1 s (the default,
# 1 s, would often see a signal sent inside epoch 2 only at its last step).
FLAGS = ["--train-examples", "16384", "--global-batch-size", "512", "--epochs", "3",
         "--warmup-epochs", "1", "--deterministic", "--signal-check-seconds", "0.1",
         "--eval-examples", "2000"]
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL")


def unavailable() -> str | None:
    if not fashion_mnist.default_dir().is_dir():
        return "dataset-fashion-mnist is not installed"
    check = subprocess.run(["bash", str(CLUSTER), "check"], capture_output=True, text=True,
                           check=False)
    return None if check.returncode == 0 else (check.stdout + check.stderr).strip()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = unavailable()
    if why and os.environ.get("CI"):
        pytest.fail(f"CI must run the Slurm tests, but: {why}")
    if why:
        pytest.skip(why)
    state = tmp_path_factory.mktemp("slurm")
    try:  # (a cluster that failed to come up is taken down too)
        subprocess.run(["bash", str(CLUSTER), "up", str(state)], check=True)
        yield Cluster(state, tmp_path_factory.mktemp("jobs"))
    finally:
        subprocess.run(["bash", str(CLUSTER), "down", str(state)], check=False)


@pytest.fixture(autouse=True)
def cancel_what_is_left(request):
    """A failed test's jobs are cancelled, not left training beside the next tests."""
    yield
    if "cluster" in request.fixturenames:
        cluster = request.getfixturevalue("cluster")
        if cluster.submitted:
            subprocess.run(["scancel", *map(str, cluster.submitted)], env=cluster.env,
                           capture_output=True, check=False)


class Cluster:
    def __init__(self, state: Path, jobs: Path):
        self.state, self.jobs = state, jobs
        self.submitted: list[int] = []
        self.env = {**os.environ, "SLURM_CONF": str(state / "slurm.conf"),
                    "LARS_HVD_PYTHON": str(horovodrun.BIN / "python"),
                    "TF_CPP_MIN_LOG_LEVEL": "2"}
        for name in [n for n in self.env if n.startswith(("SLURM_", "HOROVOD_"))]:
            if name != "SLURM_CONF":
                del self.env[name]

    def submit(self, *sbatch_args: str, train: list[str], launcher: list[str] = ()) -> int:
        """``sbatch ... launch/slurm.sbatch [LAUNCHER] -- TRAIN`` from the repository (where
        a user submits it), the job working in this test's own folder."""
        out = subprocess.run(
            ["sbatch", "--parsable", "-N2", "--ntasks-per-node=1", f"--chdir={self.jobs}",
             f"--output={self.jobs}/job-%j.out", *sbatch_args, "launch/slurm.sbatch",
             *launcher, "--", *train],
            cwd=REPO, env=self.env, capture_output=True, text=True, check=True).stdout
        self.submitted.append(int(out.strip().split(";")[0]))
        return self.submitted[-1]

    def job(self, job: int) -> dict[str, str]:
        text = subprocess.run(["scontrol", "show", "job", str(job)], env=self.env,
                              capture_output=True, text=True, check=True).stdout
        return dict(re.findall(r"(\w+)=(\S*)", text))

    def wait(self, job: int, *, timeout: float = 300, done=FINAL) -> dict[str, str]:
        """Waits until the job's state is one of ``done``; returns ``scontrol show job``."""
        return self.wait_until(job, lambda info: info["JobState"] in done, timeout)

    def wait_until(self, job: int, ready, timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            info = self.job(job)
            if ready(info):
                return info
            assert time.monotonic() < deadline, (info, self.evidence(job))
            time.sleep(0.5)

    def output(self, job: int) -> str:
        path = self.jobs / f"job-{job}.out"
        return path.read_text() if path.exists() else ""

    def evidence(self, job: int) -> str:
        """What a failed assertion shows: the end of the job's output, then what Slurm's
        daemons logged of the job (their logs go with the cluster at teardown)."""
        mentions = re.compile(rf"JobId={job}\b|StepId={job}\.|\[{job}\.|job {job}\b")
        logged = [f"{log.name}: {line}" for log in sorted(self.state.glob("slurm*.log"))
                  for line in log.read_text(errors="replace").splitlines()
                  if mentions.search(line)]
        return (self.output(job)[-4000:] + f"\n== Slurm's logs of job {job}:\n"
                + "\n".join(logged[-60:]))

    def run_dir(self, job: int) -> Path:
        return self.jobs / "runs" / f"slurm-{job}"

    def signal(self, job: int, name: str) -> None:
        subprocess.run(["scancel", f"--signal={name}", str(job)], env=self.env, check=True)


def digest(output: str) -> str:
    found = re.findall(r"replicas agree: trained weights bitwise identical on all 2 workers "
                       r"\(sha256 (\w+)\)", output)
    assert found, output[-4000:]
    return found[-1]


def python_after(path: Path, shell: str) -> Path:
    """An interpreter for ``--python``: runs the ``shell`` line, then the test's Python."""
    path.write_text(f'#!/bin/sh\n{shell}\nexec {horovodrun.BIN / "python"} "$@"\n')
    path.chmod(0o755)
    return path


def wait_for_file(path: Path, cluster: Cluster, job: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, cluster.evidence(job)
        time.sleep(0.05)


@pytest.fixture(scope="module")
def uninterrupted(cluster) -> str:
    job = cluster.submit(train=FLAGS)
    info = cluster.wait(job)
    out = cluster.output(job)
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), cluster.evidence(job)
    return out


def test_sbatch_trains_across_both_nodes_through_srun(uninterrupted):
    out = uninterrupted
    assert "workers                  lhvd-s1 (rank 0), lhvd-s2 (rank 1)" in out, out[-4000:]
    assert re.search(r"slurm: run directory runs/slurm-\d+ \(Slurm job \d+\)", out)
    assert re.search(r"test accuracy 0\.\d+ \(a subset: 2000 of 10000 examples\) \| .* world "
                     r"size 2", out), out[-4000:]
    digest(out)


def test_sbatch_trains_across_both_nodes_through_mpirun(cluster, uninterrupted):
    job = cluster.submit(train=FLAGS, launcher=["--launcher", "mpirun"])
    info = cluster.wait(job)
    out = cluster.output(job)
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), cluster.evidence(job)
    assert "workers                  lhvd-s1 (rank 0), lhvd-s2 (rank 1)" in out, \
        cluster.evidence(job)
    assert digest(out) == digest(uninterrupted)  # the same training, another launcher


def first_step_after_resume(output: str) -> datetime:
    after = output.split("requeued (restart 1)", 1)[1]
    stamp = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) epoch \d+/\d+ step", after).group(1)
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S")


def test_a_signalled_job_requeues_itself_and_ends_as_an_uninterrupted_one(cluster,
                                                                         uninterrupted):
    job = cluster.submit(train=FLAGS)
    wait_for_file(cluster.run_dir(job) / "checkpoints" / "epoch-1.index", cluster, job)
    signalled = time.time()
    cluster.signal(job, "USR1")
    info = cluster.wait(job)
    out = cluster.output(job)
    assert (info["JobState"], info["ExitCode"], info["Restarts"]) == ("COMPLETED", "0:0", "1"), \
        cluster.evidence(job)
    stop = re.search(r"lars_hvd.train: stopped by SIGUSR1 after optimizer step (\d+) of 96",
                     out)
    assert stop and 32 < int(stop.group(1)) < 64, cluster.evidence(job)  # inside epoch 2
    assert f"requeueing job {job}" in out
    assert re.search(rf"resumed from runs/slurm-{job}/checkpoints/steps/step-{stop.group(1)}",
                     out), cluster.evidence(job)
    assert digest(out) == digest(uninterrupted)
    saved = (cluster.run_dir(job) / "checkpoints" / "steps" /
             f"step-{stop.group(1)}.index").stat().st_mtime
    print(f"\nsignal to checkpoint: {saved - signalled:.1f} s; requeued job's first step "
          f"{(first_step_after_resume(out) - datetime.fromtimestamp(saved)).total_seconds():.0f}"
          f" s after the checkpoint (Slurm's requeue delay: the credential lifetime, "
          f"cred_expire=10 s here)")
    assert saved - signalled < 30  # within Slurm's default grace period


def test_a_signal_before_the_ranks_catch_it_is_not_fatal(cluster, uninterrupted, tmp_path):
    """Slurm's early warning comes up to a minute early, so it can reach a rank before the
    rank catches it (its interpreter starting): the rank dies of it (and srun ends the
    other), and the script stops the job as a caught signal does. It requeues, and ends as
    an uninterrupted one. Here each rank starts through a wrapper that holds it until the test
    lets go, and the warning comes while both are held."""
    hold = tmp_path / "hold"
    hold.touch()
    python = python_after(tmp_path / "held-python", f"while [ -e {hold} ]; do sleep 0.1; done")
    job = cluster.submit(train=FLAGS, launcher=["--python", str(python)])
    try:
        deadline = time.monotonic() + 120
        while (len(ranks_of(job, "lhvd-s1", "lhvd-s2", program=python)) < 2
               or not step_listed(cluster, job)):
            assert time.monotonic() < deadline, cluster.evidence(job)
            time.sleep(0.1)
        subprocess.run(["scancel", "--batch", "--signal=USR1", str(job)], env=cluster.env,
                       check=True)
        cluster.wait_until(job, lambda i: i["Restarts"] != "0" or i["JobState"] in FINAL,
                           timeout=120)
    finally:
        hold.unlink()
    info = cluster.wait(job)
    out = cluster.output(job)
    assert (info["JobState"], info["ExitCode"], info["Restarts"]) == ("COMPLETED", "0:0", "1"), \
        cluster.evidence(job)
    # (a held rank dies of SIGUSR1; srun may end the other with SIGTERM first)
    assert re.search(r"after SIGUSR1 a rank ended by SIG(USR1|TERM) \(exit code 1(38|43):", out), \
        cluster.evidence(job)
    assert f"requeueing job {job}" in out
    assert digest(out) == digest(uninterrupted)


def test_a_job_at_its_time_limit_checkpoints_and_resumes_after_requeue(cluster, tmp_path):
    """--time=1: Slurm's SIGTERM at the limit (60-90 s in, Slurm checks every 30 s) stops the
    ranks at a step with a checkpoint inside the grace period (KillWait=30 s); the script
    requeues the job and it resumes from that step. (That a requeued job then ends as an
    uninterrupted one does is the USR1 test's; the rest of this run is cancelled.)"""
    # Longer than the limit, so that it falls mid-run. The early warning is made a harmless
    # SIGURG here, so that what stops the job is the time limit itself. The first run's ranks
    # start 45 s into the job, not to train on both cores for the whole minute and more, and
    # once they train they wait for the limit at the lowest CPU priority: their steps only
    # have to be under way, and beside other work (`make test`) that work comes first.
    train = [*FLAGS[:4], "--epochs", "200", "--warmup-epochs", "1", "--deterministic",
             "--eval-every-epochs", "200"]
    python = python_after(tmp_path / "late-python",
                          '[ "${SLURM_RESTART_COUNT:-0}" != 0 ] || sleep 45')
    job = cluster.submit("--time=1", "--signal=B:URG@1", train=train,
                         launcher=["--python", str(python)])
    cluster.wait_until(job, lambda i: "epoch 1/200 step 1/" in cluster.output(job)
                       or i["Restarts"] != "0" or i["JobState"] in FINAL, timeout=300)
    niced = lowest_priority(ranks_of(job, "lhvd-s1", "lhvd-s2"))
    info = cluster.wait_until(job, lambda i: i["Restarts"] != "0" or i["JobState"] in FINAL,
                              timeout=300)
    assert info["Restarts"] == "1", (info, cluster.evidence(job))
    # The requeued job gets a longer limit (as from an admin), not to be stopped again.
    subprocess.run(["scontrol", "update", f"JobId={job}", "TimeLimit=10"], env=cluster.env,
                   check=True)
    cluster.wait_until(job, lambda _: "resumed from" in cluster.output(job), timeout=300)
    subprocess.run(["scancel", str(job)], env=cluster.env, check=True)
    cluster.wait(job, timeout=120)
    out = cluster.output(job)
    limit = re.search(rf"JOB {job} ON \S+ CANCELLED AT (\S+) DUE TO TIME LIMIT", out)
    stop = re.search(r"lars_hvd.train: stopped by SIGTERM after optimizer step (\d+) of 6400",
                     out)
    assert limit and stop and 0 < int(stop.group(1)) < 6400, cluster.evidence(job)
    assert f"requeueing job {job}" in out
    assert re.search(rf"resumed from runs/slurm-{job}/checkpoints/steps/step-{stop.group(1)}:",
                     out), cluster.evidence(job)
    saved = (cluster.run_dir(job) / "checkpoints" / "steps" /
             f"step-{stop.group(1)}.index").stat().st_mtime
    took = saved - datetime.fromisoformat(limit.group(1)).timestamp()
    print(f"\ntime limit to checkpoint: {took:.1f} s (step {stop.group(1)} of 6400; "
          f"{niced} threads of the first run's ranks at nice 19)")
    assert took < 30  # within the grace period


def test_a_cancelled_job_checkpoints_and_stays_cancelled(cluster):
    """scancel: the ranks checkpoint their step (SIGTERM) but the job is not requeued."""
    job = cluster.submit(train=FLAGS)
    wait_for_file(cluster.run_dir(job) / "checkpoints" / "epoch-1.index", cluster, job)
    subprocess.run(["scancel", str(job)], env=cluster.env, check=True)
    info = cluster.wait(job, timeout=60)
    time.sleep(2)  # (the end of the batch script's output)
    out = cluster.output(job)
    assert (info["JobState"], info["Restarts"]) == ("CANCELLED", "0"), cluster.evidence(job)
    assert "lars_hvd.train: stopped by SIGTERM after optimizer step" in out, \
        cluster.evidence(job)
    assert f"job {job} is ending (COMPLETING None): not requeued here" in out, \
        cluster.evidence(job)
    assert list((cluster.run_dir(job) / "checkpoints" / "steps").glob("step-*.index"))


def test_a_killed_rank_ends_the_job_and_the_next_submission_resumes(cluster):
    job = cluster.submit(train=FLAGS)
    run_dir = cluster.run_dir(job)
    wait_for_file(run_dir / "checkpoints" / "epoch-1.index", cluster, job)
    killed = time.monotonic()
    ranks = ranks_of(job, "lhvd-s2")
    assert len(ranks) == 1, ranks
    os.kill(ranks[0], 9)  # the rank on lhvd-s2 dies (as on an out-of-memory kill)
    info = cluster.wait(job, timeout=120)
    took = time.monotonic() - killed
    out = cluster.output(job)
    assert info["JobState"] == "FAILED" and info["ExitCode"] != "0:0", \
        (info, cluster.evidence(job))
    assert took < 60, took  # nothing hangs: srun --kill-on-bad-exit ends the job
    # The user submits again into the same run directory.
    again = cluster.submit(train=[*FLAGS, "--run-dir", str(run_dir), "--resume"])
    info = cluster.wait(again)
    out = cluster.output(again)
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), cluster.evidence(again)
    assert re.search(r"resumed from \S+/checkpoints/(epoch|steps/step)-\d+", out), \
        cluster.evidence(again)
    print(f"\na killed rank ended the job in {took:.1f} s")


def step_listed(cluster, job: int) -> bool:
    """Slurm's controller lists the job's srun step (a signal that srun passes on before
    then may not reach the ranks: once, under load, a held job then never ended)."""
    out = subprocess.run(["squeue", "-h", "-s", "-j", str(job), "-o", "%i"], env=cluster.env,
                         capture_output=True, text=True, check=False).stdout
    return f"{job}.0" in out.split()


def ranks_of(job: int, *namespaces: str, program: Path | None = None) -> list[int]:
    """The processes of ``job`` running ``lars_hvd.train`` (through ``program``) on these
    nodes."""
    return [pid for namespace in namespaces for pid in namespace_pids(namespace)
            if b"lars_hvd.train" in cmdline(pid) and str(program or "").encode() in cmdline(pid)
            and f"SLURM_JOB_ID={job}".encode() in environ(pid)]


def lowest_priority(pids: list[int]) -> int:
    """Nice 19 for every thread of these processes (a nice value is a thread's own); returns
    how many threads it set."""
    done = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(ProcessLookupError):
                os.setpriority(os.PRIO_PROCESS, int(task.name), 19)
                done += 1
    return done


def namespace_pids(namespace: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True,
                         check=True).stdout
    return [int(pid) for pid in out.split()]


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def environ(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []
