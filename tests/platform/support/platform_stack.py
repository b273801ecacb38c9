"""A stack as platform/ sees it: its parsed config and the Argo CD cluster Secret infra/ writes for it.

The Secret is built from infra/contract.py (labels, and `stack_annotation_keys`: the fixed annotations,
one chart-version annotation per cdao:gitops.chartVersions entry, the per-project Flyte task roles)
with values shaped like the
real ones (ARNs, bucket names, an RDS endpoint), so templates that paste them into ARNs, URLs and
YAML are exercised with realistic strings.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from cdao_cli.plan.runner import available_stacks, read_stack_file
from cdao_stacks import ENVIRONMENTS_DIR
from infra.components.node_pool import mig_layouts, time_slicing_configs
from infra.config import StackConfig, parse_stack_config
from infra.contract import (
    ANNOTATION_PREFIX,
    ARGOCD_NAMESPACE,
    CHART_VERSION_PREFIX,
    FAST_REGISTER_PREFIX,
    SECRET_NAME,
    cluster_labels,
    pod_host_patterns,
    stack_annotation_keys,
)
from infra.program import container_log_group_name

STACKS = tuple(available_stacks())
ACCOUNT_ID = "123456789012"
IN_CLUSTER = "https://kubernetes.default.svc"


@functools.cache
def stack_config(stack: str, environments_dir: Path = ENVIRONMENTS_DIR) -> StackConfig:
    raw, _ = read_stack_file(stack, environments_dir)
    config, _ = parse_stack_config(stack, raw)
    return config


def chart_version_key(chart_key: str) -> str:
    return f"{CHART_VERSION_PREFIX}{chart_key}"


def written_annotations(config: StackConfig) -> set[str]:
    """Every annotation infra/ writes on this stack's cluster Secret (infra/contract.py)."""
    return set(stack_annotation_keys(list(config.gitops.chart_versions), list(config.flyte.projects)))


def _value(key: str, config: StackConfig) -> str:
    name = key.removeprefix(ANNOTATION_PREFIX)
    prefix = f"cdao-{config.stack}"
    if name.startswith("role-arn-"):
        return f"arn:aws:iam::{ACCOUNT_ID}:role/{prefix}-{name.removeprefix('role-arn-')}"
    if name.startswith("bucket-"):
        return f"{prefix}-{name.removeprefix('bucket-')}-{ACCOUNT_ID}"
    fixed = {
        "aws-region": config.region,
        "aws-account-id": ACCOUNT_ID,
        "stack": config.stack,
        "fast-register-prefix": FAST_REGISTER_PREFIX,
        "cluster-name": prefix,
        "vpc-id": "vpc-0a1b2c3d4e5f60718",
        "repo-url": config.gitops.repo_url,
        "repo-revision": config.gitops.revision,
        "repo-path": config.gitops.path,
        "db-endpoint": f"{prefix}-flyte.c9akciq32.{config.region}.rds.amazonaws.com",
        "db-port": "5432",
        "db-master-secret-arn": f"arn:aws:secretsmanager:{config.region}:{ACCOUNT_ID}:secret:rds!db-3f2a-AbCdEf",
        "db-name": "flyteadmin",
        "efs-file-system-id": "fs-0123456789abcdef0",
        "models-uri": f"s3://{prefix}-userdata-{ACCOUNT_ID}/models/",
        "batch-queue-spot": f"{prefix}-spot",
        "batch-queue-ondemand": f"{prefix}-ondemand",
        "emr-serverless-application-id": "00fabcdefgh12345",
        "emr-log-uri": f"s3://{prefix}-userdata-{ACCOUNT_ID}/emr-logs/",
        "emr-security-configuration": f"{prefix}-emr",
        "emr-service-role-arn": f"arn:aws:iam::{ACCOUNT_ID}:role/{prefix}-emr-service",
        "emr-instance-profile": f"{prefix}-emr-ec2",
        "private-subnet-ids": "subnet-0a1b2c3d4e5f60001,subnet-0a1b2c3d4e5f60002",
        "sagemaker-output-uri": f"s3://{prefix}-userdata-{ACCOUNT_ID}/sagemaker/",
        "connector-attempts-table": f"{prefix}-connector-attempts",
        "ecr-tasks-repository": f"{ACCOUNT_ID}.dkr.ecr.{config.region}.amazonaws.com/{prefix}/tasks",
        # compute.py's repository name, the one deploy.yml's image-<stack> job pushes to.
        "ecr-connector-repository": f"{ACCOUNT_ID}.dkr.ecr.{config.region}.amazonaws.com/{prefix}-connector",
        "connector-image-tag": config.gitops.revision if config.gitops.revision != "main" else "1" * 40,
        "codeweave-endpoint": config.codeweave.endpoint or "",
        "codeweave-api-key-secret": f"{prefix}/codeweave-api-key",
        "container-log-group": container_log_group_name(config),
        "flyte-hostname": config.flyte.hostname,
        "pod-host-patterns": pod_host_patterns(config.network.vpc_cidr),
        "private-subnet-cidrs": ",".join(config.subnet_cidrs("private")),
        "database-subnet-cidrs": ",".join(config.subnet_cidrs("database")),
        "gpu-time-slicing": time_slicing_configs(config.enabled_pools),
        "gpu-mig-layouts": mig_layouts(config.enabled_pools),
        "flyte-certificate-arn": f"arn:aws:acm:{config.region}:{ACCOUNT_ID}:certificate/0b1c2d3e-4f50-6172-8394",
    }
    if name not in fixed:
        raise KeyError(f"no mock value for annotation {key}; add one when the contract grows")
    return fixed[name]


def cluster_secret(stack: str, *, drop: str | None = None, environments_dir: Path = ENVIRONMENTS_DIR) -> dict[str, Any]:
    """The in-cluster Argo CD cluster Secret for a stack (optionally without one annotation), from
    the stack file in `environments_dir`."""
    config = stack_config(stack, environments_dir)
    annotations = {
        key: config.gitops.chart_versions[key.removeprefix(CHART_VERSION_PREFIX)]
        if key.startswith(CHART_VERSION_PREFIX)
        else _value(key, config)
        for key in sorted(written_annotations(config))
    }
    if drop is not None:
        del annotations[drop]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": SECRET_NAME,
            "namespace": ARGOCD_NAMESPACE,
            "labels": {
                "argocd.argoproj.io/secret-type": "cluster",
                **cluster_labels(stack, config.entry.profile, config.addons),
            },
            "annotations": annotations,
        },
        "stringData": {"name": "in-cluster", "server": IN_CLUSTER},
    }
