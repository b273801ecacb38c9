"""Print the Flyte projects of a stack, one a line, as infra/ creates them (cdao:flyte.projects).

The registration step registers workflows/ into exactly these projects, so CI and the
namespaces and IAM roles infra/ made for each project-domain can never disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script from anywhere: make the repository root importable for `infra`.
REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from infra.config import ConfigError, parse_stack_config  # noqa: E402
from infra.plan.runner import ENVIRONMENTS_DIR, StackFileError, StackNotFoundError, read_stack_file  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: flyte_projects.py STACK [ENVIRONMENTS_DIR]", file=sys.stderr)
        return 2
    environments = Path(argv[1]) if len(argv) == 2 else ENVIRONMENTS_DIR
    try:
        raw, _ = read_stack_file(argv[0], environments)
        config, _ = parse_stack_config(argv[0], raw)
    except (StackNotFoundError, StackFileError, ConfigError) as exc:
        print(f"flyte_projects.py: {exc}", file=sys.stderr)
        return 2
    print("\n".join(config.flyte.projects))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
