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

from infra.components.addons import NODE_NETWORKING_ADDONS, WORKLOAD_ADDONS, ClusterAddons, ClusterAddonsArgs
from infra.components.backup import Backup, BackupArgs
from infra.components.cluster import Cluster, ClusterArgs
from infra.components.compute import Compute, ComputeArgs, Registry
from infra.components.data import DB_NAME, Data, DataArgs
from infra.components.edge import FlyteEndpoint, FlyteEndpointArgs
from infra.components.gitops import GitOps, GitOpsArgs
from infra.components.identity import ServiceRoles, ServiceRolesArgs, WorkloadIdentity, WorkloadIdentityArgs
from infra.components.network import Network, NetworkArgs
from infra.components.node_pool import NodePool, NodePoolArgs, mig_layouts, time_slicing_configs
from infra.config import StackConfig
from infra.contract import FAST_REGISTER_PREFIX, FLYTE_DOMAINS, ClusterSecret, pod_host_patterns
from infra.declared import DECLARED_OUTPUT, declared
from infra.lib import mlops
from infra.lib.shared import kept_on_teardown


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
            keep_on_teardown=not config.destroyable,
        ),
    )


def _cluster_secret(
    config: StackConfig,
    *,
    account_id: pulumi.Input[str],
    revision_commit: str,
    network: Network,
    data: Data,
    compute: Compute,
    registry: Registry,
    service_roles: ServiceRoles,
    identity: WorkloadIdentity,
    endpoint: FlyteEndpoint,
    container_logs: aws.cloudwatch.LogGroup,
) -> ClusterSecret:
    """The Argo CD cluster Secret's contract (infra/contract.py), filled from the components."""
    codeweave = config.codeweave
    return ClusterSecret(
        environment=config.stack,
        profile=config.entry.profile,
        addons=config.addons,
        aws_region=config.region,
        aws_account_id=account_id,
        stack=config.stack,
        cluster_name=cluster_name(config),
        vpc_id=network.vpc_id,
        repo_url=config.gitops.repo_url,
        # The commit this deploy runs (infra/images.py): a branch-following stack's platform/ must not
        # move with the branch's tip, only with a deploy that recorded the commit.
        repo_revision=revision_commit,
        repo_path=config.gitops.path,
        bucket_metadata=data.bucket_names["metadata"],
        bucket_userdata=data.bucket_names["userdata"],
        bucket_workflows=data.bucket_names["workflows"],
        fast_register_prefix=FAST_REGISTER_PREFIX,
        db_endpoint=data.db_endpoint,
        db_port=data.db_port.apply(str),
        db_name=DB_NAME,
        db_master_secret_arn=data.db_master_secret_arn,
        efs_file_system_id=data.efs_id,
        models_uri=mlops.s3_uri(data.bucket_names["userdata"], mlops.MODELS_PREFIX),
        batch_queue_spot=compute.queue_names["spot"],
        batch_queue_ondemand=compute.queue_names["ondemand"],
        emr_serverless_application_id=compute.emr_application.id,
        emr_log_uri=compute.emr_log_uri,
        emr_security_configuration=compute.emr_security_configuration.name,
        emr_service_role_arn=service_roles.emr_service.arn,
        emr_instance_profile=service_roles.emr_instance_profile.name,
        container_log_group=container_logs.name,
        flyte_hostname=config.flyte.hostname,
        pod_host_patterns=pod_host_patterns(config.network.vpc_cidr),
        private_subnet_cidrs=",".join(config.subnet_cidrs("private")),
        database_subnet_cidrs=",".join(config.subnet_cidrs("database")),
        gpu_time_slicing=time_slicing_configs(config.enabled_pools),
        gpu_mig_layouts=mig_layouts(config.enabled_pools),
        flyte_certificate_arn=endpoint.certificate_arn,
        private_subnet_ids=pulumi.Output.all(*network.private_subnet_ids).apply(",".join),
        sagemaker_output_uri=compute.sagemaker_output_uri,
        connector_attempts_table=compute.attempt_table.name,
        ecr_tasks_repository=registry.repository_urls["tasks"],
        ecr_connector_repository=registry.repository_urls["connector"],
        connector_image_tag=revision_commit,
        codeweave_endpoint=codeweave.endpoint if codeweave.enabled and codeweave.endpoint else "",
        codeweave_api_key_secret=codeweave_secret_name(config) if codeweave.enabled else "",
        role_arns=identity.role_arns,
        flyte_projects=list(config.flyte.projects),
        role_arn_sagemaker_execution=service_roles.sagemaker_execution.arn,
        role_arn_batch_job=service_roles.batch_job.arn,
        role_arn_emr_job=service_roles.emr_job.arn,
        role_arn_codeweave=service_roles.codeweave.arn if service_roles.codeweave else "",
        chart_versions=dict(config.gitops.chart_versions),
    )


def build(config: StackConfig, secrets: Mapping[str, str], *, revision_commit: str, images_pushed: bool) -> None:
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
            keep_on_teardown=not config.destroyable,
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
            keep_on_teardown=not config.destroyable,
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
            keep_on_teardown=not config.destroyable,
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

    registry = Registry(
        "registry",
        config.stack,
        data.key.arn,
        tags,
        region=config.region,
        account_id=account_id,
        force_delete=storage.force_destroy,
        pull_role_arns=storage.image_pull_role_arns,
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
            # Before the first deploy pushed it, the application starts on AWS's image (infra/images.py).
            emr_serverless_image_uri=registry.image_uri("emr-serverless", revision_commit) if images_pushed else None,
            emr_serverless_image_ready=[registry.emr_serverless_pull_policy],
            tags=tags,
        ),
    )

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
        opts=kept_on_teardown(pulumi.ResourceOptions(), not config.destroyable),
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

    secret = _cluster_secret(
        config,
        account_id=account_id,
        revision_commit=revision_commit,
        network=network,
        data=data,
        compute=compute,
        registry=registry,
        service_roles=service_roles,
        identity=identity,
        endpoint=endpoint,
        container_logs=container_logs,
    )

    GitOps(
        "gitops",
        GitOpsArgs(
            stack=config.stack,
            kubeconfig=cluster.kubeconfig,
            argocd_chart_version=config.gitops.argocd_chart_version,
            repo_url=config.gitops.repo_url,
            repo_revision=revision_commit,  # as the cluster Secret's repo-revision (_cluster_secret)
            repo_path=config.gitops.path,
            labels=secret.labels(),
            annotations=secret.annotations(),
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

    # Every stack output, in one place: each component contributes its own (`stack_outputs`).
    outputs: dict[str, Any] = {"region": config.region}
    for part in (network, cluster, data, compute, registry, service_roles, identity, endpoint, backup):
        if part is not None:
            outputs |= part.stack_outputs
    # Each log group the program owns with its retention: what `cdao doctor` checks the account against.
    outputs["logGroups"] = {
        **cluster.log_groups,
        **network.log_groups,
        "containers": {"name": container_logs.name, "retentionDays": spec.container_log_retention_days},
    }
    # What this deployment promised, for `cdao doctor` to judge it by (infra/declared.py).
    outputs[DECLARED_OUTPUT] = declared(config, revision_commit=revision_commit)
    for key, value in outputs.items():
        pulumi.export(key, value)
