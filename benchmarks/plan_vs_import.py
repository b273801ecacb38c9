"""Benchmark: how much of `cdao plan --all` is importing SDKs, and how much is the plan itself.

Runs, in one invocation and on the same machine state:
  1. `cdao plan --all` in a fresh interpreter, `--repeat` times;
  2. a fresh interpreter that only imports every third-party module the plan loaded
     (the exact list is recorded from a plan run, so the baseline tracks the code), `--repeat` times.
Prints the median wall time of each and their ratio. It measures; it does not pass or fail.

    uv run python benchmarks/plan_vs_import.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import sysconfig
import time

_RECORD_MODULES = """
import json, sys, sysconfig, contextlib, io
from cdao_cli.main import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(["plan", "--all"])
site = sysconfig.get_paths()["purelib"]
mods = sorted(n for n, m in list(sys.modules.items())
              if getattr(m, "__file__", None) and m.__file__.startswith(site)
              and not n.startswith(("infra", "policies", "cdao_")))
print(json.dumps({"code": code, "modules": mods}))
"""


def _time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)  # noqa: S603 - our own interpreter and CLI
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command (default 5)")
    args = parser.parse_args()

    recorded = json.loads(subprocess.check_output([sys.executable, "-c", _RECORD_MODULES], text=True))  # noqa: S603
    if recorded["code"] not in (0, 1):
        sys.exit(f"cdao plan --all exited {recorded['code']}: fix the plan before benchmarking it")
    modules = recorded["modules"]
    import_only = "import importlib\nfor m in %r:\n    importlib.import_module(m)\n" % (modules,)  # noqa: UP031

    plan_cmd = [sys.executable, "-m", "cdao_cli", "plan", "--all"]
    import_cmd = [sys.executable, "-c", import_only]
    plan_times = [_time(plan_cmd) for _ in range(args.repeat)]
    import_times = [_time(import_cmd) for _ in range(args.repeat)]

    plan_s, import_s = statistics.median(plan_times), statistics.median(import_times)
    print(f"python {sys.version.split()[0]} at {sysconfig.get_paths()['purelib']}")
    print(f"third-party modules the plan loads: {len(modules)}")
    print(f"cdao plan --all (3 stacks):  median {plan_s:.3f} s over {args.repeat} runs  {_spread(plan_times)}")
    print(f"bare import of those SDKs:   median {import_s:.3f} s over {args.repeat} runs  {_spread(import_times)}")
    print(f"plan_over_import_ratio={plan_s / import_s:.2f}")


def _spread(times: list[float]) -> str:
    return f"(min {min(times):.3f}, max {max(times):.3f})"


if __name__ == "__main__":
    main()
