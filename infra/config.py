"""The stack configuration: every key the program reads, documented once, with its default.

A stack file (environments/Pulumi.<stack>.yaml) holds only what differs from the defaults below.
Keys live in the `cdao:` namespace; the AWS region is the provider's own `aws:region`. The stack
registry's keys (cdao_stacks, which reads them from every stack file for `cdao`) have their own
namespace, `cdao-stack:`, which the infra/ code of an older pin ignores instead of refusing.

Key                        Default                       Meaning
aws:region                 (required)                    region of every resource
cdao-stack:profile         (required)                    the policy profile the stack follows: dev, staging, prod
                                                         (teardown may delete data only under dev's)
cdao-stack:promotesFrom    (none)                        the stack this one is promoted from (`cdao promote`); a
                                                         stack that has one pins gitops.revision to a commit
cdao:team                  (required)                    `team` tag on every taggable resource
cdao:costCenter            (required)                    `cost-center` tag on every taggable resource
cdao:network               NetworkConfig                 VPC CIDR, AZs, subnets, NAT layout, flow logs, transit gateway
cdao:cluster               ClusterConfig                 EKS version, API access and deploy roles (required), logs
cdao:nodePools             DEFAULT_NODE_POOLS            per-pool overrides, merged onto the four default pools
cdao:database              DatabaseConfig                RDS PostgreSQL for flyteadmin and datacatalog
cdao:storage               StorageConfig                 S3 buckets, EFS, and who may copy the ECR images
cdao:codeweave             CodeweaveConfig               the external GPU cloud's account (cross-account role)
cdao:codeweaveExternalId   (secret; required if enabled) external ID Codeweave presents (`config set --secret`)
cdao:gitops                GitOpsConfig                  Argo CD chart and the Git source of platform/
cdao:addons                all false                     `enable_<addon>` labels on the Argo CD cluster Secret
cdao:flyte                 (hostname, certificateValidation) Flyte name and its certificate; projects (namespace, roles)
cdao:batch                 BatchConfig                   AWS Batch instance types and vCPU ceiling
cdao:backup                BackupConfig                  AWS Backup of RDS, EFS and tagged EBS: retention, copy region

Parsing happens once, before any resource is declared; any bad value raises ConfigError with one
message naming the stack, the key, the value and what was expected, so nothing half-built is left.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import cdao_pools
from cdao_pools import NODE_POOLS, workload_label
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from cdao_catalog import eks_versions
from cdao_catalog.instances import INSTANCE_TYPES, MIG_PROFILES, MIG_SLICES_PER_GPU
from cdao_stacks import NAMESPACE as REGISTRY_NAMESPACE
from cdao_stacks import EntryError, StackEntry, parse_entry
from infra import names

NAMESPACE = "cdao"
SECRET_KEYS = ("codeweaveExternalId",)


# CloudWatch Logs accepts only these retention periods (days): botocore's logs 2014-03-28 model, shape
# `Days` (PutRetentionPolicy retentionInDays), which lists up to 3653.
LOG_RETENTION_DAYS = (
    *(1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557),
    *(2922, 3288, 3653),
)
EKS_ADDON_NAMES = ("vpc-cni", "coredns", "kube-proxy", "aws-ebs-csi-driver", "aws-efs-csi-driver")
EKS_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")

_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
# An IAM role ARN (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-arns).
_ROLE_ARN = r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+"


class ConfigError(ValueError):
    """A stack's configuration is invalid; the message names stack, key, value and expectation."""

    def __init__(self, stack: str, problems: list[tuple[str, Any, str]]):
        self.stack = stack
        self.problems = problems
        lines = [f"stack {stack!r}: {key} = {_show(value)}: expected {expected}" for key, value, expected in problems]
        super().__init__("invalid stack configuration\n  " + "\n  ".join(lines))

    @property
    def keys(self) -> list[str]:
        return [key for key, _, _ in self.problems]


def _show(value: Any) -> str:
    if value is _MISSING:
        return "<missing>"
    if value is _SECRET:
        return "<secret>"
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


_MISSING = object()
_SECRET = object()  # stands for a secret's value in messages, which must never echo it


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)


class NetworkConfig(_Model):
    """VPC layout. Subnet lists, when given, hold one CIDR per AZ in the order of availabilityZones;
    when omitted they are carved from vpcCidr: private /+3 blocks (room for pod IPs under the VPC CNI),
    public and database /+6 blocks from the last /+3 block."""

    vpc_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.0.0.0/16")
    availability_zones: list[str] | None = Field(default=None, min_length=2, max_length=4)
    public_subnet_cidrs: list[ipaddress.IPv4Network] | None = None
    private_subnet_cidrs: list[ipaddress.IPv4Network] | None = None
    database_subnet_cidrs: list[ipaddress.IPv4Network] | None = None
    nat_gateways: Literal["single", "one-per-az"] = "one-per-az"
    flow_log_retention_days: int = 90
    interface_endpoints: bool = False
    # The transit gateway (already shared with this account and accepting attachments) through which
    # the networks in cdao:cluster.privateAccessCidrs reach this VPC: the program attaches the private
    # subnets to it and routes each of those CIDRs to it from every private route table, so the
    # control plane's ENIs can answer them (EKS user guide, cluster-endpoint.html, "Accessing a
    # private only API server": a connected network needs a route to the VPC, and back).
    transit_gateway_id: str | None = Field(default=None, pattern=r"^tgw-[0-9a-f]{8}([0-9a-f]{9})?$")


class ClusterConfig(_Model):
    # The newest minor in EKS's calendar (cdao_catalog/eks_versions.yaml): the longest standard support.
    kubernetes_version: str = Field(default_factory=eks_versions.newest_version, pattern=r"^1\.\d{2}$")
    # EKS managed add-on versions by add-on name (vpc-cni, coredns, kube-proxy, aws-ebs-csi-driver,
    # aws-efs-csi-driver); an add-on not listed gets EKS's default build for kubernetesVersion.
    addon_versions: dict[str, str] = {}
    # How whatever runs Pulumi (a laptop, a CI runner) reaches the Kubernetes API that `gitops`
    # installs Argo CD through. The private endpoint is always on, but pulumi-eks's cluster security
    # group admits 443 only from the node security group (pulumi/pulumi-eks
    # nodejs/eks/nodes/securitygroup.ts, `eksClusterIngressRule`): every other client needs either the
    # public endpoint restricted to `publicAccessCidrs`, or an ingress rule on that group from
    # `privateAccessCidrs` (networks routed into the VPC: VPN, peered runner VPCs) or from
    # `privateAccessSecurityGroupIds` (security groups of hosts inside the VPC). The public CIDRs or a
    # private CIDR outside vpcCidr are required: hosts inside the VPC cannot exist before it does.
    endpoint_public_access: bool = False
    public_access_cidrs: list[ipaddress.IPv4Network] = []
    private_access_cidrs: list[ipaddress.IPv4Network] = []
    private_access_security_group_ids: list[str] = []
    enabled_log_types: list[Literal["api", "audit", "authenticator", "controllerManager", "scheduler"]] = list(
        EKS_LOG_TYPES
    )
    log_retention_days: int = 90
    # Retention of the container log group infra/ creates for fluent-bit (the one owner of it).
    container_log_retention_days: int = 30
    # Who may administer the cluster (EKS access entries with AmazonEKSClusterAdminPolicy). Required:
    # the role(s) that run `pulumi up` for this stack (docs/github-setup.md: cdao-github-deploy-<stack>),
    # else a stack created from a laptop cannot be updated by CI and vice versa. The principal that
    # creates the cluster gets its entry from EKS itself (pulumi-eks sets
    # bootstrapClusterCreatorAdminPermissions: true), so the first deploy role listed must create it
    # and gets no declared entry (a second entry for one principal fails with ResourceInUseException).
    deploy_role_arns: list[str] = []
    # Required where the stack keeps data (database.deletionProtection): an administrator's way in when
    # the deploy roles or the identity provider behind them are broken.
    break_glass_role_arn: str | None = None
    # Roles that run `pulumi preview`: an access entry with no access policy (authenticated only), so
    # in-cluster objects preview client-side (infra/components/cluster.py says why).
    preview_role_arns: list[str] = []
    # Further administrators (a platform team's SSO role, ...).
    admin_role_arns: list[str] = []

    @property
    def declared_admin_role_arns(self) -> list[str]:
        """Admin access entries the program declares: every admin but the cluster's creator."""
        extra = [self.break_glass_role_arn] if self.break_glass_role_arn else []
        return [*self.deploy_role_arns[1:], *extra, *self.admin_role_arns]


