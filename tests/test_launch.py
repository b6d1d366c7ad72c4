"""launch/: each script's exact command (--dry-run), its refusals, and a real one-node run.

The runs across two real hosts (network namespaces) are in test_two_hosts.py."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "launch"
SCRIPTS = ["local.sh", "horovodrun.sh", "mpirun.sh", "slurm.sbatch", "k8s.sh"]
TRAIN_ARGS = ["--preset", "resnet50-imagenet-32k", "--global-batch-size", "32768",
              "--data-dir", "/data/image net"]  # a space: quoting must survive


def launch(script: str, *args: str, env=None, check=True) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("SLURM_", "HOROVOD_"))}  # make exports some
    environment.update({"LARS_HVD_PYTHON": "python3", **(env or {})})
    result = subprocess.run(["bash", str(LAUNCH / script), *args], capture_output=True,
                            text=True, env=environment, timeout=60, check=False)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def dry(script: str, *args: str, **kw) -> list[str]:
    out = launch(script, *args, "--dry-run", "--", *TRAIN_ARGS, **kw).stdout
    return shlex.split(out)


def strict_before_first_command(text: str) -> bool:
    """Whether the script's first real command makes bash strict: `set -euo pipefail`, or
    sourcing common.sh (which is strict, see the next test). Only comments, a folder
    variable and the if/else that chooses where common.sh is may come before it."""
    for line in (ln.strip() for ln in text.splitlines()):
        if not line or line.startswith(("#", "HERE=")) or re.match(r"(if \[|else$)", line):
            continue
        return line == "set -euo pipefail" or bool(re.match(r'source ".*/common\.sh"', line))
    return False


@pytest.mark.multiprocess
@pytest.mark.parametrize("broken", ["false | true", 'echo "$NO_SUCH_VARIABLE"', "false"])
def test_common_sh_makes_a_failure_stop_the_script(broken):
    script = f'source "{LAUNCH / "common.sh"}"; {broken}; echo survived'
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                            check=False)
    assert result.returncode != 0 and "survived" not in result.stdout, broken


@pytest.fixture
def hostfile(tmp_path):
    path = tmp_path / "hosts"
    path.write_text("# two 8-GPU nodes\nnode1 slots=8\nnode2:8\n")
    return str(path)


@pytest.mark.multiprocess
@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse_and_explain_themselves(script):
    assert subprocess.run(["bash", "-n", str(LAUNCH / script)], check=False).returncode == 0
    assert strict_before_first_command((LAUNCH / script).read_text()), script
    usage = launch(script, "--help").stdout
    assert "--dry-run" in usage and "--fusion-threshold-mb" in usage
    assert "unchanged" in usage  # the training arguments pass through


@pytest.mark.multiprocess
@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_is_clean():
    files = [str(LAUNCH / s) for s in [*SCRIPTS, "common.sh"]]
    files.append(str(ROOT / "tests" / "two_hosts.sh"))
    result = subprocess.run(["shellcheck", "-x", "-P", "SCRIPTDIR", *files],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


@pytest.mark.multiprocess
def test_local_passes_the_training_arguments_unchanged():
    cmd = dry("local.sh", "--np", "4")
    assert cmd[-len(TRAIN_ARGS) - 3:] == ["python3", "-m", "lars_hvd.train", *TRAIN_ARGS]
    i = cmd.index("horovodrun")
    assert cmd[i:i + 6] == ["horovodrun", "-np", "4", "-H", "localhost:4", "--gloo"]
    threads = max(1, (os.cpu_count() or 1) // 4)
    assert f"OMP_NUM_THREADS={threads}" in cmd
    assert "HOROVOD_STALL_SHUTDOWN_TIME_SECONDS=300" in cmd


@pytest.mark.multiprocess
def test_knobs_become_horovods_variables(hostfile):
    knobs = ["--fusion-threshold-mb", "64", "--cycle-time-ms", "3.5", "--network-interface",
             "ib0", "--timeline", "/tmp/t.json", "--stall-check-s", "30",
             "--stall-shutdown-s", "90"]
    expected = {"HOROVOD_FUSION_THRESHOLD=67108864", "HOROVOD_CYCLE_TIME=3.5",
                "HOROVOD_TIMELINE=/tmp/t.json", "HOROVOD_STALL_CHECK_TIME_SECONDS=30",
                "HOROVOD_STALL_SHUTDOWN_TIME_SECONDS=90", "HOROVOD_GLOO_IFACE=ib0",
                "NCCL_SOCKET_IFNAME=ib0"}
    local = dry("local.sh", "--np", "2", *knobs)
    assert expected <= set(local)
    assert local[local.index("--network-interface") + 1] == "ib0"
    mpirun = dry("mpirun.sh", "--hostfile", hostfile, *knobs)
    exported = {mpirun[i + 1] for i, word in enumerate(mpirun) if word == "-x"}
    assert expected <= exported
    assert ["-mca", "btl_tcp_if_include", "ib0"] == mpirun[
        mpirun.index("btl_tcp_if_include") - 1:mpirun.index("btl_tcp_if_include") + 2]


@pytest.mark.multiprocess
@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_passes_hierarchical_allreduce(script, hostfile):
    """--hierarchical-allreduce reaches the workers' environment, from every launch script."""
    args = {"horovodrun.sh": ["--hostfile", hostfile], "mpirun.sh": ["--hostfile", hostfile],
            "local.sh": ["--np", "2"], "slurm.sbatch": [],
            "k8s.sh": ["--image", "registry/lars_hvd:1", "--nodes", "2"]}[script]
    env = {"SLURM_NTASKS": "16"}
    variable = "HOROVOD_HIERARCHICAL_ALLREDUCE=1"
    if script == "k8s.sh":
        def words(*knobs):
            out = launch(script, *args, *knobs, "--dry-run", "--", *TRAIN_ARGS, env=env).stdout
            return yaml.safe_load(out)["spec"]["mpiReplicaSpecs"]["Launcher"]["template"][
                "spec"]["containers"][0]["command"]
    else:
        def words(*knobs):
            return dry(script, *args, *knobs, env=env)
    assert variable in words("--hierarchical-allreduce")
    assert variable not in words()


