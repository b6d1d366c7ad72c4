"""Training across two real hosts: network namespaces on this machine, each with its own
address, host name and sshd (tests/two_hosts.sh), launched with launch/horovodrun.sh (Gloo)
and launch/mpirun.sh from a hostfile. Skipped, with the reason, where namespaces cannot be
made (not root, no sshd)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TWO_HOSTS = ["bash", str(ROOT / "tests" / "two_hosts.sh")]

check = subprocess.run([*TWO_HOSTS, "check"], capture_output=True, text=True, check=False)
pytestmark = [pytest.mark.multiprocess, pytest.mark.cluster, pytest.mark.fashion_mnist]

TRAIN = ["--train-examples", "1024", "--global-batch-size", "256", "--epochs", "2",
         "--warmup-epochs", "0.5"]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    if check.returncode != 0:  # skipped with the reason; under CI a skip is a failure
        why = f"two hosts: {check.stdout.strip()}"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the two-host tests, but: {why}")
        pytest.skip(why)
    folder = tmp_path_factory.mktemp("hosts")
    try:
        subprocess.run([*TWO_HOSTS, "up", str(folder)], check=True, timeout=60)
        hostfile = folder / "hostfile"
        hostfile.write_text("lhvd-a slots=1\nlhvd-b slots=1\n")
        yield folder, hostfile
    finally:  # always, also when `up` failed half-way
        subprocess.run([*TWO_HOSTS, "down", str(folder)], check=False, timeout=60)


def launch_from_host_a(folder: Path, script: str, hostfile: Path, run_dir: Path) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [*TWO_HOSTS, "run", "a", str(folder), "bash", str(ROOT / "launch" / script),
         "--hostfile", str(hostfile), "--python", sys.executable, "--network-interface",
         "eth0", "--stall-shutdown-s", "60", "--", *TRAIN, "--run-dir", str(run_dir)],
        capture_output=True, text=True, env=env, timeout=300, check=False, cwd=ROOT)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-5000:]
    return out


@pytest.mark.parametrize("script", ["horovodrun.sh", "mpirun.sh"])
def test_training_across_two_hosts(hosts, script, tmp_path):
    folder, hostfile = hosts
    out = launch_from_host_a(folder, script, hostfile, tmp_path / "run")
    # Each rank ran on its own host: its own namespace, address and host name.
    assert re.search(r"workers\s+lhvd-a \(rank 0\), lhvd-b \(rank 1\)", out), out[-3000:]
    assert "= 2 workers x 1 accumulation step(s) x 128 per-worker batch" in out
    # Both ranks end with bitwise identical weights (a SHA-256 of each rank's weights,
    # compared across ranks by the training entry point).
    assert "replicas agree: trained weights bitwise identical on all 2 workers" in out
    assert (tmp_path / "run" / "summary.json").is_file()


def test_hosts_are_separate_namespaces(hosts):
    folder, _ = hosts
    seen = {}
    for host in ("a", "b"):
        out = subprocess.run([*TWO_HOSTS, "run", host, str(folder), "sh", "-c",
                              "hostname; readlink /proc/self/ns/net; ip -4 -br addr show eth0"],
                             capture_output=True, text=True, check=True, timeout=30).stdout
        seen[host] = out.split("\n")
    assert seen["a"][0] == "lhvd-a" and seen["b"][0] == "lhvd-b"
    assert seen["a"][1] != seen["b"][1]  # different network namespaces
    own = subprocess.run(["readlink", "/proc/self/ns/net"], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert own not in (seen["a"][1], seen["b"][1])
    assert "10.233.7.1/24" in seen["a"][2] and "10.233.7.2/24" in seen["b"][2]