class Taint(_Model):
    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class GpuSharing(_Model):
    """How a GPU pool's devices are shared. time-slicing: `replicas` pods per GPU (the NVIDIA device
    plugin advertises replicas x GPUs); mig: every GPU is cut into `migProfiles` (mixed strategy)."""

    mode: Literal["none", "time-slicing", "mig"] = "none"
    replicas: int | None = Field(default=None, ge=2, le=8)
    mig_profiles: list[str] = []


class NodePoolConfig(_Model):
    enabled: bool = True
    instance_types: list[str] = Field(min_length=1)
    capacity_type: Literal["ON_DEMAND", "SPOT"] = "ON_DEMAND"
    min_size: int = Field(ge=0)
    desired_size: int | None = Field(default=None, ge=0)
    max_size: int = Field(ge=1, le=450)
    disk_size_gb: int = Field(default=100, ge=20, le=16384)
    workload_types: list[str] = Field(min_length=1)
    labels: dict[str, str] = {}
    taints: list[Taint] = []
    gpu_sharing: GpuSharing = GpuSharing()

    @property
    def initial_size(self) -> int:
        return self.min_size if self.desired_size is None else self.desired_size


class DatabaseConfig(_Model):
    """RDS PostgreSQL. `engineVersion` is the major only: RDS applies minors in the maintenance
    window (autoMinorVersionUpgrade), and the provider leaves a configured prefix of the running
    version alone, while a full `16.8` would be set back after every AWS upgrade (pulumi_aws
    rds.Instance.engine_version; terraform-provider-aws internal/service/rds/engine_version.go,
    compareActualEngineVersion). A higher major needs `allowMajorVersionUpgrade: true` in the same
    change; the parameter group's family follows the major. `skipFinalSnapshot` only on dev stacks."""

    instance_class: str = Field(default="db.r6g.large", pattern=r"^db\.[a-z0-9]+\.[a-z0-9]+$")
    engine_version: str = Field(default="16", pattern=r"^\d+(\.\d+)*$")
    allow_major_version_upgrade: bool = False
    skip_final_snapshot: bool = False
    allocated_storage_gb: int = Field(default=50, ge=20, le=65536)
    max_allocated_storage_gb: int = Field(default=200, ge=20, le=65536)
    multi_az: bool = True
    deletion_protection: bool = True
    backup_retention_days: int = Field(default=14, ge=1, le=35)


class StorageConfig(_Model):
    """`forceDestroy` (dev stacks only) lets `pulumi destroy` empty what holds data: the S3 buckets,
    the ECR repositories and the AWS Backup vault's recovery points."""

    noncurrent_version_expiration_days: int = Field(default=90, ge=1)
    abort_incomplete_upload_days: int = Field(default=7, ge=1)
    # The replica buckets' region (pulumi_aws's provider for it); another region than the stack's.
    replication_region: str | None = Field(default=None, pattern=f"^{names.AWS_REGION}$")
    force_destroy: bool = False
    # Roles of other accounts that copy this stack's images into their own registry: the ECR push role
    # of each stack promoted from this one (deploy.yml's image-<stack>, docs/github-setup.md step 3).
    # The ECR repositories' policy allows them to pull, and nothing else (infra/components/compute.py).
    image_pull_role_arns: list[Annotated[str, Field(pattern=f"^{_ROLE_ARN}$")]] = []


class CodeweaveConfig(_Model):
    enabled: bool = False
    account_id: str | None = Field(default=None, pattern=r"^\d{12}$")
    endpoint: str | None = Field(default=None, pattern=r"^https://[^\s/]+(/\S*)?$")


class BatchConfig(_Model):
    """AWS Batch compute environments (one spot, one on-demand), both scaling from zero vCPUs."""

    instance_types: list[str] = Field(default=["m5.xlarge", "m5.2xlarge", "c5.2xlarge"], min_length=1)
    max_vcpus: int = Field(default=256, ge=1, le=10000)