@pytest.mark.multiprocess
def test_hostfile_gives_hosts_and_slots(hostfile):
    cmd = dry("horovodrun.sh", "--hostfile", hostfile, "--controller", "mpi")
    i = cmd.index("horovodrun")
    assert cmd[i:i + 6] == ["horovodrun", "-np", "16", "-H", "node1:8,node2:8", "--mpi"]
    assert cmd[-len(TRAIN_ARGS):] == TRAIN_ARGS
    cmd = dry("mpirun.sh", "--hostfile", hostfile, "--np", "12", "--ssh-port", "2222")
    assert cmd[:5] == ["mpirun", "-np", "12", "-H", "node1:8,node2:8"]
    assert {"-bind-to", "none", "-map-by", "slot"} <= set(cmd)
    assert cmd[cmd.index("plm_rsh_args") + 1] == "-p 2222"


@pytest.mark.multiprocess
def test_hosts_without_counts_take_gpus_per_node(tmp_path):
    path = tmp_path / "hosts"
    path.write_text("a\nb\n")
    cmd = dry("horovodrun.sh", "--hostfile", str(path), "--gpus-per-node", "4")
    assert cmd[cmd.index("-H") + 1] == "a:4,b:4" and cmd[cmd.index("-np") + 1] == "8"


@pytest.mark.multiprocess
def test_slurm_uses_the_allocation(tmp_path):
    cmd = dry("slurm.sbatch", env={"SLURM_NTASKS": "64", "SLURM_CPUS_PER_TASK": "10"})
    i = cmd.index("srun")
    assert cmd[i:i + 6] == ["srun", "--mpi=pmix", "--ntasks", "64", "--kill-on-bad-exit=1",
                            "--cpu-bind=none"]
    assert cmd[-len(TRAIN_ARGS):] == TRAIN_ARGS
    cmd = dry("slurm.sbatch", "--launcher", "mpirun", env={"SLURM_NTASKS": "16"})
    assert cmd[:3] == ["mpirun", "-np", "16"]
    assert cmd[-len(TRAIN_ARGS):] == TRAIN_ARGS


@pytest.mark.multiprocess
def test_kubernetes_manifest_is_a_valid_mpijob():
    out = launch("k8s.sh", "--image", "registry/lars_hvd:1", "--nodes", "4",
                 "--gpus-per-node", "8", "--fusion-threshold-mb", "32", "--dry-run", "--",
                 *TRAIN_ARGS).stdout
    job = yaml.safe_load(out)
    assert job["kind"] == "MPIJob" and job["apiVersion"] == "kubeflow.org/v2beta1"
    assert job["spec"]["slotsPerWorker"] == 8
    worker = job["spec"]["mpiReplicaSpecs"]["Worker"]
    assert worker["replicas"] == 4
    assert worker["template"]["spec"]["containers"][0]["resources"]["limits"] == {
        "nvidia.com/gpu": 8}
    command = job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0][
        "command"]
    assert command[command.index("-np") + 1] == "32"
    assert "HOROVOD_FUSION_THRESHOLD=33554432" in command
    assert command[-len(TRAIN_ARGS) - 3:] == ["python", "-m", "lars_hvd.train", *TRAIN_ARGS]


@pytest.mark.parametrize("script,args,message", [
    ("local.sh", ["--np", "0"], "--np must be a positive integer (got '0')"),
    ("local.sh", ["--bogus"], "unknown option '--bogus'"),
    ("local.sh", ["--controller", "nccl"], "--controller must be gloo or mpi"),
    ("horovodrun.sh", [], "--hostfile is required"),
    ("mpirun.sh", ["--hostfile", "/nonexistent"], "--hostfile '/nonexistent' is not a file"),
    ("k8s.sh", [], "--image is required"),
    ("k8s.sh", ["--image", "x", "--name", "Bad_Name"], "--name must be a DNS label"),
    ("slurm.sbatch", ["--launcher", "ssh"], "--launcher must be srun or mpirun"),
])
@pytest.mark.multiprocess
def test_bad_options_are_named(script, args, message):
    result = launch(script, *args, "--dry-run", check=False)
    assert result.returncode == 2 and message in result.stderr, result.stderr


@pytest.mark.multiprocess
def test_more_ranks_than_slots_is_refused(hostfile):
    result = launch("mpirun.sh", "--hostfile", hostfile, "--np", "17", "--dry-run",
                    check=False)
    assert result.returncode == 2 and "--np 17 is more than the 16 slots" in result.stderr


@pytest.mark.multiprocess
@pytest.mark.fashion_mnist
def test_local_script_really_trains_two_workers(tmp_path):
    env = {**os.environ, "LARS_HVD_PYTHON": sys.executable,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", str(LAUNCH / "local.sh"), "--np", "2", "--stall-shutdown-s", "60", "--",
         "--train-examples", "1024", "--global-batch-size", "512", "--epochs", "2",
         "--warmup-epochs", "0.5", "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, env=env, timeout=300, check=False, cwd=tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "= 2 workers x 1 accumulation step(s) x 256 per-worker batch" in out
    assert re.search(r"workers\s+\S+ \(ranks 0-1\)", out), out[-3000:]
    assert "replicas agree: trained weights bitwise identical on all 2 workers" in out
