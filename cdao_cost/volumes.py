"""EBS volumes that platform/'s add-ons claim through PersistentVolumeClaims: no Pulumi resource
declares them, so the estimate reads their size from the Helm values files the add-on's
ApplicationSet picks for a cluster (platform/bootstrap/appsets/*.yaml: `values.yaml`, then
`values-<profile>.yaml`, the cluster Secret's `profile` label, missing files ignored).

tests/cdao_cost/test_cost.py keeps CLAIMS equal to the claims platform/'s values declare and to the
files the ApplicationSets really pick.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PLATFORM = Path(__file__).resolve().parents[1] / "platform"


@dataclass(frozen=True)
class Claim:
    """One StatefulSet's volumeClaimTemplate inside a chart's values: `spec` is the path to the
    workload's spec (prometheus-operator's PrometheusSpec/AlertmanagerSpec `storage` and `replicas`:
    kube-prometheus-stack 79.12.0 charts/crds/crds/crd-prometheuses.yaml, crd-alertmanagers.yaml)."""

    addon: str  # the cluster Secret's enable_<addon> label
    values_dir: str  # under platform/addons
    workload: str
    spec: tuple[str, ...]
    storage_key: str  # kube-prometheus-stack calls it storageSpec for Prometheus, storage for Alertmanager


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "observability",
        "observability/kube-prometheus-stack",
        "Prometheus",
        ("prometheus", "prometheusSpec"),
        "storageSpec",
    ),
    Claim(
        "observability",
        "observability/kube-prometheus-stack",
        "Alertmanager",
        ("alertmanager", "alertmanagerSpec"),
        "storage",
    ),
)

# Chart default when the values leave `replicas` unset (kube-prometheus-stack 79.12.0 values.yaml:
# prometheusSpec.replicas 1, alertmanagerSpec.replicas 1).
_DEFAULT_REPLICAS = 1
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Gi|Ti|Mi|G|T|M)?$")
# Kubernetes resource quantities (k8s.io/apimachinery pkg/api/resource/quantity.go) in GiB, the unit
# EBS provisions and bills ("GB-month" of provisioned storage: https://aws.amazon.com/ebs/pricing/).
_GIB = {"Gi": 1.0, "Ti": 1024.0, "Mi": 1 / 1024, "G": 1e9 / 2**30, "T": 1e12 / 2**30, "M": 1e6 / 2**30, None: 1 / 2**30}


@dataclass(frozen=True)
class ClaimedVolume:
    workload: str
    replicas: int
    gib: float
    storage_class: str | None


def merge_values(base: Any, override: Any) -> Any:
    """Helm's coalescing of values files given in order: maps merge key by key, anything else
    replaces, a null deletes the key (https://helm.sh/docs/chart_template_guide/values_files/,
    "Deleting a default key")."""
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return override
    merged = dict(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_values(merged.get(key), value) if key in merged else value
    return merged


def values_files(claim: Claim, profile: str) -> list[Path]:
    directory = PLATFORM / "addons" / claim.values_dir
    return [p for p in (directory / "values.yaml", directory / f"values-{profile}.yaml") if p.is_file()]


def gib(quantity: Any) -> float:
    """A Kubernetes storage quantity ("50Gi", "1Ti", "100G") in GiB; ValueError for anything else."""
    match = _QUANTITY.match(str(quantity))
    if match is None:
        raise ValueError(f"not a storage quantity: {quantity!r}")
    return float(match.group(1)) * _GIB[match.group(2)]


def claimed_volumes(labels: Mapping[str, str]) -> list[ClaimedVolume]:
    """The volumes the enabled add-ons claim on a cluster with these cluster-Secret labels. A workload
    whose storage is no volumeClaimTemplate (unset, or an emptyDir) claims nothing."""
    out = []
    profile = labels.get("profile", "")
    for claim in CLAIMS:
        if labels.get(f"enable_{claim.addon}") != "true":
            continue
        values: Any = {}
        for path in values_files(claim, profile):
            values = merge_values(values, yaml.safe_load(path.read_text()) or {})
        spec = values
        for key in claim.spec:
            spec = spec.get(key) or {} if isinstance(spec, dict) else {}
        template = (spec.get(claim.storage_key) or {}).get("volumeClaimTemplate")
        if not template:
            continue
        claim_spec = template.get("spec") or {}
        size = ((claim_spec.get("resources") or {}).get("requests") or {}).get("storage")
        replicas = int(spec.get("replicas", _DEFAULT_REPLICAS))
        out.append(ClaimedVolume(claim.workload, replicas, gib(size), claim_spec.get("storageClassName")))
    return out
