"""Kubernetes workloads declared through pulumi-kubernetes: privilege, user, limits, image tags.

Helm releases and ConfigFiles are opaque to the pack (their objects never reach the analyzer);
those manifests are checked in platform/ by checkov instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from policies.core import (
    Context,
    Resource,
    Rule,
    UnknownValueFound,
    as_list,
    dig,
    iter_known,
    resource_rule,
    to_bool,
    to_number,
)

RULES: list[Rule] = []

# Where each workload kind keeps its pod spec.
_POD_SPEC_PATH: dict[str, tuple[str, ...]] = {
    "kubernetes:core/v1:Pod": ("spec",),
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template", "spec"),
    "kubernetes:core/v1:ReplicationController": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
WORKLOAD_TYPES = frozenset(_POD_SPEC_PATH)


def _pod_spec(res: Resource) -> dict[str, Any]:
    spec = res.get(*_POD_SPEC_PATH[res.type]) or {}
    return spec if isinstance(spec, dict) else {}


def _containers(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for i, c in enumerate(iter_known(as_list(dig(spec, group)))):
            if isinstance(c, dict):
                name = dig(c, "name")
                yield f"{group}[{name if isinstance(name, str) else i}]", c


@resource_rule(
    RULES,
    id="CDAO-K8S-001",
    name="Privileged container",
    description=(
        "A container runs privileged or with allowPrivilegeEscalation=true, or the pod shares the host "
        "PID/IPC/network namespaces."
    ),
    remediation="Drop privileged/allowPrivilegeEscalation and host namespaces; grant only the capabilities needed.",
    level="mandatory",
    types=WORKLOAD_TYPES,
)
def k8s_001_privileged(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    spec = _pod_spec(res)
    for flag in ("hostPID", "hostIPC", "hostNetwork"):
        if to_bool(dig(spec, flag)) is True:
            yield f"pod sets {flag}: true"
    for label, c in _containers(spec):
        if to_bool(dig(c, "securityContext", "privileged")) is True:
            yield f"{label} is privileged"
        if to_bool(dig(c, "securityContext", "allowPrivilegeEscalation")) is True:
            yield f"{label} allows privilege escalation"


@resource_rule(
    RULES,
    id="CDAO-K8S-002",
    name="Container may run as root",
    description=(
        "A container neither sets runAsNonRoot=true nor a non-zero runAsUser (container or pod level), or "
        "explicitly runs as UID 0, so it runs as whatever user the image defaults to -- often root."
    ),
    remediation="Set securityContext.runAsNonRoot=true and runAsUser to a non-zero UID (pod or container level).",
    level="mandatory",
    types=WORKLOAD_TYPES,
)
def k8s_002_root(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    spec = _pod_spec(res)
    pod_sc = dig(spec, "securityContext") or {}
    for label, c in _containers(spec):
        sc = dig(c, "securityContext") or {}
        uid = to_number(dig(sc, "runAsUser") if dig(sc, "runAsUser") is not None else dig(pod_sc, "runAsUser"))
        non_root = dig(sc, "runAsNonRoot") if dig(sc, "runAsNonRoot") is not None else dig(pod_sc, "runAsNonRoot")
        if uid == 0:
            yield f"{label} runs as UID 0"
        elif to_bool(non_root) is not True and not (uid is not None and uid > 0):
            yield f"{label} does not set runAsNonRoot=true or a non-zero runAsUser"


@resource_rule(
    RULES,
    id="CDAO-K8S-003",
    name="Container without a memory limit",
    description=(
        "A container has no resources.limits.memory, so it can take the node's memory and get neighbours "
        "OOM-killed. (CPU limits are not required: they only throttle.)"
    ),
    remediation="Set resources.requests and resources.limits.memory on every container.",
    level="advisory",
    types=WORKLOAD_TYPES,
)
def k8s_003_limits(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    for label, c in _containers(_pod_spec(res)):
        if label.startswith("ephemeralContainers"):
            continue  # the API forbids resources on ephemeral containers
        if dig(c, "resources", "limits", "memory") in (None, ""):
            yield f"{label} has no memory limit"


_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$", re.IGNORECASE)


def image_tag(image: str) -> str | None:
    """The tag of an image reference, or None if it has none (registry ports are not tags)."""
    last = image.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


@resource_rule(
    RULES,
    id="CDAO-K8S-004",
    name="Container image untagged or ':latest'",
    description="An image without a tag or digest, or tagged 'latest', changes under the workload without a deploy.",
    remediation="Pin images to a version tag, or better a digest (@sha256:...).",
    level="mandatory",
    types=WORKLOAD_TYPES,
)
def k8s_004_image_tag(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    for label, c in _containers(_pod_spec(res)):
        image = dig(c, "image")
        if not isinstance(image, str):
            continue
        if _DIGEST.search(image):
            continue
        tag = image_tag(image.split("@", 1)[0])
        if tag is None:
            yield f"{label} image {image!r} has no tag"
        elif tag.lower() == "latest":
            yield f"{label} image {image!r} uses 'latest'"
