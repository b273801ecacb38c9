"""Where the seeds (the SDK's specification, owned by ``../shared``, never vendored here) are read from.

A run without them cannot check the SDK against its specification. On a laptop that is a visible
skip saying where they must be; in CI (the ``CI`` variable, which GitHub Actions sets to ``true``:
https://docs.github.com/en/actions/reference/variables-reference#default-environment-variables)
it is a failure, because a CI run that silently skipped the seeds would report a check it never
made: there the seeds missing is a misconfigured run, not a reason to pass. A CI run that has no
seeds by design (GitHub's pull-request workflow: the seeds are the platform team's shared documents,
not this repository's) says so in its workflow file with ``CDAO_SEEDS=absent``, and the module is then
skipped naming that setting: skipping takes a written decision, never an accident.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

DEFAULT = Path(__file__).resolve().parents[4] / "shared" / "seeds"


def seeds_dir(environ: Mapping[str, str]) -> Path:
    """The seeds' folder: ``CDAO_SEEDS_DIR``, else ``../shared/seeds`` beside the repository.

    Missing: ``pytest.skip`` when ``CDAO_SEEDS=absent``; else ``pytest.fail`` when ``CI`` is set (to
    anything but empty, ``0`` or ``false``), ``pytest.skip`` otherwise; each names the folder looked at
    and how to point elsewhere.
    """
    seeds = Path(environ.get("CDAO_SEEDS_DIR") or DEFAULT)
    if seeds.is_dir():
        return seeds
    why = f"the seeds are not at {seeds}: put ../shared beside the repository or set CDAO_SEEDS_DIR"
    if environ.get("CDAO_SEEDS") == "absent":
        pytest.skip(f"{why} (CDAO_SEEDS=absent: this run has no seeds by design)", allow_module_level=True)
    if environ.get("CI", "").strip().lower() not in ("", "0", "false"):
        pytest.fail(f"{why} (CI is set, so the seed examples must run)", pytrace=False)
    pytest.skip(why, allow_module_level=True)
