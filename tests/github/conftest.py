"""Fixtures the .github tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


def _set_git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        monkeypatch.setenv(var, "cdao tests")
    for var in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(var, "tests@example.invalid")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


@pytest.fixture
def git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commits in throwaway repositories get a fixed author, and no system git config applies."""
    _set_git_identity(monkeypatch)


@pytest.fixture(scope="module")
def module_git_identity() -> Iterator[None]:
    """git_identity for a module-scoped fixture that builds a repository once for its tests."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _set_git_identity(monkeypatch)
        yield
