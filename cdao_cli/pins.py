"""What promotion moves from one stack to the next, and what stays per stack.

A stack file (environments/Pulumi.<stack>.yaml) holds two kinds of keys:

- promoted (PROMOTED_KEYS): `cdao:gitops.revision`, the one commit the stack runs (infra/, platform/,
  workflows/, the images), and `cdao:gitops.chartVersions`, the chart version of every add-on. They
  travel together: `cdao promote` copies them from what the upstream stack last deployed, and
  `cdao stack-revision` refuses to deploy staging or prod unless the upstream stack ran
  exactly these values together in one successful deployment.
- per stack: every other key (account, network, cluster access, node pool sizes, database, backup,
  Flyte hostname, add-on switches...). They describe where and how big a stack is, are reviewed in
  the stack's own pull requests, and are never copied by a promotion; a pinned stack runs them as
  its file held them at its pin (cdao_cli/stack_revision.py, deployed_stack_file), so they go live
  with the promotion that moves the pin past them (the promotion's pull request lists them).
- the stack's secrets (PULUMI_SECRETS_KEYS and `secure:` values): taken from main at every deploy.

This module is the one owner of that split (docs/github-setup.md, "One revision per stack").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from infra.config import NAMESPACE

GITOPS_KEY = f"{NAMESPACE}:gitops"
REVISION_KEY = "revision"
CHARTS_KEY = "chartVersions"
PROMOTED_KEYS = (f"{GITOPS_KEY}.{REVISION_KEY}", f"{GITOPS_KEY}.{CHARTS_KEY}")

_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")

# Pulumi's stack settings besides `config` (pulumi/automation/_stack_settings.py, StackSettings, pulumi
# 3.272.0: `secretsprovider`, `encryptedkey`, `encryptionsalt`) and every `{secure: <ciphertext>}`
# config value (StackSettingsSecureConfigValue) belong to the stack's state and key, not to a commit's
# code: a pinned stack takes them from main, whatever its pin (a pin's file may predate
# `pulumi stack init`, or hold ciphertext of a data key rotated since). Every other top-level key
# (a Pulumi ESC `environment:` import, say, which feeds config to the program:
# pulumi.com/docs/esc/guides/pulumi-iac/) is per stack and comes from the pin.
SECURE = "secure"
PULUMI_SECRETS_KEYS = ("secretsprovider", "encryptedkey", "encryptionsalt")


def is_secure(value: object) -> bool:
    """A `{secure: <ciphertext>}` config value (Pulumi's encrypted config value)."""
    return isinstance(value, dict) and set(value) == {SECURE}


@dataclass(frozen=True)
class Pins:
    """The promoted values of one stack: `revision` a 40-hex commit (or a branch as written in a
    stack file that follows one), `chart_versions` chart key -> version."""

    revision: str
    chart_versions: dict[str, str]


def pins_of(config: Any, commit: str | None = None) -> Pins:
    """The promoted values of a parsed stack config (infra.config.StackConfig). With `commit`, a
    branch revision resolves to that commit: a stack following a branch ran the commit it was
    deployed at."""
    revision = config.gitops.revision
    if commit is not None and not _FULL_SHA.fullmatch(revision):
        revision = commit
    return Pins(revision, dict(config.gitops.chart_versions))


__all__ = [
    "CHARTS_KEY",
    "GITOPS_KEY",
    "PROMOTED_KEYS",
    "PULUMI_SECRETS_KEYS",
    "REVISION_KEY",
    "SECURE",
    "Pins",
    "is_secure",
    "pins_of",
]
