"""The contract between infra/ and platform/: the Argo CD cluster Secret, and the service accounts
that IAM roles trust.

infra/ writes one Argo CD cluster Secret per stack. Its labels switch add-ons on
(`enable_<addon>`) and name the environment; its annotations carry every generated value the
platform needs (role ARNs, bucket names, the database endpoint, queue names, ...). ApplicationSets in
platform/ read them with Go templates and `missingkey=error`, so a missing value fails loudly in
Argo CD instead of rendering an empty string. This module is the only place the names are defined;
tests assert that both sides use exactly these.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.config import AddonsConfig

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


def flyte_task_account(project: str, domain: str) -> ServiceAccount:
    return ServiceAccount(
        f"flyte-tasks-{project}-{domain}",
        f"{project}-{domain}",
        FLYTE_TASK_SERVICE_ACCOUNT,
        f"Flyte tasks of {project}/{domain}: its own S3 prefix, pass roles to Batch/SageMaker/EMR",
    )


@dataclass(frozen=True)
class Annotation:
    key: str
    meaning: str


ANNOTATIONS: tuple[Annotation, ...] = (
    Annotation("aws-region", "region of every AWS resource of the stack"),
    Annotation("aws-account-id", "account that owns the stack"),
    Annotation(
        "stack",
        "Pulumi stack name: the connector names and tags what it creates with it, which its IAM policy is "
        "scoped to (cdao_connectors.aws_resources)",
    ),
    Annotation("cluster-name", "EKS cluster name (cluster autoscaler, load balancer controller)"),
    Annotation("vpc-id", "VPC of the cluster (load balancer controller; IMDS is closed to pods)"),
    Annotation("repo-url", "Git repository Argo CD reads platform/ from"),
    Annotation("repo-revision", "Git revision of platform/ this environment runs (promoted dev->staging->prod)"),
    Annotation("repo-path", "folder of the platform manifests in the repository"),
    Annotation("bucket-metadata", "S3 bucket for Flyte metadata (raw output of flyteadmin)"),
    Annotation("bucket-userdata", "S3 bucket for task data: inputs, outputs, offloaded literals"),
    Annotation(
        "bucket-workflows",
        "S3 bucket for workflow packages published outside flyteadmin's data proxy (flyteadmin may write it); "
        "fast-register uploads are not here: the data proxy writes them to bucket-metadata (see fast-register-prefix)",
    ),
    Annotation(
        "fast-register-prefix",
        "flyteadmin's dataProxy.upload.storagePrefix: `pyflyte register --copy auto` uploads land in bucket-metadata "
        "at <prefix>/<project>/<domain>/<hash>/<file>, which each project-domain's task role may read",
    ),
    Annotation("db-endpoint", "RDS PostgreSQL host name for flyteadmin and datacatalog"),
    Annotation("db-port", "RDS PostgreSQL port"),
    Annotation("db-name", "database flyteadmin and datacatalog share"),
    Annotation("db-master-secret-arn", "Secrets Manager secret RDS manages with the master password"),
    Annotation("efs-file-system-id", "EFS file system for shared datasets and models"),
    Annotation("models-uri", "S3 prefix of model weights vLLM serves (read by role inference)"),
    Annotation("batch-queue-spot", "AWS Batch job queue on spot capacity"),
    Annotation("batch-queue-ondemand", "AWS Batch job queue on on-demand capacity"),
    Annotation("emr-serverless-application-id", "EMR Serverless Spark application"),
    Annotation("emr-log-uri", "S3 prefix for EMR logs"),
    Annotation("emr-security-configuration", "EMR security configuration for transient EMR-on-EC2 clusters"),
    Annotation("emr-service-role-arn", "EMR service role for transient EMR-on-EC2 clusters"),
    Annotation(
        "emr-instance-profile",
        "EC2 instance profile (name, as RunJobFlow's JobFlowRole takes it) of EMR-on-EC2 clusters",
    ),
    Annotation("private-subnet-ids", "comma-separated private subnets (EMR-on-EC2 clusters, Batch)"),
    Annotation("sagemaker-output-uri", "S3 prefix for SageMaker job outputs"),
    Annotation("connector-attempts-table", "DynamoDB table where connector replicas claim task attempts"),
    Annotation("ecr-tasks-repository", "ECR repository URL for task images"),
    Annotation("ecr-connector-repository", "ECR repository URL for the connector-service image"),
    Annotation(
        "connector-image-tag",
        "tag of the connector image the stack runs: the commit of its revision, which deploy.yml built "
        "and copied into ecr-connector-repository (infra/images.py)",
    ),
    Annotation("flyte-hostname", "DNS name of Flyte's console and API (HTTPS and gRPC on one ALB)"),
    Annotation("flyte-certificate-arn", "ACM certificate for flyte-hostname, for the ALB's HTTPS listener"),
    Annotation(
        "container-log-group",
        "CloudWatch Logs group of every container's logs: fluent-bit writes there, Flyte's task-log links "
        "point there; infra/ creates it and owns its retention (fluent-bit must not create it)",
    ),
    Annotation("codeweave-endpoint", "Codeweave API endpoint (empty string when Codeweave is disabled)"),
    Annotation("codeweave-api-key-secret", "Secrets Manager secret name of the Codeweave API key"),
    *(
        Annotation(f"role-arn-{sa.role}", f"IRSA role of {sa.namespace}/{sa.name}: {sa.purpose}")
        for sa in SERVICE_ACCOUNTS
    ),
    Annotation("role-arn-sagemaker-execution", "role SageMaker jobs run as"),
    Annotation("role-arn-batch-job", "role AWS Batch containers run as (ecs-tasks)"),
    Annotation("role-arn-emr-job", "runtime role of EMR Serverless and EMR-on-EC2 Spark jobs"),
    Annotation("role-arn-codeweave", "cross-account role Codeweave assumes (empty string when disabled)"),
)

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
LABEL_KEYS: tuple[str, ...] = ("environment", *(f"enable_{addon}" for addon in ADDONS))


def addon_labels(addons: AddonsConfig) -> dict[str, str]:
    return {f"enable_{name}": str(getattr(addons, name)).lower() for name in ADDONS}
