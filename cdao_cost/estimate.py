"""Monthly cost of a stack at idle (every autoscaling group at its minimum) and at peak (maximum).

Works on the resource list the policy pack reads (cdao_resources: `[{type, name, props}]`), so the
plan, `cdao policy check` and the pack's budget rule price the same resources the same way, whether
the props come from the mock runtime or from a real preview.
Usage-billed services (S3 storage and requests, EFS bytes, log ingestion, data transfer, EMR
Serverless, SageMaker jobs) have no idle price and are listed as such, never counted as $0 silently.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cdao_catalog import eks_versions
from cdao_catalog.instances import INSTANCE_TYPES
from cdao_cost import volumes
from cdao_resources import PolicyResource

PRICES_FILE = Path(__file__).with_name("prices.yaml")

USAGE_BASED_TYPES = {
    "aws:s3/bucket:Bucket": "S3 storage and requests",
    "aws:s3/bucketV2:BucketV2": "S3 storage and requests",
    "aws:efs/fileSystem:FileSystem": "EFS storage and throughput",
    "aws:cloudwatch/logGroup:LogGroup": "CloudWatch Logs ingestion and storage",
    "aws:emrserverless/application:Application": "EMR Serverless vCPU and memory hours",
    "aws:ecr/repository:Repository": "ECR image storage",
    "aws:batch/jobQueue:JobQueue": "AWS Batch jobs (priced through compute environments)",
    "aws:backup/vault:Vault": "AWS Backup recovery-point storage",
    "aws:dynamodb/table:Table": "DynamoDB on-demand requests and storage",
}

# Application Load Balancers that platform/'s add-ons make through the AWS Load Balancer Controller:
# no Pulumi resource declares them, so they are priced from the Argo CD cluster Secret's
# `enable_<addon>` labels (infra/contract.py). The controller serves all Ingresses of one IngressGroup
# (`alb.ingress.kubernetes.io/group.name`) with a single ALB (kubernetes-sigs/aws-load-balancer-controller
# docs/guide/ingress/annotations.md, "IngressGroup"). Group -> the add-ons whose Ingresses join it;
# tests/infra/test_cost.py keeps this equal to platform/addons/*/**/values.yaml.
ALB_GROUPS: dict[str, tuple[str, ...]] = {"flyte": ("flyte", "mlflow")}
LB_CONTROLLER_ADDON = "aws_load_balancer_controller"
CLUSTER_SECRET_LABEL = ("argocd.argoproj.io/secret-type", "cluster")
ALB_USAGE = "Application Load Balancer capacity units (LCU-hours follow traffic)"


@dataclass(frozen=True)
class CostLine:
    resource_type: str
    resource_name: str
    description: str
    idle_usd_month: float
    peak_usd_month: float
    source: str


@dataclass(frozen=True)
class CostEstimate:
    idle_usd_month: float
    peak_usd_month: float
    lines: list[CostLine]
    unpriced: list[str] = field(default_factory=list)
    usage_based: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "idle_usd_month": self.idle_usd_month,
            "peak_usd_month": self.peak_usd_month,
            "lines": [asdict(line) for line in self.lines],
            "unpriced": self.unpriced,
            "usage_based": self.usage_based,
        }


class _UnknownValueError(ValueError):
    """A size or count the estimate needs is not known (e.g. computed, shown at preview as unknown)."""


def _num(value: Any, default: float = 0.0) -> float:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise _UnknownValueError(repr(value))
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _UnknownValueError(repr(value)) from None


@functools.cache
def price_table(path: Path = PRICES_FILE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


class _Pricer:
    def __init__(self, table: Mapping[str, Any]):
        self.table = table
        self.hours = float(table["hours_per_month"])
        self.spot_factor = float(table["spot_factor"])
        self.lines: list[CostLine] = []
        self.unpriced: list[str] = []
        self.today: dt.date | None = None

    def fixed(self, key: str) -> tuple[float, str]:
        entry = self.table["fixed"][key]
        return float(entry["usd"]), entry["source"]["url"]

    def hourly(self, kind: str, name: str) -> tuple[float, str] | None:
        entry = self.table[kind].get(name)
        return (float(entry["usd"]), entry["source"]["url"]) if entry else None

    def add(self, res: Mapping[str, Any], description: str, idle: float, peak: float, source: str) -> None:
        self.lines.append(CostLine(res["type"], res["name"], description, round(idle, 2), round(peak, 2), source))

    def missing(self, res: Mapping[str, Any], what: str) -> None:
        self.unpriced.append(f"{res['type']} {res['name']}: no price for {what} in {PRICES_FILE.name}")


def estimate_cost(
    resources: Iterable[PolicyResource], table: Mapping[str, Any] | None = None, today: dt.date | None = None
) -> CostEstimate:
    """Idle and peak USD/month of a cdao_resources list, priced from `table` (default: prices.yaml).

    `today` (default: the current UTC date) starts the 30 days priced: each day of the EKS control plane
    pays the rate of its support phase (cdao_catalog.eks_versions.days_by_phase).
    A value the price needs that is unknown at preview leaves that resource in `unpriced`.
    """
    resources = list(resources)
    pricer = _Pricer(table or price_table())
    pricer.today = today
    launch_templates = {
        (r.get("props") or {}).get("name"): r.get("props") or {}
        for r in resources
        if r["type"] == "aws:ec2/launchTemplate:LaunchTemplate"
    }
    has_eks_control_plane = any(r["type"] == "aws:eks/cluster:Cluster" for r in resources)
    usage_based = {USAGE_BASED_TYPES[r["type"]] for r in resources if r["type"] in USAGE_BASED_TYPES}

    for res in resources:
        try:
            _price(pricer, res, launch_templates, has_eks_control_plane)
        except _UnknownValueError as exc:
            # Never price an unknown as zero: list it, so the total is visibly incomplete.
            pricer.missing(res, f"a value unknown at preview ({exc})")

    if any(line.description.startswith("Application Load Balancer") for line in pricer.lines):
        usage_based.add(ALB_USAGE)
    idle = round(sum(line.idle_usd_month for line in pricer.lines), 2)
    peak = round(sum(line.peak_usd_month for line in pricer.lines), 2)
    return CostEstimate(idle, peak, pricer.lines, pricer.unpriced, sorted(usage_based))


def _price(
    pricer: _Pricer, res: Mapping[str, Any], launch_templates: Mapping[str, Any], has_eks_control_plane: bool
) -> None:
    props = res.get("props") or {}
    typ = res["type"]
    if typ in {"aws:eks/nodeGroup:NodeGroup", "eks:index:ManagedNodeGroup"}:
        _node_group(pricer, res, props, launch_templates)
    elif typ == "aws:eks/cluster:Cluster" or (typ == "eks:index:Cluster" and not has_eks_control_plane):
        _eks_control_plane(pricer, res, str(props.get("version", "")))
    elif typ == "aws:ec2/natGateway:NatGateway":
        usd, src = pricer.fixed("nat_gateway_hourly")
        pricer.add(
            res,
            "NAT gateway hours (data processed is usage-based)",
            usd * pricer.hours,
            usd * pricer.hours,
            src,
        )
    elif typ == "aws:ec2transitgateway/vpcAttachment:VpcAttachment":
        usd, src = pricer.fixed("transit_gateway_attachment_hourly")
        hourly = usd * pricer.hours
        pricer.add(res, "transit gateway VPC attachment (data processed is usage-based)", hourly, hourly, src)
    elif typ == "aws:ec2/eip:Eip":
        usd, src = pricer.fixed("public_ipv4_hourly")
        pricer.add(res, "public IPv4 address", usd * pricer.hours, usd * pricer.hours, src)
    elif typ == "aws:ec2/vpcEndpoint:VpcEndpoint" and props.get("vpcEndpointType") == "Interface":
        usd, src = pricer.fixed("interface_endpoint_az_hourly")
        azs = len(props.get("subnetIds") or [])
        pricer.add(
            res,
            f"interface endpoint in {azs} AZ(s)",
            usd * pricer.hours * azs,
            usd * pricer.hours * azs,
            src,
        )
    elif typ == "aws:rds/instance:Instance":
        _rds(pricer, res, props)
    elif typ == "aws:kms/key:Key":
        usd, src = pricer.fixed("kms_key_month")
        pricer.add(res, "KMS customer managed key", usd, usd, src)
    elif typ == "aws:secretsmanager/secret:Secret":
        usd, src = pricer.fixed("secret_month")
        pricer.add(res, "Secrets Manager secret", usd, usd, src)
    elif typ == "aws:ebs/volume:Volume":
        usd, src = pricer.fixed("ebs_gp3_gb_month")
        size = _num(props.get("size"))
        pricer.add(res, f"EBS volume {size:g} GB", usd * size, usd * size, src)
    elif typ == "aws:batch/computeEnvironment:ComputeEnvironment":
        _batch(pricer, res, props)
    elif typ == "kubernetes:core/v1:Secret":
        _platform_load_balancers(pricer, res, props)
        _platform_volumes(pricer, res, props)


def _eks_control_plane(pricer: _Pricer, res: Mapping[str, Any], version: str) -> None:
    """The control plane over the next eks_versions.BILLING_WINDOW_DAYS days, each day at the rate of
    its support phase (https://aws.amazon.com/eks/pricing/: standard, or extended once the version
    left standard support), so a version leaving standard support this month is not priced at the
    standard rate for all of it. A day past extended support counts at the extended rate: the config
    refuses such a version, and EKS then upgrades the cluster on its own."""
    today = pricer.today or dt.datetime.now(dt.UTC).date()
    status = eks_versions.support_status(version, today)
    counts = eks_versions.days_by_phase(version, today)
    standard_usd, src = pricer.fixed("eks_cluster_hourly")
    if status is None or counts is None:
        pricer.add(res, "EKS control plane", standard_usd * pricer.hours, standard_usd * pricer.hours, src)
        return
    extended_usd, extended_src = pricer.fixed("eks_cluster_extended_hourly")
    window = sum(counts.values())
    extended_days = window - counts["standard"]
    hourly = (standard_usd * counts["standard"] + extended_usd * extended_days) / window
    description = f"EKS control plane ({status.describe()}"
    if 0 < extended_days < window:
        description += f"; {extended_days} of the next {window} days at the extended-support rate"
    pricer.add(
        res, description + ")", hourly * pricer.hours, hourly * pricer.hours, src if not extended_days else extended_src
    )


def _platform_load_balancers(pricer: _Pricer, res: Mapping[str, Any], props: Mapping[str, Any]) -> None:
    """One ALB per IngressGroup with an enabled member, on a cluster whose controller is enabled."""
    labels = (props.get("metadata") or {}).get("labels") or {}
    key, value = CLUSTER_SECRET_LABEL
    if labels.get(key) != value or labels.get(f"enable_{LB_CONTROLLER_ADDON}") != "true":
        return
    usd, src = pricer.fixed("alb_hourly")
    for group, addons in sorted(ALB_GROUPS.items()):
        enabled = [a for a in addons if labels.get(f"enable_{a}") == "true"]
        if enabled:
            description = f"Application Load Balancer, IngressGroup {group} ({', '.join(enabled)})"
            pricer.add(res, description, usd * pricer.hours, usd * pricer.hours, src)


def _platform_volumes(pricer: _Pricer, res: Mapping[str, Any], props: Mapping[str, Any]) -> None:
    """The gp3 volumes the enabled add-ons' StatefulSets claim (cdao_cost.volumes), per replica."""
    labels = (props.get("metadata") or {}).get("labels") or {}
    key, value = CLUSTER_SECRET_LABEL
    if labels.get(key) != value:
        return
    if not volumes.PLATFORM.is_dir():
        # Installed away from the repository: the values that size the claims are not here.
        pricer.missing(res, f"volumes platform/'s add-ons claim ({volumes.PLATFORM} not found)")
        return
    for volume in volumes.claimed_volumes(labels):
        if volume.storage_class not in (None, "gp3"):
            pricer.missing(res, f"{volume.workload} volume of storage class {volume.storage_class}")
            continue
        usd, src = pricer.fixed("ebs_gp3_gb_month")
        cost = usd * volume.gib * volume.replicas
        description = f"{volume.workload} volume, {volume.replicas} x {volume.gib:g} GiB gp3 (PersistentVolumeClaim)"
        pricer.add(res, description, cost, cost, src)


