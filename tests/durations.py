"""Where the suite's time goes, as the markdown tables of docs/testing.md, from a JUnit XML
file written by pytest (a test's time there is its setup, call and teardown together):

    PYTEST_ADDOPTS=--junitxml=runs/tests.xml make test
    python tests/durations.py runs/tests.xml runs/tests-cluster.xml [--slowest 25]

Prints the slowest tests, then the seconds and test count per file, then the total. Beside
the wall seconds, the CPU seconds that tests/conftest.py records for each test (its process
and the processes it started and waited for; not a Slurm job's, which slurmd starts).
"""

from __future__ import annotations

import argparse
import collections
import xml.etree.ElementTree as ET


def cases(path: str) -> list[tuple[str, str, float, float, str]]:
    """(file, test, seconds, CPU seconds, outcome) of every test case in the report."""
    found = []
    for case in ET.parse(path).getroot().iter("testcase"):
        parts = case.get("classname", "").split(".")  # tests.test_x[.TestClass]
        module = next((p for p in reversed(parts) if p.startswith("test_")), parts[-1])
        outcome = next((child.tag for child in case
                        if child.tag in ("failure", "error", "skipped")), "passed")
        cpu = sum(float(p.get("value", 0)) for p in case.iter("property")
                  if p.get("name") == "cpu_seconds")
        found.append((f"{module}.py", case.get("name", ""), float(case.get("time", 0)), cpu,
                      outcome))
    return found


def tables(found: list[tuple[str, str, float, float, str]], slowest: int) -> str:
    rows = ["| seconds | CPU s | test |", "|---:|---:|---|"]
    for file, name, seconds, cpu, outcome in sorted(found, key=lambda c: -c[2])[:slowest]:
        mark = "" if outcome == "passed" else f" ({outcome})"
        rows.append(f"| {seconds:.1f} | {cpu:.1f} | {file}::{name}{mark} |")
    per_file: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for file, _, seconds, cpu, _ in found:
        per_file[file].append((seconds, cpu))
    rows += ["", "| seconds | CPU s | tests | file |", "|---:|---:|---:|---|"]
    for file, times in sorted(per_file.items(), key=lambda kv: -sum(t for t, _ in kv[1])):
        rows.append(f"| {sum(t for t, _ in times):.0f} | {sum(c for _, c in times):.0f} | "
                    f"{len(times)} | {file} |")
    outcomes = collections.Counter(outcome for *_, outcome in found)
    total = sum(case[2] for case in found)
    cpu = sum(case[3] for case in found)
    counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
    rows += ["", f"Total: {len(found)} tests ({counts}), {total:.0f} s ({total / 60:.1f} min) "
                 f"summed over tests, {cpu:.0f} CPU-seconds."]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="pytest's --junitxml files (make test "
                        "writes the cluster tests' to runs/tests-cluster.xml)")
    parser.add_argument("--slowest", type=int, default=25, help="how many tests to list")
    args = parser.parse_args(argv)
    print(tables([case for report in args.reports for case in cases(report)], args.slowest))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
