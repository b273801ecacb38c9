"""The contract between infra/ and platform/: the Argo CD cluster Secret, and the service accounts
that IAM roles trust.

infra/ writes one Argo CD cluster Secret per stack. Its labels switch add-ons on
(`enable_<addon>`), name the environment (the stack) and its policy profile (the stack registry's
`cdao-stack:profile`, cdao_stacks): platform/ picks overlays and values files by the profile only, so a
new stack file needs no folder or file in platform/. Its annotations carry every value of the stack
itself the platform needs (role ARNs, bucket names, the database endpoint, its subnets, ...). ApplicationSets in
platform/ read them with Go templates and `missingkey=error`, so a missing value fails loudly in
Argo CD instead of rendering an empty string. This module is the only place the names are defined;
tests assert that both sides use exactly these.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

from cdao_stacks import PROFILES
from infra.config import AddonsConfig

if TYPE_CHECKING:
    from pulumi import Input

SECRET_NAME = "in-cluster-cdao"  # noqa: S105 - a Kubernetes object name, not a credential
ARGOCD_NAMESPACE = "argocd"
ANNOTATION_PREFIX = "cdao.io/"


@dataclass(frozen=True)
class ServiceAccount:
    """A Kubernetes service account that exactly one IRSA role trusts."""

    role: str  # the role's key in the contract (annotation `cdao.io/role-arn-<role>`)
    namespace: str
    name: str
    purpose: str
    # "platform": platform/ creates the account; "eks-addon": an EKS managed add-on that infra/
    # installs creates it and annotates it with the role itself.
    created_by: str = "platform"
    # The add-on (infra.config.AddonsConfig field) whose Application creates the account; None when
    # the platform always needs it. The role exists either way: switching the add-on on needs no infra run.
    addon: str | None = None


# Every IRSA role infra/ creates, and the one service account each trusts (`:sub` and `:aud` pinned).
# platform/ must create each account marked "platform" in that namespace, annotated with the role ARN.
SERVICE_ACCOUNTS: tuple[ServiceAccount, ...] = (
    ServiceAccount("flyteadmin", "flyte", "flyteadmin", "Flyte control plane: metadata bucket, presigned URLs"),
    ServiceAccount("flytepropeller", "flyte", "flytepropeller", "Flyte propeller: reads and writes task data in S3"),
    ServiceAccount("datacatalog", "flyte", "datacatalog", "Flyte data catalog: cached artefacts in S3"),
    ServiceAccount("connector", "flyte", "cdao-connector", "connector service: Batch, EMR, SageMaker, Codeweave"),
    ServiceAccount(
        "aws-load-balancer-controller", "kube-system", "aws-load-balancer-controller", "ALB/NLB for ingresses"
    ),
    ServiceAccount("cluster-autoscaler", "kube-system", "cluster-autoscaler", "scales the node pools' ASGs"),
    ServiceAccount(
        "external-secrets", "external-secrets", "external-secrets", "reads this stack's Secrets Manager secrets"
    ),
    ServiceAccount("ebs-csi", "kube-system", "ebs-csi-controller-sa", "EBS volumes for PVCs", "eks-addon"),
    ServiceAccount("efs-csi", "kube-system", "efs-csi-controller-sa", "EFS access points for PVCs", "eks-addon"),
    ServiceAccount(
        "vpc-cni", "kube-system", "aws-node", "VPC CNI: pod networking (kept off the node role)", "eks-addon"
    ),
    ServiceAccount("fluent-bit", "observability", "fluent-bit", "ships container logs to CloudWatch Logs"),
    ServiceAccount(
        "mlflow",
        "mlflow",
        "mlflow",
        "MLflow tracking server: run artifacts and registered models in S3",
        addon="mlflow",
    ),
    ServiceAccount(
        "inference", "inference", "vllm", "vLLM: reads model weights from S3 at start-up", addon="inference"
    ),
)

# Flyte runs each project-domain's tasks in namespace `<project>-<domain>` as this service account;
# infra/ creates one role per project-domain (role key `flyte-tasks-<project>-<domain>`).
FLYTE_TASK_SERVICE_ACCOUNT = "default"
# Key prefix in the metadata bucket (flyteadmin's storage container) of fast-registered code.
FAST_REGISTER_PREFIX = "fast-register"
FLYTE_DOMAINS = ("development", "staging", "production")
# Key prefix in the `userdata` bucket under which each project-domain's raw data (offloaded outputs:
# files, directories, data frames) lives: `<RAW_DATA_PREFIX>/<project>/<domain>/`. `cdao flyte-projects
# --set-raw-data-prefix` makes it every execution's raw output location (flyteadmin's
# WORKFLOW_EXECUTION_CONFIG), and that project-domain's task role reaches nothing else of the bucket
# but the read-only prefixes below.
RAW_DATA_PREFIX = "data"
# Inputs every project-domain reads and no task role writes (e.g. the credit-scoring applications the
# nightly launch plan scores, workflows/README.md), delivered by whoever owns the data set.
SHARED_INPUTS_PREFIX = "inputs/"
# Outputs of SageMaker jobs (plugins/cdao_sdk/decorators.py's defaults under `sagemaker/`), written by
# the shared SageMaker execution role; the tasks downstream read them.
SAGEMAKER_OUTPUTS_PREFIX = "sagemaker/"


def raw_data_prefix(project: str, domain: str) -> str:
    """`data/<project>/<domain>`: the key prefix, without a trailing slash, of the project-domain's raw data."""
    return f"{RAW_DATA_PREFIX}/{project}/{domain}"


