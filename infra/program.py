"""Wires the platform's components together; each AWS concern is one ComponentResource.

Order follows the data flow of DESIGN.md: network -> cluster -> data -> identity -> node networking
add-ons -> node pools -> the other add-ons -> compute back-ends -> GitOps bootstrap. Nothing is
declared at import time: `build` is called by infra/__main__.py under the engine and by the offline
plan under mocks, with the same config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components import mlops
from infra.components.addons import NODE_NETWORKING_ADDONS, WORKLOAD_ADDONS, ClusterAddons, ClusterAddonsArgs
from infra.components.backup import Backup, BackupArgs
from infra.components.cluster import Cluster, ClusterArgs
from infra.components.compute import Compute, ComputeArgs, Registry
from infra.components.data import DB_NAME, Data, DataArgs
from infra.components.edge import FlyteEndpoint, FlyteEndpointArgs
from infra.components.gitops import GitOps, GitOpsArgs
from infra.components.identity import ServiceRoles, ServiceRolesArgs, WorkloadIdentity, WorkloadIdentityArgs
from infra.components.network import Network, NetworkArgs
from infra.components.node_pool import NodePool, NodePoolArgs
from infra.components.shared import kept_on_teardown
from infra.config import StackConfig, is_dev_stack
from infra.contract import (
    ANNOTATION_PREFIX,
    CHART_VERSION_PREFIX,
    FAST_REGISTER_PREFIX,
    FLYTE_DOMAINS,
    addon_labels,
    stack_annotation_keys,
)


def cluster_name(config: StackConfig) -> str:
    return f"cdao-{config.stack}"


def container_log_group_name(config: StackConfig) -> str:
    """The one owner of the container log group's name; platform/ reads it from the cluster Secret."""
    return f"/cdao/{config.stack}/containers"


def codeweave_secret_name(config: StackConfig) -> str:
    return f"cdao/{config.stack}/codeweave-api-key"


def _backup(config: StackConfig, name: str, account_id: pulumi.Input[str], data: Data) -> Backup | None:
    spec = config.backup
    if not spec.enabled:
        return None
    return Backup(
        "backup",
        BackupArgs(
            stack=config.stack,
            region=config.region,
            account_id=account_id,
            cluster_name=name,
            db_instance_arn=data.db.arn,
            efs_id=data.efs_id,
            daily_retention_days=spec.daily_retention_days,
            monthly_retention_days=spec.monthly_retention_days,
            copy_region=spec.copy_region,
            vault_lock=spec.vault_lock,
            force_destroy=config.storage.force_destroy,
            tags=config.tags,
            keep_on_teardown=not is_dev_stack(config.stack),
        ),
    )