def _node_group(
    pricer: _Pricer, res: Mapping[str, Any], props: Mapping[str, Any], templates: Mapping[str, Any]
) -> None:
    scaling = props.get("scalingConfig") or {}
    template = templates.get((props.get("launchTemplate") or {}).get("name"), {})
    types = props.get("instanceTypes") or ([template["instanceType"]] if template.get("instanceType") else [])
    if not types:
        pricer.missing(res, "a node group without instance types")
        return
    # Managed node groups launch on-demand capacity in the listed order, so the first type is what
    # an idle pool runs; spot capacity is priced with the documented spot factor.
    itype = types[0]
    price = pricer.hourly("ec2_hourly", itype)
    if price is None:
        pricer.missing(res, f"instance type {itype}")
        return
    usd, src = price
    spot = props.get("capacityType") == "SPOT"
    if spot:
        usd *= pricer.spot_factor
    low, high = int(_num(scaling.get("minSize"))), int(_num(scaling.get("maxSize")))
    per_node = usd * pricer.hours
    disk_gb = _root_volume_gb(template) or _num(props.get("diskSize"))
    gb_usd, _ = pricer.fixed("ebs_gp3_gb_month")
    per_node += disk_gb * gb_usd
    label = f"{low}-{high} x {itype}{' spot' if spot else ''}" + (f" + {disk_gb:g} GB gp3 each" if disk_gb else "")
    pricer.add(res, label, per_node * low, per_node * high, src)