class FlyteConfig(_Model):
    """Flyte projects; each gets a namespace and an IRSA role per domain (development, staging,
    production), which reaches only its own project-domain's Flyte metadata, fast-registered code and
    raw data (`userdata`'s `data/<project>/<domain>/`, set as every execution's raw output location at
    registration: cdao_cli/flyte_projects.py); it only reads the shared inputs and SageMaker outputs,
    no task role reaches MLflow's artifacts, and only production's publish model weights
    (infra/lib/mlops.py)."""

    projects: list[str] = Field(default=["ml-experiments"], min_length=1)
    # Console and API name; infra/ requests its ACM certificate and hands its ARN to platform/ only
    # once ACM has issued it (no ALB ever gets a pending certificate).
    hostname: str = Field(max_length=253, pattern=r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
    # How the certificate's DNS validation record gets created (required, no default: ACM gives up on
    # an unvalidated request after 72 hours): "route53", infra/ writes it into hostedZoneId;
    # "external", the DNS owner creates the record `cdao plan` lists while `pulumi up` waits for the
    # certificate, reading it from ACM (docs/first-deploy.md, step 5): the stack output
    # flyteCertificateValidationRecord appears only once the run has ended.
    certificate_validation: Literal["route53", "external"] | None = None
    hosted_zone_id: str | None = Field(default=None, pattern=r"^Z[A-Z0-9]{1,31}$")


class GitOpsConfig(_Model):
    repo_url: str = Field(pattern=r"^(https://|git@|ssh://)\S+$")
    revision: str = "main"
    path: str = "platform"
    argocd_chart_version: str = Field(default="7.8.0", pattern=r"^\d+\.\d+\.\d+$")
    # Chart versions this environment runs, by add-on chart key: promoted with the revision
    # (`cdao promote`) and handed to platform/ as `cdao.io/chart-version-<key>` annotations.
    chart_versions: dict[str, str] = {}


class AddonsConfig(_Model):
    """Which platform/ add-ons Argo CD installs: each becomes an `enable_<addon>` cluster label."""

    flyte: bool = False
    connectors: bool = False
    linkerd: bool = False
    observability: bool = False
    gpu_operator: bool = False
    cluster_autoscaler: bool = False
    keda: bool = False
    external_secrets: bool = False
    aws_load_balancer_controller: bool = False
    security_baseline: bool = False
    # The GPU architecture's upper layers (platform/README.md): the Kubeflow training operator that
    # Flyte's PyTorch plugin submits PyTorchJobs to, vLLM on the MIG pool, MLflow.
    training_operator: bool = False
    inference: bool = False
    mlflow: bool = False


# The cdao:gitops.chartVersions keys each add-on's ApplicationSets read (platform/bootstrap/appsets,
# as `cdao.io/chart-version-<key>`; tests/platform/test_pins.py keeps the two equal). Go's `index`
# renders a missing annotation as "", so an enabled add-on without its pin is refused here instead
# of reaching Argo CD as `targetRevision: ''`.
ADDON_CHART_KEYS: dict[str, tuple[str, ...]] = {
    "flyte": ("flyte-core",),
    # The connector's image tag is not a pin: it is the revision's commit (infra/images.py).
    "connectors": (),
    "linkerd": ("cert-manager", "trust-manager", "linkerd2-cni", "linkerd-crds", "linkerd-control-plane"),
    "observability": ("kube-prometheus-stack", "aws-for-fluent-bit", "opentelemetry-collector"),
    "gpu_operator": ("gpu-operator",),
    "cluster_autoscaler": ("cluster-autoscaler",),
    "keda": ("keda", "metrics-server"),
    "external_secrets": ("external-secrets",),
    "aws_load_balancer_controller": ("aws-load-balancer-controller",),
    "security_baseline": (),
    "training_operator": ("training-operator",),
    "inference": ("vllm", "aws-cli"),
    "mlflow": ("mlflow",),
}


class BackupConfig(_Model):
    """AWS Backup of the stack's state that Git cannot rebuild: the RDS instance, the EFS file system
    and EBS volumes the `gp3-backup` StorageClass creates (tagged cdao.io/backup=true and the cluster).
    A daily rule keeps `dailyRetentionDays`; `monthlyRetentionDays` > 0 adds a monthly rule; with
    `copyRegion` every recovery point is also copied to a vault there (a regional disaster);
    `vaultLock` puts the vault under a governance-mode lock (no early deletion of recovery points)."""

    enabled: bool = True
    daily_retention_days: int = Field(default=35, ge=1, le=36500)
    monthly_retention_days: int = Field(default=0, ge=0, le=36500)
    copy_region: str | None = Field(default=None, pattern=f"^{names.AWS_REGION}$")
    vault_lock: bool = False

    @property
    def max_retention_days(self) -> int:
        return max(self.daily_retention_days, self.monthly_retention_days)


# Letters, digits, spaces and _ . : / = + - @ (names.TAGS_SOURCE); the reserved prefix in _check_tags.
_TAG_VALUE = r"^[A-Za-z0-9_.:/=+\-@ ]+$"


class StackConfig(_Model):
    stack: str
    # `cdao-stack:*`: the policy profile and the place in promotion (cdao_stacks owns the keys).
    entry: StackEntry
    region: str
    # Both become tag values on every taggable resource: AWS's characters and length (infra/names.py).
    team: str = Field(min_length=1, max_length=names.LIMITS["aws-tag-value"].max_length, pattern=_TAG_VALUE)
    cost_center: str = Field(min_length=1, max_length=names.LIMITS["aws-tag-value"].max_length, pattern=_TAG_VALUE)
    network: NetworkConfig = NetworkConfig()
    cluster: ClusterConfig = ClusterConfig()
    node_pools: dict[str, NodePoolConfig]
    database: DatabaseConfig = DatabaseConfig()
    storage: StorageConfig = StorageConfig()
    codeweave: CodeweaveConfig = CodeweaveConfig()
    gitops: GitOpsConfig
    addons: AddonsConfig = AddonsConfig()
    flyte: FlyteConfig
    batch: BatchConfig = BatchConfig()
    backup: BackupConfig = BackupConfig()

    @property
    def azs(self) -> list[str]:
        return list(self.network.availability_zones or [])

    def subnet_cidrs(self, tier: Literal["public", "private", "database"]) -> list[str]:
        return [str(c) for c in getattr(self.network, f"{tier}_subnet_cidrs")]

    def log_retention_days(self) -> dict[str, tuple[str, int]]:
        """The retention (days) each log group the program owns must keep, by the group's key in the
        stack output `logGroups`, with the stack-file key that declares it:
        `{"controlPlane": ("cdao:cluster.logRetentionDays", 90), ...}`."""
        return {
            "controlPlane": ("cdao:cluster.logRetentionDays", self.cluster.log_retention_days),
            "containers": ("cdao:cluster.containerLogRetentionDays", self.cluster.container_log_retention_days),
            "flowLogs": ("cdao:network.flowLogRetentionDays", self.network.flow_log_retention_days),
        }

    @property
    def tags(self) -> dict[str, str]:
        return {
            "environment": self.stack,
            "team": self.team,
            "cost-center": self.cost_center,
            "managed-by": "pulumi",
        }

    @property
    def destroyable(self) -> bool:
        """Whether a teardown may delete the stack's data (its profile's, cdao_stacks.DESTROYABLE_PROFILES)."""
        return self.entry.destroyable

    @property
    def enabled_pools(self) -> dict[str, NodePoolConfig]:
        return {name: pool for name, pool in self.node_pools.items() if pool.enabled}


# The seeds' node-pool architecture (CPU for control and MLOps; A100 time-sliced for research and
# training; A100 MIG for production inference; H100 time-sliced for training). Workload types, taints
# and GPU sharing are cdao_pools' (the SDK routes tasks by them); the sizes and instance types are
# this program's. GPU pools start at zero: an idle p4d costs about $16,000 a month.
_POOL_SHAPES: dict[str, dict[str, Any]] = {
    "cpu": {
        "instanceTypes": ["m5.2xlarge", "m5.4xlarge"],
        "capacityType": "ON_DEMAND",
        "minSize": 2,
        "maxSize": 10,
        "diskSizeGb": 100,
    },
    "a100-timeslice": {"instanceTypes": ["p4d.24xlarge"], "minSize": 0, "maxSize": 4, "diskSizeGb": 500},
    "a100-mig": {"instanceTypes": ["p4de.24xlarge"], "minSize": 0, "maxSize": 2, "diskSizeGb": 500},
    "h100-timeslice": {"instanceTypes": ["p5.48xlarge"], "minSize": 0, "maxSize": 2, "diskSizeGb": 1000},
}
DEFAULT_NODE_POOLS: dict[str, dict[str, Any]] = {
    name: {
        **shape,
        "workloadTypes": list(NODE_POOLS[name].workload_types),
        **({"taints": [{"key": t.key, "value": t.value, "effect": t.effect}]} if (t := NODE_POOLS[name].taint) else {}),
        **({"gpuSharing": NODE_POOLS[name].gpu_sharing} if NODE_POOLS[name].gpu_model else {}),
    }
    for name, shape in _POOL_SHAPES.items()
}

_SECTIONS = {
    "team": "team",
    "costCenter": "cost_center",
    "network": "network",
    "cluster": "cluster",
    "nodePools": "node_pools",
    "database": "database",
    "storage": "storage",
    "codeweave": "codeweave",
    "gitops": "gitops",
    "addons": "addons",
    "flyte": "flyte",
    "batch": "batch",
    "backup": "backup",
}


def parse_stack_config(stack: str, raw: Mapping[str, Any]) -> tuple[StackConfig, dict[str, str]]:
    """Parse a stack's raw Pulumi config (`{"cdao:network": {...}, "aws:region": "..."}`; values may
    be JSON strings as the engine passes them) into a StackConfig, plus the secrets it carries.

    Raises ConfigError naming every bad key; never returns a partially valid config.
    """
    problems: list[tuple[str, Any, str]] = []
    values: dict[str, Any] = {"stack": stack}
    secrets: dict[str, str] = {}

    for full_key, value in raw.items():
        namespace, _, key = full_key.partition(":")
        if namespace == "aws" and key == "region":
            values["region"] = value
            continue
        if namespace == REGISTRY_NAMESPACE:
            continue  # parse_entry below
        if namespace != NAMESPACE:
            continue  # provider and engine settings (aws:*, pulumi:*) are not ours to judge
        decoded = _decode(value)
        if key in SECRET_KEYS:
            if not isinstance(decoded, str) or not decoded:
                problems.append((full_key, _SECRET, "a non-empty string set with `pulumi config set --secret`"))
            else:
                secrets[key] = decoded
        elif key in _SECTIONS:
            values[_SECTIONS[key]] = decoded
        else:
            known = ", ".join(f"{NAMESPACE}:{k}" for k in [*_SECTIONS, *SECRET_KEYS])
            problems.append((full_key, decoded, f"a known key ({known})"))

    try:
        values["entry"] = parse_entry(raw, f"stack {stack!r}")
    except EntryError as exc:
        problems.append((exc.key, _MISSING if exc.value is None else exc.value, exc.expected))
    if "region" not in values:
        problems.append(("aws:region", _MISSING, "an AWS region such as us-east-1"))
    elif not isinstance(values["region"], str) or not re.fullmatch(names.AWS_REGION, values["region"]):
        problems.append(("aws:region", values["region"], "an AWS region such as us-east-1"))

    pools, pool_problems = _merge_pools(values.get("node_pools"))
    problems += pool_problems
    values["node_pools"] = pools
    if problems:
        raise ConfigError(stack, problems)

    try:
        config = StackConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(stack, [_describe(err, values) for err in exc.errors()]) from None

    config = _with_derived_network(config)
    problems = _cross_checks(config, secrets)
    if problems:
        raise ConfigError(stack, problems)
    return config, secrets


def _decode(value: Any) -> Any:
    # The engine hands structured config to the program as JSON text; the offline plan passes objects.
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _merge_pools(overrides: Any) -> tuple[dict[str, Any], list[tuple[str, Any, str]]]:
    pools = copy.deepcopy(DEFAULT_NODE_POOLS)
    if overrides is None:
        return pools, []
    if not isinstance(overrides, dict):
        return pools, [(f"{NAMESPACE}:nodePools", overrides, "a mapping of pool name to pool settings")]
    problems = []
    for name, override in overrides.items():
        if not isinstance(override, dict):
            problems.append((f"{NAMESPACE}:nodePools.{name}", override, "a mapping of pool settings"))
            continue
        # Lists (instance types, taints, labels' values) replace rather than extend: a stack that
        # narrows a pool to one instance type must not inherit the default's others.
        pools[name] = {**pools.get(name, {}), **override}
    return pools, problems


def _expected_network(value: Any) -> str:
    """What to write instead of `value` for an IPv4Network field. Pydantic parses it with
    ipaddress.IPv4Network(strict=True) (pydantic docs, "Network Types"), which refuses host bits set
    as AWS does (e.g. EKS's publicAccessCidrs, EC2's CreateSubnet); its message ("Input is not a valid
    IPv4 network") says neither which part is wrong nor what to write."""
    try:
        network = ipaddress.IPv4Network(str(value), strict=False)
    except ValueError:
        return "an IPv4 network in CIDR notation, such as 10.0.0.0/16 (four octets 0-255, a prefix length 0-32)"
    return f"an IPv4 network with no host bits set after the /{network.prefixlen}: write {network}"


def _describe(err: Mapping[str, Any], values: Mapping[str, Any]) -> tuple[str, Any, str]:
    loc = [str(p) for p in err["loc"]]
    section = next((k for k, v in _SECTIONS.items() if v == loc[0]), loc[0]) if loc else ""
    if section in {"stack", "region"}:
        key = "aws:region" if section == "region" else "stack"
    else:
        key = f"{NAMESPACE}:{section}" + "".join(f".{p}" if not p.isdigit() else f"[{p}]" for p in loc[1:])
    value: Any = _MISSING if err["type"] == "missing" else err.get("input", _MISSING)
    message = err["msg"]
    if err["type"] == "missing":
        expected = "a value (this key is required)"
    elif err["type"] == "extra_forbidden":
        expected = "no such key (it is not part of the schema; check its spelling)"
    elif err["type"] == "literal_error":
        expected = message.removeprefix("Input should be ")
    elif err["type"] == "ip_v4_network":
        expected = _expected_network(value)
    else:
        # "Input is not a valid X" must read "expected a valid X", not "expected not a valid X".
        expected = message.removeprefix("Input should be ").removeprefix("Input is not ").removeprefix("Input is ")
        expected = expected[0].lower() + expected[1:]
    return key, value, expected


def _derive_subnets(net: NetworkConfig, count: int) -> dict[str, list[ipaddress.IPv4Network]]:
    vpc = net.vpc_cidr
    large = list(vpc.subnets(new_prefix=vpc.prefixlen + 3))
    small = list(large[-1].subnets(new_prefix=vpc.prefixlen + 6))
    return {
        "private": large[:count],
        "public": small[:count],
        "database": small[4 : 4 + count],
    }


def _with_derived_network(config: StackConfig) -> StackConfig:
    net = config.network
    azs = net.availability_zones or [f"{config.region}{suffix}" for suffix in "abc"]
    updates: dict[str, Any] = {"availability_zones": azs}
    if net.vpc_cidr.prefixlen <= 22:
        derived = _derive_subnets(net, len(azs))
        for tier, cidrs in derived.items():
            if getattr(net, f"{tier}_subnet_cidrs") is None:
                updates[f"{tier}_subnet_cidrs"] = cidrs
    return config.model_copy(update={"network": net.model_copy(update=updates)})


def _cross_checks(config: StackConfig, secrets: Mapping[str, str]) -> list[tuple[str, Any, str]]:
    return [
        *_check_network(config),
        *_check_cluster(config),
        *_check_pools(config),
        *_check_database(config),
        *_check_teardown(config),
        *_check_names(config),
        *_check_gitops(config),
        *_check_codeweave(config, secrets),
        *_check_backup(config),
        *_check_storage(config),
        *_check_tags(config),
    ]


def _check_tags(config: StackConfig) -> list[tuple[str, Any, str]]:
    """The tag values the config sets on every taggable resource; the pattern and length are the
    fields' own (names.TAGS_SOURCE)."""
    return [
        (f"{NAMESPACE}:{key}", value, f"a value not starting with {names.RESERVED_TAG_PREFIX} ({names.TAGS_SOURCE})")
        for key, value in (("team", config.team), ("costCenter", config.cost_center))
        if value.lower().startswith(names.RESERVED_TAG_PREFIX)
    ]


def _check_backup(config: StackConfig) -> list[tuple[str, Any, str]]:
    backup, key = config.backup, f"{NAMESPACE}:backup"
    problems = []
    if backup.monthly_retention_days and backup.monthly_retention_days < backup.daily_retention_days:
        problems.append(
            (
                f"{key}.monthlyRetentionDays",
                backup.monthly_retention_days,
                f"0 (no monthly backups) or at least dailyRetentionDays ({backup.daily_retention_days})",
            )
        )
    problems += _check_other_region(config, f"{key}.copyRegion", backup.copy_region)
    return problems


def _check_other_region(config: StackConfig, key: str, region: str | None) -> list[tuple[str, Any, str]]:
    """A copy (backups, replica buckets) in the stack's own region survives no regional outage and
    doubles the storage bill; the region's format is checked by the field's names.AWS_REGION pattern."""
    return [(key, region, f"a region other than {config.region}")] if region == config.region else []


def _check_storage(config: StackConfig) -> list[tuple[str, Any, str]]:
    return _check_other_region(config, f"{NAMESPACE}:storage.replicationRegion", config.storage.replication_region)


def _check_network(config: StackConfig) -> list[tuple[str, Any, str]]:
    net, key = config.network, f"{NAMESPACE}:network"
    problems = []
    azs = net.availability_zones or []
    if len(set(azs)) != len(azs):
        problems.append((f"{key}.availabilityZones", azs, "distinct availability zones"))
    for az in azs:
        if not re.fullmatch(re.escape(config.region) + r"[a-z]", az):
            problems.append((f"{key}.availabilityZones", az, f"a zone of {config.region} (e.g. {config.region}a)"))
    if net.flow_log_retention_days not in LOG_RETENTION_DAYS:
        problems.append(
            (f"{key}.flowLogRetentionDays", net.flow_log_retention_days, f"one of {list(LOG_RETENTION_DAYS)}")
        )
    seen: list[tuple[str, ipaddress.IPv4Network]] = []
    for tier in ("public", "private", "database"):
        cidrs = getattr(net, f"{tier}_subnet_cidrs")
        tier_key = f"{key}.{tier}SubnetCidrs"
        if cidrs is None:
            problems.append(
                (
                    tier_key,
                    _MISSING,
                    f"one CIDR per AZ (vpcCidr /{net.vpc_cidr.prefixlen} is too small to carve)",
                )
            )
            continue
        if len(cidrs) != len(azs):
            problems.append((tier_key, [str(c) for c in cidrs], f"exactly {len(azs)} CIDRs, one per availability zone"))
        for cidr in cidrs:
            if not cidr.subnet_of(net.vpc_cidr):
                problems.append((tier_key, str(cidr), f"a block inside vpcCidr {net.vpc_cidr}"))
            elif cidr.prefixlen > 28:
                problems.append((tier_key, str(cidr), "a prefix of /28 or larger (the smallest AWS subnet)"))
            for other_key, other in seen:
                if cidr.overlaps(other):
                    problems.append((tier_key, str(cidr), f"no overlap with {other} in {other_key}"))
            seen.append((tier_key, cidr))
    return problems


def _check_cluster(config: StackConfig) -> list[tuple[str, Any, str]]:
    cluster, key = config.cluster, f"{NAMESPACE}:cluster"
    problems = []
    if cluster.endpoint_public_access and not cluster.public_access_cidrs:
        # EKS opens a public endpoint to 0.0.0.0/0 when no CIDR is given: make that choice explicit.
        problems.append((f"{key}.publicAccessCidrs", [], "at least one CIDR when endpointPublicAccess is true"))
    status = eks_versions.support_status(cluster.kubernetes_version)
    if status is None and cluster.kubernetes_version in eks_versions.unlisted():
        problems.append(
            (
                f"{key}.kubernetesVersion",
                cluster.kubernetes_version,
                f"a version with its support dates in infra/{eks_versions.CALENDAR_FILE.name}: EKS has "
                f"{cluster.kubernetes_version}, but its row is missing; add both dates from {eks_versions.source()}",
            )
        )
    elif status is None or status.phase == "ended":
        supported = sorted(
            (v for v in eks_versions.calendar() if getattr(eks_versions.support_status(v), "phase", "") != "ended"),
            key=lambda v: tuple(int(p) for p in v.split(".")),
        )
        problems.append(
            (
                f"{key}.kubernetesVersion",
                cluster.kubernetes_version,
                f"a version EKS still supports ({', '.join(supported)}; {eks_versions.CALENDAR_FILE.name})",
            )
        )
    # Clients that exist before this stack's first `pulumi up`: public CIDRs, or networks routed in
    # from outside the VPC. Hosts inside the VPC (its CIDRs, its security groups) come only after it.
    outside = [c for c in cluster.private_access_cidrs if not c.subnet_of(config.network.vpc_cidr)]
    inside_key = "privateAccessCidrs" if cluster.private_access_cidrs else "privateAccessSecurityGroupIds"
    if (
        not cluster.public_access_cidrs
        and not outside
        and (cluster.private_access_cidrs or cluster.private_access_security_group_ids)
    ):
        # A rule can reference a group of this VPC, or of a peered VPC or one behind a transit gateway
        # only with routes to it (VPC peering guide, vpc-peering-security-groups.html); this program
        # creates the VPC, no peering, and routes only privateAccessCidrs outside vpcCidr. So nothing
        # listed can exist before the first `pulumi up` (nor when the stack is re-created).
        problems.append(
            (
                f"{key}.{inside_key}",
                [str(c) for c in cluster.private_access_cidrs] or cluster.private_access_security_group_ids,
                "a way in that exists before this stack creates its VPC, besides clients inside it: "
                "endpointPublicAccess: true with publicAccessCidrs, or privateAccessCidrs outside vpcCidr "
                f"routed through {NAMESPACE}:network.transitGatewayId (EKS user guide, "
                "https://docs.aws.amazon.com/eks/latest/userguide/cluster-endpoint.html; docs/first-deploy.md, step 3)",
            )
        )
    elif not cluster.public_access_cidrs and not cluster.private_access_cidrs:
        problems.append(
            (
                f"{key}.endpointPublicAccess",
                cluster.endpoint_public_access,
                "a way for whatever runs Pulumi to reach the Kubernetes API: endpointPublicAccess: true with "
                "publicAccessCidrs, and/or privateAccessCidrs for the private endpoint (privateAccessSecurityGroupIds "
                "only besides one of these: docs/first-deploy.md, step 3)",
            )
        )
    if outside and cluster.endpoint_public_access:
        # With both endpoints on, only requests from within the VPC use the private endpoint; a client
        # outside it resolves the cluster's name to the public IPs and is judged by publicAccessCidrs
        # (EKS user guide, cluster-endpoint.html, the endpoint access table): the route and the ingress
        # rule built for these networks would never be used.
        problems.append(
            (
                f"{key}.privateAccessCidrs",
                [str(c) for c in outside],
                "no networks outside vpcCidr while endpointPublicAccess is true: those clients resolve the "
                "endpoint to its public IPs; set endpointPublicAccess: false (a private-only endpoint is "
                "resolved by public DNS to the VPC's private IPs), or list their egress addresses in "
                "publicAccessCidrs instead (https://docs.aws.amazon.com/eks/latest/userguide/cluster-endpoint.html)",
            )
        )
    unrouted = [str(c) for c in cluster.private_access_cidrs if not c.subnet_of(config.network.vpc_cidr)]
    if unrouted and config.network.transit_gateway_id is None:
        # The VPC this program creates has only local and NAT routes: replies to a network outside
        # it would be lost, and an ingress rule alone opens nothing (cluster-endpoint.html).
        problems.append(
            (
                f"{key}.privateAccessCidrs",
                unrouted,
                f"CIDRs inside vpcCidr {config.network.vpc_cidr}, or {NAMESPACE}:network.transitGatewayId set to the "
                "transit gateway that routes them into this VPC (docs/first-deploy.md, step 3)",
            )
        )
    if cluster.public_access_cidrs and not cluster.endpoint_public_access:
        problems.append(
            (f"{key}.publicAccessCidrs", [str(c) for c in cluster.public_access_cidrs], "endpointPublicAccess: true")
        )
    for group in cluster.private_access_security_group_ids:
        if not re.fullmatch(r"sg-[0-9a-f]{8}([0-9a-f]{9})?", group):
            problems.append(
                (f"{key}.privateAccessSecurityGroupIds", group, "a security group ID (sg-0123456789abcdef0)")
            )
    if not cluster.deploy_role_arns:
        problems.append(
            (
                f"{key}.deployRoleArns",
                [],
                "the IAM role(s) that run `pulumi up` for this stack, the cluster's creator first "
                "(docs/github-setup.md: cdao-github-deploy-<stack>)",
            )
        )
    if config.database.deletion_protection and not cluster.break_glass_role_arn:
        problems.append(
            (
                f"{key}.breakGlassRoleArn",
                _MISSING,
                "an IAM role ARN for emergency cluster admin (required when cdao:database.deletionProtection is true)",
            )
        )
    for field_name, days in (
        ("logRetentionDays", cluster.log_retention_days),
        ("containerLogRetentionDays", cluster.container_log_retention_days),
    ):
        if days not in LOG_RETENTION_DAYS:
            problems.append((f"{key}.{field_name}", days, f"one of {list(LOG_RETENTION_DAYS)}"))
    roles = {
        "deployRoleArns": cluster.deploy_role_arns,
        "breakGlassRoleArn": [cluster.break_glass_role_arn] if cluster.break_glass_role_arn else [],
        "previewRoleArns": cluster.preview_role_arns,
        "adminRoleArns": cluster.admin_role_arns,
    }
    seen: set[str] = set()
    for field_name, arns in roles.items():
        for arn in arns:
            if not re.fullmatch(_ROLE_ARN, arn):
                problems.append((f"{key}.{field_name}", arn, "an IAM role ARN (arn:aws:iam::<account>:role/<name>)"))
            elif arn in seen:
                # EKS keeps one access entry per principal: a second one fails with ResourceInUseException.
                problems.append((f"{key}.{field_name}", arn, "a role listed once across the cluster's access keys"))
            seen.add(arn)
    return problems


def _reserved_label_domains() -> tuple[str, ...]:
    """Label-key prefixes whose keys someone else sets on the nodes: the program's own labels
    (infra/components/node_pool.py, pool_labels), the GPU operator's feature discovery (NVIDIA/gpu-operator
    v25.10.0 values.yaml: node-feature-discovery.master.config.extraLabelNs ["nvidia.com"]) and
    Kubernetes (kubernetes.io, k8s.io: https://kubernetes.io/docs/reference/labels-annotations-taints/).
    A user label there would win over the program's (pool_labels applies it last) and relabel the
    node group and its autoscaler node template."""
    owned = (
        cdao_pools.NODE_POOL_LABEL,
        cdao_pools.GPU_SHARING_LABEL,
        cdao_pools.WORKLOAD_TYPE_LABEL_PREFIX,
        cdao_pools.MIG_CONFIG_LABEL,
        cdao_pools.DEVICE_PLUGIN_CONFIG_LABEL,
    )
    return tuple(
        dict.fromkeys(
            [*(key.partition("/")[0] for key in (*owned, cdao_pools.ACCELERATOR_LABEL)), "kubernetes.io", "k8s.io"]
        )
    )


def _in_domain(prefix: str, domains: tuple[str, ...]) -> bool:
    return any(prefix == d or prefix.endswith(f".{d}") for d in domains)


def _check_pools(config: StackConfig) -> list[tuple[str, Any, str]]:
    problems = []
    if "cpu" not in config.enabled_pools:
        problems.append((f"{NAMESPACE}:nodePools.cpu", "disabled", "an enabled cpu pool (system add-ons run there)"))
    else:
        # The first `pulumi up` installs CoreDNS, the CSI controllers (Deployments: EKS reports them
        # DEGRADED on a cluster with no node) and Argo CD's atomic Helm release (no tolerations,
        # infra/components/gitops.py) onto this pool before any autoscaler exists: the cluster
        # autoscaler is itself installed later by Argo CD. So the pool starts with a node and takes
        # pods that tolerate nothing.
        cpu, cpu_key = config.node_pools["cpu"], f"{NAMESPACE}:nodePools.cpu"
        if cpu.min_size < 1:
            problems.append(
                (
                    f"{cpu_key}.minSize",
                    cpu.min_size,
                    "at least 1: CoreDNS, the CSI controllers and Argo CD run on the cpu pool before the cluster "
                    "autoscaler (installed by Argo CD) could add a node",
                )
            )
        for i, taint in enumerate(cpu.taints):
            if taint.effect != "PreferNoSchedule":
                problems.append(
                    (
                        f"{cpu_key}.taints[{i}]",
                        taint.model_dump(),
                        "no NoSchedule/NoExecute taint on the cpu pool (PreferNoSchedule at most): Argo CD's pods "
                        "tolerate none, and it is installed there on the first `pulumi up`",
                    )
                )
    reserved = _reserved_label_domains()
    for name, pool in config.node_pools.items():
        key = f"{NAMESPACE}:nodePools.{name}"
        if not _DNS_SUBDOMAIN.fullmatch(name) or len(name) > 40:
            problems.append((f"{NAMESPACE}:nodePools", name, "a pool name of lowercase letters, digits and '-'"))
        if pool.desired_size is not None and not pool.min_size <= pool.desired_size <= pool.max_size:
            problems.append(
                (
                    f"{key}.desiredSize",
                    pool.desired_size,
                    f"minSize ({pool.min_size}) <= desiredSize <= maxSize ({pool.max_size})",
                )
            )
        if pool.min_size > pool.max_size:
            problems.append((f"{key}.minSize", pool.min_size, f"at most maxSize ({pool.max_size})"))
        unknown = [t for t in pool.instance_types if t not in INSTANCE_TYPES]
        for itype in unknown:
            problems.append(
                (
                    f"{key}.instanceTypes",
                    itype,
                    f"a known instance type ({', '.join(sorted(INSTANCE_TYPES))})",
                )
            )
        if not unknown:
            problems += _check_gpu(key, pool)
        for wtype in pool.workload_types:
            if not _LABEL_NAME.fullmatch(wtype) or "." in wtype:
                problems.append((f"{key}.workloadTypes", wtype, "a label-safe name such as batch-inference"))
            elif problem := names.too_long(workload_label(wtype), "eks-label-key"):
                problems.append((f"{key}.workloadTypes", wtype, f"a shorter workload type: its node label {problem}"))
        # EKS limits each whole label key and value, and taint key and value, to 63 characters.
        for label, value in pool.labels.items():
            if problem := names.too_long(label, "eks-label-key"):
                problems.append((f"{key}.labels", label, f"a shorter label key: {problem}"))
            prefix, _, name_part = label.rpartition("/")
            if (prefix and not _DNS_SUBDOMAIN.fullmatch(prefix)) or not _LABEL_NAME.fullmatch(name_part):
                problems.append((f"{key}.labels", label, "a Kubernetes label key ([prefix/]name)"))
            elif _in_domain(prefix, reserved):
                problems.append(
                    (
                        f"{key}.labels",
                        label,
                        "a label outside the prefixes the program, the GPU stack and Kubernetes set "
                        f"({', '.join(reserved)})",
                    )
                )
            if not value or names.too_long(value, "eks-label-value"):
                rule = names.LIMITS["eks-label-value"]
                problems.append(
                    (f"{key}.labels.{label}", value, f"a value of 1-{rule.max_length} characters ({rule.source})")
                )
            elif not _LABEL_VALUE.fullmatch(value):
                problems.append((f"{key}.labels.{label}", value, "a Kubernetes label value (alphanumeric ends)"))
        for i, taint in enumerate(pool.taints):
            if not _LABEL_NAME.fullmatch(taint.key.rpartition("/")[2]):
                problems.append((f"{key}.taints[{i}].key", taint.key, "a Kubernetes taint key"))
            elif problem := names.too_long(taint.key, "eks-taint-key"):
                problems.append((f"{key}.taints[{i}].key", taint.key, f"a shorter taint key: {problem}"))
            if problem := names.too_long(taint.value, "eks-taint-value"):
                problems.append((f"{key}.taints[{i}].value", taint.value, f"a shorter taint value: {problem}"))
    return problems


def _check_gpu(key: str, pool: NodePoolConfig) -> list[tuple[str, Any, str]]:
    kinds = [INSTANCE_TYPES[t] for t in pool.instance_types]
    sharing, problems = pool.gpu_sharing, []
    gpu_models = {k.gpu_model for k in kinds}
    if len(gpu_models) > 1:
        # One pool is one scheduling target: mixing GPU models makes a GPU request's hardware a lottery.
        problems.append((f"{key}.instanceTypes", pool.instance_types, "instance types with one GPU model (or none)"))
        return problems
    kind = kinds[0]
    if sharing.mode != "none" and not kind.is_gpu:
        problems.append((f"{key}.gpuSharing.mode", sharing.mode, "none for a pool without GPUs"))
    if sharing.mode == "time-slicing" and sharing.replicas is None:
        problems.append((f"{key}.gpuSharing.replicas", _MISSING, "2 to 8 replicas per GPU for time-slicing"))
    if sharing.mode != "time-slicing" and sharing.replicas is not None:
        problems.append((f"{key}.gpuSharing.replicas", sharing.replicas, "no replicas unless mode is time-slicing"))
    if sharing.mode == "mig":
        if not kind.mig_capable:
            capable = sorted(n for n, i in INSTANCE_TYPES.items() if i.mig_capable)
            problems.append(
                (
                    f"{key}.instanceTypes",
                    pool.instance_types,
                    f"MIG-capable instance types ({', '.join(capable)})",
                )
            )
        elif len({k.gpu_memory_gib for k in kinds}) > 1:
            problems.append((f"{key}.instanceTypes", pool.instance_types, "one GPU memory size for a MIG layout"))
        else:
            valid = MIG_PROFILES[kind.gpu_memory_gib]
            if not sharing.mig_profiles:
                problems.append((f"{key}.gpuSharing.migProfiles", [], f"a MIG layout per GPU from {sorted(valid)}"))
            for profile in sharing.mig_profiles:
                if profile not in valid:
                    problems.append(
                        (
                            f"{key}.gpuSharing.migProfiles",
                            profile,
                            f"a profile of the {kind.gpu_model} {kind.gpu_memory_gib}GB ({', '.join(valid)})",
                        )
                    )
            slices = sum(valid.get(p, 0) for p in sharing.mig_profiles)
            if slices > MIG_SLICES_PER_GPU:
                problems.append(
                    (
                        f"{key}.gpuSharing.migProfiles",
                        sharing.mig_profiles,
                        f"profiles that fit one GPU ({slices} of {MIG_SLICES_PER_GPU} compute slices used)",
                    )
                )
    elif sharing.mig_profiles:
        problems.append((f"{key}.gpuSharing.migProfiles", sharing.mig_profiles, "no MIG profiles unless mode is mig"))
    return problems


def _check_gitops(config: StackConfig) -> list[tuple[str, Any, str]]:
    problems = []
    # A stack promoted from another runs a promoted revision (.github/ and docs/github-setup.md, "One
    # revision per stack"): a branch there would let Argo CD and the deploy follow new commits without
    # a promotion.
    if config.entry.promotes_from is not None and not re.fullmatch(r"[0-9a-f]{40}", config.gitops.revision):
        problems.append(
            (
                f"{NAMESPACE}:gitops.revision",
                config.gitops.revision,
                f"a full 40-digit commit SHA in {config.stack} (only `cdao promote` moves it; a branch follows "
                "new commits without a promotion)",
            )
        )
    for addon, chart_keys in ADDON_CHART_KEYS.items():
        if getattr(config.addons, addon):
            problems += [
                (f"{NAMESPACE}:gitops.chartVersions.{chart}", _MISSING, f"the version add-on {addon} (enabled) runs")
                for chart in chart_keys
                if chart not in config.gitops.chart_versions
            ]
    for chart, version in config.gitops.chart_versions.items():
        key = f"{NAMESPACE}:gitops.chartVersions.{chart}"
        if not _DNS_SUBDOMAIN.fullmatch(chart) or "." in chart:
            problems.append(
                (f"{NAMESPACE}:gitops.chartVersions", chart, "a chart key of lowercase letters, digits, '-'")
            )
        if not re.fullmatch(r"v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?", version):
            # A range or "latest" would let an environment drift without a reviewed diff.
            problems.append((key, version, "an exact chart version such as 1.16.1"))
    for addon, version in config.cluster.addon_versions.items():
        if addon not in EKS_ADDON_NAMES:
            problems.append((f"{NAMESPACE}:cluster.addonVersions", addon, f"one of {', '.join(EKS_ADDON_NAMES)}"))
        elif not re.fullmatch(r"v\d+\.\d+\.\d+-eksbuild\.\d+", version):
            problems.append(
                (f"{NAMESPACE}:cluster.addonVersions.{addon}", version, "an EKS build such as v1.19.0-eksbuild.1")
            )
    for itype in config.batch.instance_types:
        if itype not in INSTANCE_TYPES:
            problems.append(
                (
                    f"{NAMESPACE}:batch.instanceTypes",
                    itype,
                    f"a known instance type ({', '.join(sorted(INSTANCE_TYPES))})",
                )
            )
    flyte = config.flyte
    if flyte.certificate_validation is None:
        problems.append(
            (
                f"{NAMESPACE}:flyte.certificateValidation",
                _MISSING,
                "route53 (with hostedZoneId: infra/ creates the validation record) or external (the DNS owner "
                "creates the record `cdao plan` lists)",
            )
        )
    elif flyte.certificate_validation == "route53" and flyte.hosted_zone_id is None:
        problems.append((f"{NAMESPACE}:flyte.hostedZoneId", _MISSING, "the Route 53 zone of hostname for route53"))
    elif flyte.certificate_validation == "external" and flyte.hosted_zone_id is not None:
        problems.append(
            (f"{NAMESPACE}:flyte.hostedZoneId", flyte.hosted_zone_id, "no zone when certificateValidation is external")
        )
    for project in config.flyte.projects:
        if not _DNS_SUBDOMAIN.fullmatch(project) or "." in project or len(project) > 40:
            problems.append(
                (f"{NAMESPACE}:flyte.projects", project, "a project name of lowercase letters, digits, '-'")
            )
    return problems


def _check_database(config: StackConfig) -> list[tuple[str, Any, str]]:
    db, key = config.database, f"{NAMESPACE}:database"
    problems = []
    if db.max_allocated_storage_gb < db.allocated_storage_gb:
        problems.append(
            (
                f"{key}.maxAllocatedStorageGb",
                db.max_allocated_storage_gb,
                f"at least allocatedStorageGb ({db.allocated_storage_gb})",
            )
        )
    if "." in db.engine_version:
        problems.append(
            (
                f"{key}.engineVersion",
                db.engine_version,
                f"a major version only, such as {db.engine_version.split('.')[0]} (RDS applies minor versions itself)",
            )
        )
    return problems


def _check_names(config: StackConfig) -> list[tuple[str, Any, str]]:
    """Every AWS name infra/ derives from a config value fits AWS's limit (infra/names.py, with its
    source). The formulas follow how the components name things; tests/infra/test_names.py plans
    the longest accepted values under mocks that enforce the same limits, so a drift fails there."""
    # Imported here: both import this module.
    from infra.components.data import BUCKET_PURPOSES  # noqa: PLC0415
    from infra.contract import FLYTE_DOMAINS, flyte_task_account  # noqa: PLC0415

    stack, problems = config.stack, []
    if not re.fullmatch(names.STACK_NAME, stack):
        problems.append(
            (
                "stack",
                stack,
                "a stack name of lowercase letters and digits joined by single hyphens: it becomes part of "
                f"AWS names that allow no other characters ({names.STACK_NAME_SOURCES})",
            )
        )
    derived = [
        (f"cdao-{stack}-{purpose}{suffix}-", "s3-bucket-prefix", 0)
        for purpose in BUCKET_PURPOSES
        for suffix in ("", "-replica")
        if suffix == "" or config.storage.replication_region
    ]
    derived += [(f"cdao-{stack}-flyte-", "rds-identifier", names.UNIQUE_ID_SUFFIX), (f"cdao-{stack}", "eks-cluster", 0)]
    if config.backup.enabled:
        derived += [(f"cdao-{stack}-{what}", "backup-name", 0) for what in ("rds-efs", "copy", "ebs")]
    for name, limit, suffix in derived:
        if problem := names.too_long(name, limit, suffix):
            problems.append(("stack", stack, f"a shorter stack name: {problem}"))
    for pool in config.node_pools:
        if problem := names.too_long(f"{pool}-", "eks-nodegroup", names.UNIQUE_ID_SUFFIX):
            problems.append((f"{NAMESPACE}:nodePools", pool, f"a shorter pool name: its node group {problem}"))
    for project in config.flyte.projects:
        for domain in FLYTE_DOMAINS:
            # infra/program.py's WorkloadIdentity("workload-identity") names each role after its account.
            role = f"workload-identity-{flyte_task_account(project, domain).role}"
            if problem := names.too_long(role, "iam-role", names.AUTONAME_SUFFIX):
                problems.append((f"{NAMESPACE}:flyte.projects", project, f"a shorter project name: IAM role {problem}"))
                break
    return problems


def _check_teardown(config: StackConfig) -> list[tuple[str, Any, str]]:
    if config.destroyable:
        return []
    losing = {
        f"{NAMESPACE}:storage.forceDestroy": config.storage.force_destroy,
        f"{NAMESPACE}:database.skipFinalSnapshot": config.database.skip_final_snapshot,
    }
    return [
        (key, True, "false outside dev stacks: a teardown of this stack must keep its data")
        for key, value in losing.items()
        if value
    ]


def _check_codeweave(config: StackConfig, secrets: Mapping[str, str]) -> list[tuple[str, Any, str]]:
    cw, key = config.codeweave, f"{NAMESPACE}:codeweave"
    problems = []
    if cw.enabled and cw.account_id is None:
        problems.append((f"{key}.accountId", _MISSING, "Codeweave's 12-digit AWS account ID when enabled"))
    if cw.enabled and cw.endpoint is None:
        problems.append((f"{key}.endpoint", _MISSING, "Codeweave's API endpoint (https://...) when enabled"))
    if cw.enabled and "codeweaveExternalId" not in secrets:
        problems.append(
            (
                f"{NAMESPACE}:codeweaveExternalId",
                _MISSING,
                "a secret: pulumi config set --secret cdao:codeweaveExternalId <id>",
            )
        )
    external_id = secrets.get("codeweaveExternalId")
    if external_id is not None and not re.fullmatch(r"[\w+=,.@:/-]{2,1224}", external_id):
        # AWS's own limits for sts:ExternalId; the value itself is never echoed.
        problems.append((f"{NAMESPACE}:codeweaveExternalId", _SECRET, "2-1224 characters of [A-Za-z0-9+=,.@:/-]"))
    return problems


def load_stack_config() -> tuple[StackConfig, dict[str, str]]:
    """Read the running program's config (engine or offline plan) and parse it."""
    import pulumi  # noqa: PLC0415 - keeps parse_stack_config importable without the Pulumi runtime
    from pulumi.runtime import config as runtime_config  # noqa: PLC0415

    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return parse_stack_config(pulumi.get_stack(), raw)
