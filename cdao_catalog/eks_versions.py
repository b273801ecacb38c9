"""Where a Kubernetes minor version stands in Amazon EKS's support calendar on a given day.

The calendar is cdao_catalog/eks_versions.yaml (dates and source). Standard support bills the control plane
at the standard rate; extended support at the extended rate (https://aws.amazon.com/eks/pricing/);
after extended support EKS upgrades the cluster on its own, so the config refuses such a version.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

CALENDAR_FILE = Path(__file__).with_name("eks_versions.yaml")

Phase = Literal["standard", "extended", "ended"]


@dataclass(frozen=True)
class SupportStatus:
    version: str
    phase: Phase
    # The last day of the current phase (for "ended", the day extended support ended).
    until: dt.date
    source: str

    def describe(self) -> str:
        if self.phase == "standard":
            return f"Kubernetes {self.version}: EKS standard support until {self.until.isoformat()}"
        if self.phase == "extended":
            return (
                f"Kubernetes {self.version}: EKS extended support (higher control-plane rate)"
                f" until {self.until.isoformat()}"
            )
        return f"Kubernetes {self.version}: EKS support ended on {self.until.isoformat()}"


@functools.cache
def _document() -> dict:
    # Read once per process: every stack's config check asks for the calendar's source and gaps.
    return yaml.safe_load(CALENDAR_FILE.read_text(encoding="utf-8"))


@functools.cache
def calendar() -> dict[str, dict[str, dt.date]]:
    return {
        version: {phase: dt.date.fromisoformat(day) for phase, day in dates.items()}
        for version, dates in _document()["versions"].items()
    }


def unlisted() -> dict[str, str]:
    """Versions EKS has released that the calendar cannot date yet: version -> why, and what was read."""
    return dict(_document().get("unlisted") or {})


def source() -> str:
    return _document()["source"]


def newest_version() -> str:
    return max(calendar(), key=lambda v: tuple(int(p) for p in v.split(".")))


def support_status(version: str, today: dt.date | None = None) -> SupportStatus | None:
    """The version's support phase on `today` (UTC date; default: now), or None when the calendar
    does not list it."""
    dates = calendar().get(version)
    if dates is None:
        return None
    today = today or dt.datetime.now(dt.UTC).date()
    standard, extended = dates["end_of_standard_support"], dates["end_of_extended_support"]
    if today <= standard:
        return SupportStatus(version, "standard", standard, source())
    if today <= extended:
        return SupportStatus(version, "extended", extended, source())
    return SupportStatus(version, "ended", extended, source())


# The span a monthly estimate prices, from its day on: a month as a calendar would bill it, so a
# phase change inside it is prorated rather than ignored until the day it happens.
BILLING_WINDOW_DAYS = 30


def days_by_phase(version: str, start: dt.date, days: int = BILLING_WINDOW_DAYS) -> dict[Phase, int] | None:
    """How many of the `days` days from `start` (inclusive) fall in each support phase, or None when
    the calendar does not list `version`. A phase's last day is its `until` date (AWS's calendar
    names the end date of each phase)."""
    dates = calendar().get(version)
    if dates is None:
        return None
    standard, extended = dates["end_of_standard_support"], dates["end_of_extended_support"]
    counts: dict[Phase, int] = {"standard": 0, "extended": 0, "ended": 0}
    for offset in range(days):
        day = start + dt.timedelta(days=offset)
        counts["standard" if day <= standard else "extended" if day <= extended else "ended"] += 1
    return counts


def standard_support_ending(version: str, start: dt.date, days: int = BILLING_WINDOW_DAYS) -> dt.date | None:
    """The last day of standard support when it falls inside the `days` days from `start` but not on
    their last day (the day after is then billed at the extended rate); else None."""
    dates = calendar().get(version)
    if dates is None:
        return None
    end = dates["end_of_standard_support"]
    return end if start <= end < start + dt.timedelta(days=days - 1) else None
