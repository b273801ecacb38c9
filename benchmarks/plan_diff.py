"""Benchmark: `cdao plan --all --diff <ref>` against `cdao plan --all`, in one run.

The diff plans the base (its own code, in a child process) and the head; the two run at once, so
on a machine with two or more cores the diff should cost well under twice the plan. This prints
the median wall time of each over `--repeat` alternating runs and their ratio. It measures; it
does not pass or fail.

    uv run python benchmarks/plan_diff.py [--ref HEAD~1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def _time(cmd: list[str]) -> float:
    start = time.perf_counter()
    # Exit 1 (a mandatory violation) still means a complete plan; anything else is a failure.
    code = subprocess.run(cmd, stdout=subprocess.DEVNULL, check=False).returncode  # noqa: S603 - our own CLI
    if code not in (0, 1):
        sys.exit(f"{' '.join(cmd[2:])} exited {code}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="HEAD~1", help="the base of the diff (default HEAD~1)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command (default 3)")
    args = parser.parse_args()

    plan_cmd = [sys.executable, "-m", "cdao_cli", "plan", "--all", "--format", "json"]
    diff_cmd = [*plan_cmd, "--diff", args.ref]
    plan_times: list[float] = []
    diff_times: list[float] = []
    for _ in range(args.repeat):  # alternate, so a change in machine load hits both alike
        plan_times.append(_time(plan_cmd))
        diff_times.append(_time(diff_cmd))
    plan_s, diff_s = statistics.median(plan_times), statistics.median(diff_times)
    print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")
    print(f"cdao plan --all:                 median {plan_s:.2f} s  {[round(t, 2) for t in plan_times]}")
    print(f"cdao plan --all --diff {args.ref}:  median {diff_s:.2f} s  {[round(t, 2) for t in diff_times]}")
    print(f"ratio diff / plan: {diff_s / plan_s:.2f}")


if __name__ == "__main__":
    main()