def _root_volume_gb(template: Mapping[str, Any]) -> float:
    return sum(_num((m.get("ebs") or {}).get("volumeSize")) for m in template.get("blockDeviceMappings") or [])


def _rds(pricer: _Pricer, res: Mapping[str, Any], props: Mapping[str, Any]) -> None:
    klass = props.get("instanceClass")
    price = pricer.hourly("rds_hourly", klass)
    if price is None:
        pricer.missing(res, f"RDS class {klass}")
        return
    usd, src = price
    copies = 2 if props.get("multiAz") else 1
    gb_usd, _ = pricer.fixed("rds_gp3_gb_month")
    storage = _num(props.get("allocatedStorage"))
    # Storage autoscaling grows the volume up to maxAllocatedStorage under load and never shrinks it.
    storage_peak = _num(props.get("maxAllocatedStorage"), storage) or storage
    idle = (usd * pricer.hours + storage * gb_usd) * copies
    peak = (usd * pricer.hours + storage_peak * gb_usd) * copies
    az = "Multi-AZ" if copies == 2 else "single-AZ"
    pricer.add(res, f"{klass} {az}, {storage:g}-{storage_peak:g} GB gp3", idle, peak, src)
    if props.get("manageMasterUserPassword"):
        secret_usd, secret_src = pricer.fixed("secret_month")
        pricer.add(res, "RDS-managed master password secret", secret_usd, secret_usd, secret_src)