def build(config: StackConfig, secrets: Mapping[str, str], *, revision_commit: str) -> None:
    name = cluster_name(config)
    tags = config.tags
    account_id = aws.get_caller_identity_output().account_id
    net = config.network

    network = Network(
        "network",
        NetworkArgs(
            region=config.region,
            vpc_cidr=str(net.vpc_cidr),
            availability_zones=config.azs,
            public_subnet_cidrs=config.subnet_cidrs("public"),
            private_subnet_cidrs=config.subnet_cidrs("private"),
            database_subnet_cidrs=config.subnet_cidrs("database"),
            single_nat_gateway=net.nat_gateways == "single",
            flow_log_retention_days=net.flow_log_retention_days,
            interface_endpoints=net.interface_endpoints,
            cluster_name=name,
            transit_gateway_id=net.transit_gateway_id,
            transit_gateway_cidrs=[
                str(c) for c in config.cluster.private_access_cidrs if not c.subnet_of(net.vpc_cidr)
            ],
            tags=tags,
            keep_on_teardown=not is_dev_stack(config.stack),
        ),
    )

    spec = config.cluster
    cluster = Cluster(
        "cluster",
        ClusterArgs(
            cluster_name=name,
            kubernetes_version=spec.kubernetes_version,
            vpc_id=network.vpc_id,
            private_subnet_ids=network.private_subnet_ids,
            endpoint_public_access=spec.endpoint_public_access,
            public_access_cidrs=[str(c) for c in spec.public_access_cidrs],
            enabled_log_types=list(spec.enabled_log_types),
            log_retention_days=spec.log_retention_days,
            admin_role_arns=spec.declared_admin_role_arns,
            preview_role_arns=list(spec.preview_role_arns),
            private_access_cidrs=[str(c) for c in spec.private_access_cidrs],
            private_access_security_group_ids=list(spec.private_access_security_group_ids),
            tags=tags,
            keep_on_teardown=not is_dev_stack(config.stack),
        ),
    )
    db, storage = config.database, config.storage
    data = Data(
        "data",
        DataArgs(
            stack=config.stack,
            account_id=account_id,
            vpc_id=network.vpc_id,
            vpc_cidr=str(net.vpc_cidr),
            database_subnet_ids=network.database_subnet_ids,
            private_subnet_ids=network.private_subnet_ids,
            availability_zones=config.azs,
            node_security_group_id=cluster.node_security_group_id,
            db_instance_class=db.instance_class,
            db_engine_version=db.engine_version,
            db_allocated_storage_gb=db.allocated_storage_gb,
            db_max_allocated_storage_gb=db.max_allocated_storage_gb,
            db_multi_az=db.multi_az,
            db_deletion_protection=db.deletion_protection,
            db_allow_major_version_upgrade=db.allow_major_version_upgrade,
            db_skip_final_snapshot=db.skip_final_snapshot,
            db_backup_retention_days=db.backup_retention_days,
            noncurrent_version_expiration_days=storage.noncurrent_version_expiration_days,
            abort_incomplete_upload_days=storage.abort_incomplete_upload_days,
            replication_region=storage.replication_region,
            force_destroy=storage.force_destroy,
            tags=tags,
            keep_on_teardown=not is_dev_stack(config.stack),
        ),
    )

    backup = _backup(config, name, account_id, data)

    codeweave = config.codeweave
    service_roles = ServiceRoles(
        "service-roles",
        ServiceRolesArgs(
            stack=config.stack,
            region=config.region,
            account_id=account_id,
            bucket_arns=data.bucket_arns,
            data_key_arn=data.key.arn,
            codeweave_account_id=codeweave.account_id if codeweave.enabled else None,
            codeweave_external_id=secrets.get("codeweaveExternalId") if codeweave.enabled else None,
            tags=tags,
        ),
    )

    compute = Compute(
        "compute",
        ComputeArgs(
            stack=config.stack,
            vpc_id=network.vpc_id,
            private_subnet_ids=network.private_subnet_ids,
            batch_instance_profile_arn=service_roles.batch_instance_profile.arn,
            batch_instance_types=list(config.batch.instance_types),
            batch_max_vcpus=config.batch.max_vcpus,
            data_key_arn=data.key.arn,
            userdata_bucket=data.bucket_names["userdata"],
            tags=tags,
        ),
    )
    registry = Registry("registry", config.stack, data.key.arn, tags, force_delete=storage.force_destroy)

    # Platform secrets (the Codeweave API key, ...) live under this prefix in Secrets Manager and
    # reach pods only through External Secrets; the values are put there by operators, not by code.
    secrets_prefix = pulumi.Output.concat(
        f"arn:aws:secretsmanager:{config.region}:", account_id, f":secret:cdao/{config.stack}/*"
    )
    # infra/ creates the group and sets its retention; fluent-bit only writes to it (its IRSA policy
    # cannot create groups or set retention), so neither is decided twice.
    container_logs = aws.cloudwatch.LogGroup(
        "container-logs",
        name=container_log_group_name(config),
        retention_in_days=spec.container_log_retention_days,
        tags=tags,
        opts=kept_on_teardown(pulumi.ResourceOptions(), not is_dev_stack(config.stack)),
    )
    identity = WorkloadIdentity(
        "workload-identity",
        WorkloadIdentityArgs(
            stack=config.stack,
            region=config.region,
            account_id=account_id,
            cluster_name=name,
            oidc_provider_arn=cluster.oidc_provider_arn,
            oidc_issuer=cluster.oidc_issuer,
            bucket_arns=data.bucket_arns,
            data_key_arn=data.key.arn,
            flyte_projects=list(config.flyte.projects),
            flyte_domains=list(FLYTE_DOMAINS),
            batch_queue_arns=list(compute.queue_arns.values()),
            emr_serverless_application_arn=compute.emr_application.arn,
            connector_attempts_table_arn=compute.attempt_table.arn,
            passable_roles={
                "batch": service_roles.batch_job.arn,
                "sagemaker": service_roles.sagemaker_execution.arn,
                "emr-serverless": service_roles.emr_job.arn,
                "emr-service": service_roles.emr_service.arn,
                "emr-instance": service_roles.emr_instance.arn,
            },
            secrets_prefix_arn=secrets_prefix,
            db_master_secret_arn=data.db_master_secret_arn,
            container_log_group_arn=container_logs.arn,
            tags=tags,
            extra_policies={
                "mlflow": mlops.mlflow_policy(data.bucket_arns["userdata"], data.key.arn),
                "inference": mlops.inference_policy(data.bucket_arns["userdata"], data.key.arn),
            },
        ),
    )

    # The node networking add-ons, running as their own IRSA roles, exist before any node group
    # (infra/components/addons.py says why); the other add-ons need a node to run on.
    node_networking = ClusterAddons(
        "cluster-addons-networking",
        ClusterAddonsArgs(
            cluster_name=cluster.name,
            addons=NODE_NETWORKING_ADDONS,
            role_arns=identity.role_arns,
            versions=spec.addon_versions,
            tags=tags,
        ),
    )
    pools = {}
    for pool_name, pool in config.enabled_pools.items():
        pools[pool_name] = NodePool(
            f"pool-{pool_name}",
            NodePoolArgs(
                pool_name=pool_name,
                pool=pool,
                cluster_name=cluster.name,
                node_role_arn=cluster.node_role_arn,
                node_security_group_id=cluster.node_security_group_id,
                subnet_ids=network.private_subnet_ids,
                depends_on=node_networking.addons,
                tags=tags,
            ),
        )
    workload_addons = ClusterAddons(
        "cluster-addons",
        ClusterAddonsArgs(
            cluster_name=cluster.name,
            addons=WORKLOAD_ADDONS,
            role_arns=identity.role_arns,
            versions=spec.addon_versions,
            # The cpu pool hosts the system add-ons (the GPU pools are tainted and start at zero).
            depends_on=[pools["cpu"].node_group],
            tags=tags,
        ),
    )
    endpoint = FlyteEndpoint(
        "flyte-endpoint",
        FlyteEndpointArgs(
            hostname=config.flyte.hostname,
            validation=config.flyte.certificate_validation,
            hosted_zone_id=config.flyte.hosted_zone_id,
            tags=tags,
        ),
    )

    values: dict[str, pulumi.Input[str]] = {
        "aws-region": config.region,
        "aws-account-id": account_id,
        "stack": config.stack,
        "cluster-name": name,
        "vpc-id": network.vpc_id,
        "repo-url": config.gitops.repo_url,
        "repo-revision": config.gitops.revision,
        "repo-path": config.gitops.path,
        "bucket-metadata": data.bucket_names["metadata"],
        "bucket-userdata": data.bucket_names["userdata"],
        "bucket-workflows": data.bucket_names["workflows"],
        "fast-register-prefix": FAST_REGISTER_PREFIX,
        "db-endpoint": data.db_endpoint,
        "db-port": data.db_port.apply(str),
        "db-name": DB_NAME,
        "db-master-secret-arn": data.db_master_secret_arn,
        "efs-file-system-id": data.efs_id,
        "models-uri": mlops.s3_uri(data.bucket_names["userdata"], mlops.MODELS_PREFIX),
        "batch-queue-spot": compute.queue_names["spot"],
        "batch-queue-ondemand": compute.queue_names["ondemand"],
        "emr-serverless-application-id": compute.emr_application.id,
        "emr-log-uri": compute.emr_log_uri,
        "emr-security-configuration": compute.emr_security_configuration.name,
        "emr-service-role-arn": service_roles.emr_service.arn,
        "emr-instance-profile": service_roles.emr_instance_profile.name,
        "container-log-group": container_logs.name,
        "flyte-hostname": config.flyte.hostname,
        "flyte-certificate-arn": endpoint.certificate_arn,
        "private-subnet-ids": pulumi.Output.all(*network.private_subnet_ids).apply(",".join),
        "sagemaker-output-uri": compute.sagemaker_output_uri,
        "connector-attempts-table": compute.attempt_table.name,
        "ecr-tasks-repository": registry.repository_urls["tasks"],
        "ecr-connector-repository": registry.repository_urls["connector"],
        "connector-image-tag": revision_commit,
        "codeweave-endpoint": codeweave.endpoint if codeweave.enabled and codeweave.endpoint else "",
        "codeweave-api-key-secret": codeweave_secret_name(config) if codeweave.enabled else "",
        "role-arn-sagemaker-execution": service_roles.sagemaker_execution.arn,
        "role-arn-batch-job": service_roles.batch_job.arn,
        "role-arn-emr-job": service_roles.emr_job.arn,
        "role-arn-codeweave": service_roles.codeweave.arn if service_roles.codeweave else "",
        **{f"role-arn-{role}": arn for role, arn in identity.role_arns.items()},
        **{
            f"{CHART_VERSION_PREFIX.removeprefix(ANNOTATION_PREFIX)}{c}": v
            for c, v in config.gitops.chart_versions.items()
        },
    }
    annotations = {f"{ANNOTATION_PREFIX}{key}": value for key, value in values.items()}
    expected = set(stack_annotation_keys(list(config.gitops.chart_versions), list(config.flyte.projects)))
    if set(annotations) != expected:
        # A programming error, not a config one: the contract and the wiring disagree.
        raise AssertionError(f"cluster Secret annotations differ from the contract: {set(annotations) ^ expected}")

    GitOps(
        "gitops",
        GitOpsArgs(
            stack=config.stack,
            kubeconfig=cluster.kubeconfig,
            argocd_chart_version=config.gitops.argocd_chart_version,
            repo_url=config.gitops.repo_url,
            repo_revision=config.gitops.revision,
            repo_path=config.gitops.path,
            labels={"environment": config.stack, **addon_labels(config.addons)},
            annotations=annotations,
            # Argo CD tolerates no GPU taint: the cpu pool hosts it, and CoreDNS must resolve for it;
            # whatever runs Pulumi reaches the API only once its ingress rules and routes exist.
            depends_on=[
                pools["cpu"].node_group,
                *workload_addons.addons,
                *cluster.api_access_rules,
                *network.api_access_routes,
            ],
            tags=tags,
        ),
    )

    outputs: dict[str, Any] = {
        "region": config.region,
        "clusterName": name,
        "kubeconfig": pulumi.Output.secret(cluster.kubeconfig),
        "oidcProviderArn": cluster.oidc_provider_arn,
        "vpcId": network.vpc_id,
        "privateSubnetIds": network.private_subnet_ids,
        "databaseSubnetIds": network.database_subnet_ids,
        "dbEndpoint": data.db_endpoint,
        "dbMasterSecretArn": data.db_master_secret_arn,
        "bucketNames": data.bucket_names,
        "efsFileSystemId": data.efs_id,
        "dbInstanceIdentifier": data.db.identifier,
        "batchQueues": compute.queue_names,
        "emrServerlessApplicationId": compute.emr_application.id,
        "ecrRepositories": registry.repository_urls,
        "roleArns": identity.role_arns,
        "flyteEndpoint": f"https://{config.flyte.hostname}",
        "flyteCertificateValidationRecord": endpoint.validation_record,
        "flyteCertificateArn": endpoint.certificate_arn,
        # Each log group the program owns with its retention: what `cdao doctor` checks the account against.
        "logGroups": {
            "controlPlane": {"name": cluster.control_plane_log_group_name, "retentionDays": spec.log_retention_days},
            "flowLogs": {"name": network.flow_log_group_name, "retentionDays": config.network.flow_log_retention_days},
            "containers": {"name": container_logs.name, "retentionDays": spec.container_log_retention_days},
        },
        "serviceRoleArns": {
            "sagemakerExecution": service_roles.sagemaker_execution.arn,
            "batchJob": service_roles.batch_job.arn,
            "emrJob": service_roles.emr_job.arn,
            "codeweave": service_roles.codeweave.arn if service_roles.codeweave else None,
        },
    }
    if backup is not None:
        # What docs/disaster-recovery.md's restore commands take.
        outputs["backup"] = {
            "vaultName": backup.vault.name,
            "planId": backup.plan.id,
            "roleArn": backup.role.arn,
            "copyVaultArn": backup.copy_vault_arn,
        }
    for key, value in outputs.items():
        pulumi.export(key, value)
