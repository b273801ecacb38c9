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
- the stack's secrets (PULUMI_SECRETS_KEYS and the `secure:` values of SECRET_CONFIG_KEYS): taken
  from main at every deploy. A `secure:` value on any other key is refused (a setting encrypted on
  main would otherwise reach a pinned stack with no promotion).
- code (CODE_KEYS): keys whose value is code a promotion must carry, but which no promotion copies:
  `cdao:gitops.argocdChartVersion` (the Argo CD chart infra/ installs) and `cdao:gitops.path` (the
  folder of this repository the root Application syncs, infra/components/gitops.py). Set in one
  stack's file, they would make that stack run an Argo CD or manifests the stack before it never
  ran, so no stack file may set them: each stack gets infra/config.py's default at its revision,
  which the revision carries from dev to staging to prod. `cdao stack-revision` refuses a stack
  file that sets one, naming the key.
- per-stack exceptions (PER_STACK_VERSION_KEYS): `cdao:cluster.kubernetesVersion` and
  `cdao:cluster.addonVersions` select software AWS runs (the EKS control plane and its managed
  add-ons), upgraded in place one Kubernetes minor version at a time
  (docs.aws.amazon.com/eks/latest/userguide/update-cluster.html): each cluster is upgraded on its
  own, env by env, in its own reviewed pull request (dev, then staging, then prod), never by a
  promotion that would jump prod's control plane with the pin. They stay per stack, the one
  documented exception to "prod runs only what staging ran" (docs/github-setup.md).

This module is the one owner of that split (docs/github-setup.md, "One revision per stack").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from infra.config import NAMESPACE, SECRET_KEYS

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
# The `config:` keys that are secrets by declaration (infra/config.py SECRET_KEYS): the only ones whose
# `secure:` value follows the stack's key from main. Any other key's value is settings, promoted with
# the pin, whether or not someone encrypted it.
SECRET_CONFIG_KEYS = tuple(f"{NAMESPACE}:{key}" for key in SECRET_KEYS)


CODE_KEYS = (f"{NAMESPACE}:gitops.argocdChartVersion", f"{NAMESPACE}:gitops.path")
PER_STACK_VERSION_KEYS = (f"{NAMESPACE}:cluster.kubernetesVersion", f"{NAMESPACE}:cluster.addonVersions")


def _get(config: dict[str, Any], dotted: str) -> Any:
    """The value at `<namespace:key>.<field>` of a stack file's `config:` mapping, or None."""
    key, _, rest = dotted.partition(".")
    value = config.get(key)
    return value.get(rest) if isinstance(value, dict) else None


def code_keys_set(config: dict[str, Any]) -> list[str]:
    """The CODE_KEYS a stack file's `config:` mapping sets (none may be: see the module docstring)."""
    return [key for key in CODE_KEYS if _get(config, key) is not None]


def code_values(document: Any) -> dict[str, str]:
    """The code-bearing values of a stack file's YAML document, as text: every chart version
    (`cdao:gitops.chartVersions.<chart>`) and every CODE_KEYS key it sets. The revision is left
    out: a stack following `main` writes the branch, not the commit it ran."""
    config = (document.get("config") or {}) if isinstance(document, dict) else {}
    charts = _get(config, f"{GITOPS_KEY}.{CHARTS_KEY}") or {}
    values = {f"{GITOPS_KEY}.{CHARTS_KEY}.{k}": str(v) for k, v in charts.items()} if isinstance(charts, dict) else {}
    values.update({key: str(_get(config, key)) for key in code_keys_set(config)})
    return values


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
    "CODE_KEYS",
    "GITOPS_KEY",
    "PER_STACK_VERSION_KEYS",
    "PROMOTED_KEYS",
    "PULUMI_SECRETS_KEYS",
    "REVISION_KEY",
    "SECRET_CONFIG_KEYS",
    "SECURE",
    "Pins",
    "code_keys_set",
    "code_values",
    "is_secure",
    "pins_of",
]