def _batch(pricer: _Pricer, res: Mapping[str, Any], props: Mapping[str, Any]) -> None:
    compute = props.get("computeResources") or {}
    if compute.get("type") in {"FARGATE", "FARGATE_SPOT"}:
        pricer.missing(res, "Fargate vCPU-hours (not in the table)")
        return
    per_vcpu = []
    for itype in compute.get("instanceTypes") or []:
        price = pricer.hourly("ec2_hourly", itype)
        if price is None or itype not in INSTANCE_TYPES:
            pricer.missing(res, f"instance type {itype}")
            return
        per_vcpu.append((price[0] / INSTANCE_TYPES[itype].vcpus, price[1]))
    if not per_vcpu:
        pricer.missing(res, "a compute environment without explicit instance types")
        return
    # Batch's allocation strategies favour the cheapest capacity per vCPU that fits the jobs.
    usd, src = min(per_vcpu)
    if compute.get("type") == "SPOT":
        usd *= pricer.spot_factor
    low, high = int(_num(compute.get("minVcpus"))), int(_num(compute.get("maxVcpus")))
    pricer.add(
        res,
        f"{low}-{high} vCPUs{' spot' if compute.get('type') == 'SPOT' else ''}",
        usd * pricer.hours * low,
        usd * pricer.hours * high,
        src,
    )