def flyte_task_account(project: str, domain: str) -> ServiceAccount:
    return ServiceAccount(
        f"flyte-tasks-{project}-{domain}",
        f"{project}-{domain}",
        FLYTE_TASK_SERVICE_ACCOUNT,
        f"Flyte tasks of {project}/{domain}: its own metadata, code and raw-data prefixes, shared inputs and "
        "SageMaker outputs read-only, model weights (written from production only), pass roles to Batch/SageMaker/EMR",
    )


def pod_host_patterns(vpc_cidr: ipaddress.IPv4Network) -> str:
    """Comma-separated fnmatch patterns that match `<ip>:<port>` for every address of `vpc_cidr` and
    no other IP address, e.g. `100.64.*` for 100.64.0.0/16, `10.1.16.*,...,10.1.31.*` for 10.1.16.0/20.

    Pods take their IPs from the VPC's subnets (the VPC CNI), so a client that calls a pod by IP sends
    `Host: <pod IP>:<port>`. The format is MLflow's `--allowed-hosts`: a pattern with `*` is matched with
    fnmatch against the Host header (mlflow 3.14.0 mlflow/server/security_utils.py
    is_allowed_host_header). fnmatch has no numeric ranges, so a prefix that ends inside an octet is
    written as one pattern per value of that octet (at most 128 for the /17 to /28 VPCs AWS allows).
    fnmatch's `*` also matches a DNS name that starts like an address (`10.0.1.example.com`), as
    MLflow's own default `10.*` does; only clients inside the VPC reach MLflow (internal ALB,
    NetworkPolicy), so a Host header is not what keeps others out.
    """
    octets = -(-vpc_cidr.prefixlen // 8)  # the whole octets the prefix touches
    patterns = []
    for block in vpc_cidr.subnets(new_prefix=octets * 8):
        fixed = ".".join(str(block.network_address).split(".")[:octets])
        patterns.append(f"{fixed}:*" if octets == 4 else f"{fixed}.*")
    return ",".join(patterns)


@dataclass(frozen=True)
class Annotation:
    key: str
    meaning: str


def _annotation(key: str, meaning: str) -> dict[str, str]:
    """The field metadata of a ClusterSecret field written as annotation `cdao.io/<key>`."""
    return {"annotation": key, "meaning": meaning}


@dataclass(frozen=True, kw_only=True)
class ClusterSecret:
    """The Argo CD cluster Secret infra/ writes, field by field: its labels and every annotation.

    Each annotation field is a `pulumi.Input[str]` (a plain string or an Output). Construction
    fails where the Secret is built: a field left out is a TypeError naming it, a None value or a
    role map that does not cover exactly the IRSA roles (SERVICE_ACCOUNTS and the Flyte task
    accounts of `flyte_projects`) a ValueError naming the annotation.
    """

    # Labels.
    environment: str
    profile: str
    addons: AddonsConfig

    aws_region: Input[str] = field(metadata=_annotation("aws-region", "region of every AWS resource of the stack"))
    aws_account_id: Input[str] = field(metadata=_annotation("aws-account-id", "account that owns the stack"))
    stack: Input[str] = field(
        metadata=_annotation(
            "stack",
            "Pulumi stack name: the connector names and tags what it creates with it, which its IAM policy is "
            "scoped to (cdao_connector_resources)",
        )
    )
    cluster_name: Input[str] = field(
        metadata=_annotation("cluster-name", "EKS cluster name (cluster autoscaler, load balancer controller)")
    )
    vpc_id: Input[str] = field(
        metadata=_annotation("vpc-id", "VPC of the cluster (load balancer controller; IMDS is closed to pods)")
    )
    repo_url: Input[str] = field(metadata=_annotation("repo-url", "Git repository Argo CD reads platform/ from"))
    repo_revision: Input[str] = field(
        metadata=_annotation(
            "repo-revision", "Git revision of platform/ this environment runs (promoted dev->staging->prod)"
        )
    )
    repo_path: Input[str] = field(
        metadata=_annotation("repo-path", "folder of the platform manifests in the repository")
    )
    bucket_metadata: Input[str] = field(
        metadata=_annotation("bucket-metadata", "S3 bucket for Flyte metadata (raw output of flyteadmin)")
    )
    bucket_userdata: Input[str] = field(
        metadata=_annotation("bucket-userdata", "S3 bucket for task data: inputs, outputs, offloaded literals")
    )
    bucket_workflows: Input[str] = field(
        metadata=_annotation(
            "bucket-workflows",
            "S3 bucket for workflow packages published outside flyteadmin's data proxy (flyteadmin may write it); "
            "fast-register uploads are not here: the data proxy writes them to bucket-metadata (see "
            "fast-register-prefix)",
        )
    )
    fast_register_prefix: Input[str] = field(
        metadata=_annotation(
            "fast-register-prefix",
            "flyteadmin's dataProxy.upload.storagePrefix: `pyflyte register --copy auto` uploads land in "
            "bucket-metadata at <prefix>/<project>/<domain>/<hash>/<file>, which each project-domain's task role "
            "may read",
        )
    )
    db_endpoint: Input[str] = field(
        metadata=_annotation("db-endpoint", "RDS PostgreSQL host name for flyteadmin and datacatalog")
    )
    db_port: Input[str] = field(metadata=_annotation("db-port", "RDS PostgreSQL port"))
    db_name: Input[str] = field(metadata=_annotation("db-name", "database flyteadmin and datacatalog share"))
    db_master_secret_arn: Input[str] = field(
        metadata=_annotation("db-master-secret-arn", "Secrets Manager secret RDS manages with the master password")
    )
    efs_file_system_id: Input[str] = field(
        metadata=_annotation("efs-file-system-id", "EFS file system for shared datasets and models")
    )
    models_uri: Input[str] = field(
        metadata=_annotation("models-uri", "S3 prefix of model weights vLLM serves (read by role inference)")
    )
    batch_queue_spot: Input[str] = field(
        metadata=_annotation("batch-queue-spot", "AWS Batch job queue on spot capacity")
    )
    batch_queue_ondemand: Input[str] = field(
        metadata=_annotation("batch-queue-ondemand", "AWS Batch job queue on on-demand capacity")
    )
    emr_serverless_application_id: Input[str] = field(
        metadata=_annotation("emr-serverless-application-id", "EMR Serverless Spark application")
    )
    emr_log_uri: Input[str] = field(metadata=_annotation("emr-log-uri", "S3 prefix for EMR logs"))
    emr_security_configuration: Input[str] = field(
        metadata=_annotation(
            "emr-security-configuration", "EMR security configuration for transient EMR-on-EC2 clusters"
        )
    )
    emr_service_role_arn: Input[str] = field(
        metadata=_annotation("emr-service-role-arn", "EMR service role for transient EMR-on-EC2 clusters")
    )
    emr_instance_profile: Input[str] = field(
        metadata=_annotation(
            "emr-instance-profile",
            "EC2 instance profile (name, as RunJobFlow's JobFlowRole takes it) of EMR-on-EC2 clusters",
        )
    )
    private_subnet_ids: Input[str] = field(
        metadata=_annotation("private-subnet-ids", "comma-separated private subnets (EMR-on-EC2 clusters, Batch)")
    )
    sagemaker_output_uri: Input[str] = field(
        metadata=_annotation("sagemaker-output-uri", "S3 prefix for SageMaker job outputs")
    )
    connector_attempts_table: Input[str] = field(
        metadata=_annotation("connector-attempts-table", "DynamoDB table where connector replicas claim task attempts")
    )
    ecr_tasks_repository: Input[str] = field(
        metadata=_annotation("ecr-tasks-repository", "ECR repository URL for task images")
    )
    ecr_connector_repository: Input[str] = field(
        metadata=_annotation("ecr-connector-repository", "ECR repository URL for the connector-service image")
    )
    connector_image_tag: Input[str] = field(
        metadata=_annotation(
            "connector-image-tag",
            "tag of the connector image the stack runs: the commit of its revision, which deploy.yml built "
            "and copied into ecr-connector-repository (infra/images.py)",
        )
    )
    flyte_hostname: Input[str] = field(
        metadata=_annotation("flyte-hostname", "DNS name of Flyte's console and API (HTTPS and gRPC on one ALB)")
    )
    pod_host_patterns: Input[str] = field(
        metadata=_annotation(
            "pod-host-patterns",
            "comma-separated Host-header patterns matching every pod IP (the VPC CIDR) with any port "
            "(MLflow's allowed hosts for Prometheus's scrape); pod_host_patterns()",
        )
    )
    private_subnet_cidrs: Input[str] = field(
        metadata=_annotation(
            "private-subnet-cidrs",
            "comma-separated CIDRs of the private subnets, in AZ order (NetworkPolicies admitting the internal "
            "ALB and the EKS control plane's ENIs)",
        )
    )
    database_subnet_cidrs: Input[str] = field(
        metadata=_annotation(
            "database-subnet-cidrs",
            "comma-separated CIDRs of the database subnets, in AZ order (NetworkPolicies letting RDS clients out)",
        )
    )
    gpu_time_slicing: Input[str] = field(
        metadata=_annotation(
            "gpu-time-slicing",
            "the device plugin's time-slicing config per time-sliced pool: `<config>=<replicas>`, comma-separated "
            "(infra/components/node_pool.py time_slicing_configs); empty when the stack has none",
        )
    )
    gpu_mig_layouts: Input[str] = field(
        metadata=_annotation(
            "gpu-mig-layouts",
            "the MIG manager's layout per MIG pool: `<layout>=<profile>:<count>;...`, comma-separated "
            "(infra/components/node_pool.py mig_layouts); empty when the stack has none",
        )
    )
    flyte_certificate_arn: Input[str] = field(
        metadata=_annotation(
            "flyte-certificate-arn", "ACM certificate for flyte-hostname, for the ALB's HTTPS listener"
        )
    )
    container_log_group: Input[str] = field(
        metadata=_annotation(
            "container-log-group",
            "CloudWatch Logs group of every container's logs: fluent-bit writes there, Flyte's task-log links "
            "point there; infra/ creates it and owns its retention (fluent-bit must not create it)",
        )
    )
    codeweave_endpoint: Input[str] = field(
        metadata=_annotation("codeweave-endpoint", "Codeweave API endpoint (empty string when Codeweave is disabled)")
    )
    codeweave_api_key_secret: Input[str] = field(
        metadata=_annotation("codeweave-api-key-secret", "Secrets Manager secret name of the Codeweave API key")
    )
    # `cdao.io/role-arn-<role>` per IRSA role: every SERVICE_ACCOUNTS role and each Flyte task account.
    role_arns: Mapping[str, Input[str]]
    flyte_projects: Sequence[str]
    role_arn_sagemaker_execution: Input[str] = field(
        metadata=_annotation("role-arn-sagemaker-execution", "role SageMaker jobs run as")
    )
    role_arn_batch_job: Input[str] = field(
        metadata=_annotation("role-arn-batch-job", "role AWS Batch containers run as (ecs-tasks)")
    )
    role_arn_emr_job: Input[str] = field(
        metadata=_annotation("role-arn-emr-job", "runtime role of EMR Serverless and EMR-on-EC2 Spark jobs")
    )
    role_arn_codeweave: Input[str] = field(
        metadata=_annotation("role-arn-codeweave", "cross-account role Codeweave assumes (empty string when disabled)")
    )
    # `cdao.io/chart-version-<key>` per chart pin (infra/config.py GitOpsConfig.chart_versions).
    chart_versions: Mapping[str, str]

    def __post_init__(self) -> None:
        cluster_labels(self.environment, self.profile, self.addons)  # raises for a profile outside PROFILES
        for f in fields(self):
            if "annotation" in f.metadata and getattr(self, f.name) is None:
                raise ValueError(
                    f"cluster Secret annotation {ANNOTATION_PREFIX}{f.metadata['annotation']} ({f.name}): no value"
                )
        expected = {sa.role for sa in SERVICE_ACCOUNTS} | {
            flyte_task_account(p, d).role for p in self.flyte_projects for d in FLYTE_DOMAINS
        }
        missing, unknown = sorted(expected - set(self.role_arns)), sorted(set(self.role_arns) - expected)
        if missing or unknown:
            raise ValueError(f"cluster Secret role_arns: missing {missing}, unknown {unknown}")
        empty = sorted(role for role, arn in self.role_arns.items() if arn is None)
        if empty:
            raise ValueError(f"cluster Secret role_arns: no value for {empty}")

    def labels(self) -> dict[str, str]:
        """The Secret's labels (LABEL_KEYS): cluster_labels of its stack, profile and add-ons."""
        return cluster_labels(self.environment, self.profile, self.addons)

    def annotations(self) -> dict[str, Input[str]]:
        """Every annotation, keyed `cdao.io/...` (stack_annotation_keys of its pins and projects)."""
        values: dict[str, Input[str]] = {
            f.metadata["annotation"]: getattr(self, f.name) for f in fields(self) if "annotation" in f.metadata
        }
        values |= {f"role-arn-{role}": arn for role, arn in self.role_arns.items()}
        values |= {
            f"{CHART_VERSION_PREFIX.removeprefix(ANNOTATION_PREFIX)}{c}": v for c, v in self.chart_versions.items()
        }
        return {f"{ANNOTATION_PREFIX}{key}": value for key, value in values.items()}


def _fixed_annotations() -> tuple[Annotation, ...]:
    out: list[Annotation] = []
    for f in fields(ClusterSecret):
        if f.name == "role_arns":
            out += [
                Annotation(f"role-arn-{sa.role}", f"IRSA role of {sa.namespace}/{sa.name}: {sa.purpose}")
                for sa in SERVICE_ACCOUNTS
            ]
        elif "annotation" in f.metadata:
            out.append(Annotation(f.metadata["annotation"], f.metadata["meaning"]))
    return tuple(out)


# Every annotation whose name does not depend on the stack, with its meaning (from ClusterSecret).
ANNOTATIONS: tuple[Annotation, ...] = _fixed_annotations()

ANNOTATION_KEYS: tuple[str, ...] = tuple(f"{ANNOTATION_PREFIX}{a.key}" for a in ANNOTATIONS)

# Annotations whose names depend on the stack: one per chart pin and one per Flyte project-domain.
CHART_VERSION_PREFIX = f"{ANNOTATION_PREFIX}chart-version-"


def stack_annotation_keys(chart_keys: list[str], flyte_projects: list[str]) -> tuple[str, ...]:
    """Every annotation the cluster Secret of a stack with these pins and projects carries."""
    tasks = [
        f"{ANNOTATION_PREFIX}role-arn-{flyte_task_account(p, d).role}" for p in flyte_projects for d in FLYTE_DOMAINS
    ]
    return (*ANNOTATION_KEYS, *(f"{CHART_VERSION_PREFIX}{c}" for c in chart_keys), *tasks)


ADDONS: tuple[str, ...] = tuple(AddonsConfig.model_fields)
LABEL_KEYS: tuple[str, ...] = ("environment", "profile", *(f"enable_{addon}" for addon in ADDONS))


def addon_labels(addons: AddonsConfig) -> dict[str, str]:
    return {f"enable_{name}": str(getattr(addons, name)).lower() for name in ADDONS}


def cluster_labels(environment: str, profile: str, addons: AddonsConfig) -> dict[str, str]:
    """The cluster Secret's labels: `environment` (the stack name), `profile` (its policy profile,
    one of cdao_stacks.PROFILES, which platform/'s overlays and values files are named by) and
    `enable_<addon>` per add-on. Raises ValueError for a profile outside cdao_stacks.PROFILES."""
    if profile not in PROFILES:
        raise ValueError(f"cluster Secret label profile = {profile!r}: expected one of {', '.join(PROFILES)}")
    return {"environment": environment, "profile": profile, **addon_labels(addons)}
