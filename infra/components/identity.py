"""Who may do what: roles AWS services assume for the platform, and IRSA roles for pods.

ServiceRoles come first (the compute back-ends need them); WorkloadIdentity comes last, because
its policies name the queues, applications and buckets the other components created.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
from cdao_connector_resources import STACK_TAG, SWEEP_INDEX, name_prefix

from infra.contract import (
    FAST_REGISTER_PREFIX,
    SAGEMAKER_OUTPUTS_PREFIX,
    SERVICE_ACCOUNTS,
    SHARED_INPUTS_PREFIX,
    ServiceAccount,
    flyte_task_account,
    raw_data_prefix,
)
from infra.lib import iam, mlops

# Managed policies that AWS maintains for its own controllers, scoped by AWS through tags and
# conditions; rewriting them would only drift from what the drivers need release to release.
MANAGED_CONTROLLER_POLICIES = {
    "ebs-csi": "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy",
    "efs-csi": "arn:aws:iam::aws:policy/service-role/AmazonEFSCSIDriverPolicy",
    "vpc-cni": "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
}


def _s3_read_write(sid: str, bucket_arns: Sequence[str], prefixes: Sequence[str] = ("",)) -> list[dict]:
    objects = [f"{arn}/{prefix}*" for arn in bucket_arns for prefix in prefixes]
    return [
        iam.allow(f"{sid}List", ["s3:ListBucket", "s3:GetBucketLocation"], list(bucket_arns)),
        iam.allow(
            f"{sid}Objects", ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"], objects
        ),
    ]


@dataclass(frozen=True)
class ServiceRolesArgs:
    stack: str
    region: str
    account_id: pulumi.Input[str]
    bucket_arns: Mapping[str, pulumi.Input[str]]
    data_key_arn: pulumi.Input[str]
    codeweave_account_id: str | None
    codeweave_external_id: pulumi.Input[str] | None
    tags: Mapping[str, str] = field(default_factory=dict)


class ServiceRoles(pulumi.ComponentResource):
    """Roles that AWS services (and Codeweave) assume to run the platform's jobs."""

    def __init__(self, name: str, args: ServiceRolesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cdao:infra:ServiceRoles", name, None, opts)
        self._name, self._args = name, args
        region, account = args.region, args.account_id
        buckets = [args.bucket_arns["userdata"], args.bucket_arns["metadata"]]
        # The jobs' roles serve every project and domain: MLflow's artifacts stay the server's alone.
        # Model weights: a production SageMaker/Batch job may publish them, and these roles cannot
        # tell production from other domains, so they keep write access there.
        data_access = pulumi.Output.all(buckets, args.data_key_arn).apply(
            lambda a: [
                *_s3_read_write("TaskData", a[0]),
                iam.use_data_key(a[1]),
                *mlops.guard_statements(a[0][0], publishes_models=True),
            ]
        )

        self.sagemaker_execution = self._role(
            "sagemaker-execution",
            "SageMaker training, processing and transform jobs of the platform",
            iam.service_trust(
                "sagemaker.amazonaws.com", account, pulumi.Output.concat(f"arn:aws:sagemaker:{region}:", account, ":*")
            ),
            pulumi.Output.all(data_access, account).apply(
                lambda a: iam.document(
                    [
                        *a[0],
                        # GetAuthorizationToken has no resource-level permissions.
                        iam.allow("EcrAuth", ["ecr:GetAuthorizationToken"], ["*"]),
                        iam.allow(
                            "EcrPull",
                            ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                            [f"arn:aws:ecr:{region}:{a[1]}:repository/cdao-{args.stack}-*"],
                        ),
                        iam.allow(
                            "JobLogs",
                            [
                                "logs:CreateLogGroup",
                                "logs:CreateLogStream",
                                "logs:PutLogEvents",
                                "logs:DescribeLogStreams",
                            ],
                            [f"arn:aws:logs:{region}:{a[1]}:log-group:/aws/sagemaker/*"],
                        ),
                        iam.allow(
                            "JobMetrics",
                            ["cloudwatch:PutMetricData"],
                            ["*"],
                            {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
                        ),
                    ]
                )
            ),
        )
        self.batch_job = self._role(
            "batch-job",
            "Containers of the platform's AWS Batch jobs",
            iam.service_trust(
                "ecs-tasks.amazonaws.com", account, pulumi.Output.concat(f"arn:aws:ecs:{region}:", account, ":*")
            ),
            data_access.apply(iam.document),
        )
        self.batch_instance = self._role(
            "batch-instance",
            "ECS container instances of the platform's Batch compute environments",
            iam.document(
                [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]
            ),
            None,
            managed=["arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"],
        )
        self.batch_instance_profile = aws.iam.InstanceProfile(
            f"{name}-batch-instance",
            role=self.batch_instance.name,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self.batch_instance),
        )
        self.emr_job = self._role(
            "emr-job",
            "Runtime role of EMR Serverless Spark job runs",
            iam.service_trust(
                "emr-serverless.amazonaws.com",
                account,
                pulumi.Output.concat(f"arn:aws:emr-serverless:{region}:", account, ":/applications/*"),
            ),
            pulumi.Output.all(data_access, account).apply(
                lambda a: iam.document(
                    [
                        *a[0],
                        iam.allow(
                            "GlueCatalogRead",
                            ["glue:GetDatabase", "glue:GetTable", "glue:GetPartitions"],
                            [
                                f"arn:aws:glue:{region}:{a[1]}:catalog",
                                f"arn:aws:glue:{region}:{a[1]}:database/*",
                                f"arn:aws:glue:{region}:{a[1]}:table/*",
                            ],
                        ),
                    ]
                )
            ),
        )
        self.emr_instance = self._role(
            "emr-instance",
            "EC2 instances of the platform's transient EMR clusters",
            iam.document(
                [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]
            ),
            data_access.apply(iam.document),
        )
        self.emr_service = self._role(
            "emr-service",
            "EMR service role for the platform's transient EMR-on-EC2 clusters",
            iam.service_trust(
                "elasticmapreduce.amazonaws.com",
                account,
                pulumi.Output.concat(f"arn:aws:elasticmapreduce:{region}:", account, ":*"),
            ),
            # AmazonEMRServicePolicy_v2's own PassRoleForEC2 names only role/EMR_EC2_DefaultRole
            # (https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AmazonEMRServicePolicy_v2.html,
            # policy v6): launching the cluster's instances with our instance profile needs this grant.
            self.emr_instance.arn.apply(
                lambda arn: iam.document([iam.pass_role("PassInstanceRole", [arn], "ec2.amazonaws.com")])
            ),
            # v2 acts only on subnets, security groups and VPCs tagged
            # for-use-with-amazon-emr-managed-policies=true (infra/components/network.py tags them).
            managed=["arn:aws:iam::aws:policy/service-role/AmazonEMRServicePolicy_v2"],
        )
        self.emr_instance_profile = aws.iam.InstanceProfile(
            f"{name}-emr-instance",
            # EMR rejects an instance profile named differently from its role ("invalid instance
            # profile"): https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-iam-roles-custom.html
            name=self.emr_instance.name,
            role=self.emr_instance.name,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self.emr_instance),
        )

        self.codeweave: aws.iam.Role | None = None
        if args.codeweave_account_id and args.codeweave_external_id is not None:
            self.codeweave = self._role(
                "codeweave",
                "Assumed by Codeweave's GPU jobs to read task inputs and write outputs",
                pulumi.Output.secret(args.codeweave_external_id).apply(
                    lambda external_id: iam.document(
                        [
                            {
                                "Effect": "Allow",
                                "Principal": {"AWS": f"arn:aws:iam::{args.codeweave_account_id}:root"},
                                "Action": "sts:AssumeRole",
                                # Without the external ID any Codeweave customer could point Codeweave at us.
                                "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
                            }
                        ]
                    )
                ),
                data_access.apply(iam.document),
                max_session_seconds=3600 * 12,
            )

        # The stack outputs this component contributes (infra/program.py exports them; the names are stable:
        # tests/infra and cdao doctor read them).
        self.stack_outputs: dict[str, Any] = {
            "serviceRoleArns": {
                "sagemakerExecution": self.sagemaker_execution.arn,
                "batchJob": self.batch_job.arn,
                "emrJob": self.emr_job.arn,
                "codeweave": self.codeweave.arn if self.codeweave else None,
            }
        }
        self.register_outputs(
            {
                "sagemakerExecutionRoleArn": self.sagemaker_execution.arn,
                "batchJobRoleArn": self.batch_job.arn,
                "emrJobRoleArn": self.emr_job.arn,
                "codeweaveRoleArn": self.codeweave.arn if self.codeweave else None,
            }
        )

    def _role(
        self,
        purpose: str,
        description: str,
        trust: pulumi.Input[str],
        policy: pulumi.Input[str] | None,
        *,
        managed: Sequence[str] = (),
        max_session_seconds: int = 3600,
    ) -> aws.iam.Role:
        name, tags = f"{self._name}-{purpose}", dict(self._args.tags)
        role = aws.iam.Role(
            name,
            description=description,
            assume_role_policy=trust,
            max_session_duration=max_session_seconds,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        if policy is not None:
            aws.iam.RolePolicy(name, role=role.id, policy=policy, opts=pulumi.ResourceOptions(parent=role))
        for arn in managed:
            aws.iam.RolePolicyAttachment(
                f"{name}-{arn.rsplit('/', 1)[1]}",
                role=role.name,
                policy_arn=arn,
                opts=pulumi.ResourceOptions(parent=role),
            )
        return role


@dataclass(frozen=True)
class WorkloadIdentityArgs:
    stack: str
    region: str
    account_id: pulumi.Input[str]
    cluster_name: str
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]
    bucket_arns: Mapping[str, pulumi.Input[str]]
    data_key_arn: pulumi.Input[str]
    flyte_projects: Sequence[str]
    flyte_domains: Sequence[str]
    batch_queue_arns: Sequence[pulumi.Input[str]]
    emr_serverless_application_arn: pulumi.Input[str]
    connector_attempts_table_arn: pulumi.Input[str]
    passable_roles: Mapping[str, pulumi.Input[str]]  # role ARN by service it may be passed to
    secrets_prefix_arn: pulumi.Input[str]
    db_master_secret_arn: pulumi.Input[str]
    container_log_group_arn: pulumi.Input[str]
    tags: Mapping[str, str] = field(default_factory=dict)
    # Policies of contract roles that other components own (the MLOps layers' roles), by role key.
    extra_policies: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)


class WorkloadIdentity(pulumi.ComponentResource):
    """One IRSA role per service account of the contract, each trusting only that account."""

    def __init__(self, name: str, args: WorkloadIdentityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cdao:infra:WorkloadIdentity", name, None, opts)
        self._name, self._args = name, args
        self.role_arns: dict[str, pulumi.Output[str]] = {}
        policies = self._policies()
        accounts = [*SERVICE_ACCOUNTS]
        accounts += [flyte_task_account(p, d) for p in args.flyte_projects for d in args.flyte_domains]
        for account in accounts:
            self.role_arns[account.role] = self._irsa_role(account, policies[account.role])
        # The stack outputs this component contributes (infra/program.py exports them; the names are stable:
        # tests/infra and cdao doctor read them).
        self.stack_outputs: dict[str, Any] = {"roleArns": self.role_arns}
        self.register_outputs({"roleArns": self.role_arns})

    def _irsa_role(self, account: ServiceAccount, policy: pulumi.Input[str] | str) -> pulumi.Output[str]:
        args = self._args
        name = f"{self._name}-{account.role}"
        role = aws.iam.Role(
            name,
            description=f"IRSA: {account.namespace}/{account.name} in {args.cluster_name} ({account.purpose})"[:1000],
            assume_role_policy=iam.irsa_trust(
                args.oidc_provider_arn, args.oidc_issuer, account.namespace, account.name
            ),
            tags={**args.tags, "kubernetes-service-account": f"{account.namespace}.{account.name}"},
            opts=pulumi.ResourceOptions(parent=self),
        )
        if isinstance(policy, str) and policy.startswith("arn:aws:iam::aws:policy/"):
            grant: pulumi.CustomResource = aws.iam.RolePolicyAttachment(
                name, role=role.name, policy_arn=policy, opts=pulumi.ResourceOptions(parent=role)
            )
        else:
            grant = aws.iam.RolePolicy(name, role=role.id, policy=policy, opts=pulumi.ResourceOptions(parent=role))
        # Handed out only once its permissions are attached: whatever runs as the role (the vpc-cni
        # add-on before the first nodes boot) must never start with a role that can do nothing.
        return pulumi.Output.all(role.arn, grant.id).apply(lambda values: values[0])

    def _policies(self) -> dict[str, pulumi.Input[str]]:
        args = self._args
        region, cluster = args.region, args.cluster_name
        metadata, userdata = args.bucket_arns["metadata"], args.bucket_arns["userdata"]
        workflows = args.bucket_arns["workflows"]

        def with_data(bucket_list: list, extra=lambda a: []):
            # Flyte's own services reach userdata for raw data only: never MLflow's artifacts or model weights.
            return pulumi.Output.all(bucket_list, args.data_key_arn, args.account_id, userdata).apply(
                lambda a: iam.document(
                    [
                        *_s3_read_write("Data", a[0]),
                        iam.use_data_key(a[1]),
                        *extra(a),
                        *(mlops.guard_statements(a[3], publishes_models=False) if a[3] in a[0] else []),
                    ]
                )
            )

        policies: dict[str, pulumi.Input[str]] = {
            "flyteadmin": with_data([metadata, userdata, workflows]),
            "flytepropeller": with_data([metadata, userdata]),
            "datacatalog": with_data([metadata]),
            "fluent-bit": pulumi.Output.from_input(args.container_log_group_arn).apply(
                lambda arn: iam.document([iam.allow("ShipLogs", sorted(FLUENT_BIT_NARROWINGS), [arn, f"{arn}:*"])])
            ),
            "external-secrets": pulumi.Output.all(
                args.secrets_prefix_arn, args.db_master_secret_arn, args.data_key_arn
            ).apply(
                lambda a: iam.document(
                    [
                        iam.allow(
                            "ReadPlatformSecrets",
                            ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                            [a[0], a[1]] if a[1] else [a[0]],
                        ),
                        iam.allow("DecryptPlatformSecrets", ["kms:Decrypt"], [a[2]]),
                    ]
                )
            ),
            "cluster-autoscaler": iam.document(
                [
                    # Upstream's "Full Cluster Autoscaler Features Policy" at cluster-autoscaler-1.34.1
                    # (kubernetes/autoscaler cluster-autoscaler/cloudprovider/aws/README.md), narrowed as
                    # CLUSTER_AUTOSCALER_NARROWINGS says. Describe calls have no resource-level permissions.
                    iam.allow(
                        "Discover",
                        [
                            "autoscaling:DescribeAutoScalingGroups",
                            "autoscaling:DescribeAutoScalingInstances",
                            "autoscaling:DescribeLaunchConfigurations",
                            "autoscaling:DescribeScalingActivities",
                            "ec2:DescribeImages",
                            "ec2:DescribeInstanceTypes",
                            "ec2:DescribeLaunchTemplateVersions",
                            "ec2:GetInstanceTypesFromInstanceRequirements",
                        ],
                        ["*"],
                    ),
                    iam.allow(
                        "DescribeNodegroups",
                        ["eks:DescribeNodegroup"],
                        [f"arn:aws:eks:{region}:*:nodegroup/{cluster}/*"],
                    ),
                    # Only ASGs that EKS tagged as this cluster's own node groups may be resized.
                    iam.allow(
                        "ScaleOwnGroups",
                        ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
                        ["*"],
                        {"StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster}": "owned"}},
                    ),
                ]
            ),
            "aws-load-balancer-controller": self._load_balancer_controller_policy(),
            "connector": self._connector_policy(),
            **MANAGED_CONTROLLER_POLICIES,
            **args.extra_policies,
        }
        for project in args.flyte_projects:
            for domain in args.flyte_domains:
                namespace = f"{project}-{domain}"
                # Propeller writes each execution's metadata under metadata/propeller/<project>-<domain>-<id>;
                # the task role reaches only its own project-domain's part of it.
                policies[f"flyte-tasks-{namespace}"] = pulumi.Output.all(metadata, userdata, args.data_key_arn).apply(
                    lambda a, ns=namespace, p=project, d=domain: iam.document(
                        [
                            iam.allow("ListBuckets", ["s3:ListBucket", "s3:GetBucketLocation"], [a[0], a[1]]),
                            iam.allow(
                                "OwnMetadata",
                                ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                                [f"{a[0]}/metadata/propeller/{ns}-*"],
                            ),
                            # Every execution's raw output location, set in flyteadmin per
                            # project-domain (cdao_cli/flyte_projects.py): no other project-domain's.
                            iam.allow(
                                "RawData",
                                ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                                [f"{a[1]}/{raw_data_prefix(p, d)}/*"],
                            ),
                            # Written by others, read by every project-domain: shared inputs
                            # (workflows/README.md) and the SageMaker jobs' outputs (their own role).
                            iam.allow(
                                "SharedReads",
                                ["s3:GetObject"],
                                [f"{a[1]}/{SHARED_INPUTS_PREFIX}*", f"{a[1]}/{SAGEMAKER_OUTPUTS_PREFIX}*"],
                            ),
                            # Model weights: every domain reads, only production publishes (infra/lib/mlops.py).
                            *mlops.model_statements(a[1], publishes=d == "production"),
                            # Kept although no Allow above reaches them: a later, wider Allow still
                            # may not touch MLflow's artifacts or publish weights outside production.
                            *mlops.guard_statements(a[1], publishes_models=d == "production"),
                            # The code `pyflyte register --copy auto` uploaded through flyteadmin's data
                            # proxy: <storagePrefix>/<project>/<domain>/<hash>/<file> in flyteadmin's
                            # storage container, the metadata bucket (flyteorg/flyte v1.16.8
                            # flyteadmin/dataproxy/service.go createStorageLocation).
                            iam.allow(
                                "FastRegisteredCode",
                                ["s3:GetObject"],
                                [f"{a[0]}/{FAST_REGISTER_PREFIX}/{p}/{d}/*"],
                            ),
                            iam.use_data_key(a[2]),
                        ]
                    )
                )
        return policies

    def _connector_policy(self) -> pulumi.Output[str]:
        args = self._args
        region, stack = args.region, args.stack
        roles = args.passable_roles

        def job_definitions(account: str) -> str:
            return f"arn:aws:batch:{region}:{account}:job-definition/{name_prefix(stack)}*"

        return pulumi.Output.all(
            list(args.batch_queue_arns),
            args.emr_serverless_application_arn,
            args.account_id,
            roles["batch"],
            roles["sagemaker"],
            roles["emr-serverless"],
            roles["emr-service"],
            roles["emr-instance"],
            [args.bucket_arns["metadata"], args.bucket_arns["userdata"]],
            args.data_key_arn,
            args.connector_attempts_table_arn,
        ).apply(
            lambda a: iam.document(
                [
                    # Claims of task attempts (plugins/cdao_connectors/_attempts.py): read, claim,
                    # record; and find the attempts to sweep by querying the sweep index alone. Query
                    # on an index is authorized on the index's ARN (Service Authorization Reference,
                    # Amazon DynamoDB, resource type "index", table/<table>/index/<index>:
                    # https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazondynamodb.html).
                    # Never scan, delete, query the table itself or another index, or reach any other table.
                    iam.allow(
                        "AttemptClaims", ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"], [a[10]]
                    ),
                    iam.allow("AttemptSweep", ["dynamodb:Query"], [f"{a[10]}/index/{SWEEP_INDEX}"]),
                    # Job definitions are named by cdao_connector_resources.name_prefix, the
                    # connector's own naming. SubmitJob needs the queue and the definition
                    # (Service Authorization Reference, AWS Batch:
                    # https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsbatch.html).
                    iam.allow("BatchSubmit", ["batch:SubmitJob"], [*a[0], job_definitions(a[2])]),
                    iam.allow(
                        "BatchJobDefinitions",
                        ["batch:RegisterJobDefinition", "batch:DeregisterJobDefinition"],
                        [job_definitions(a[2])],
                    ),
                    # RegisterJobDefinition and SubmitJob with tags are also authorized as
                    # batch:TagResource on the new definition or job ("Grant permission to tag
                    # resources on creation", https://docs.aws.amazon.com/batch/latest/userguide/supported-iam-actions-tagging.html).
                    iam.allow(
                        "BatchTagOnCreate",
                        ["batch:TagResource"],
                        [job_definitions(a[2]), f"arn:aws:batch:{region}:{a[2]}:job/*"],
                    ),
                    iam.allow("BatchTerminate", ["batch:TerminateJob"], [f"arn:aws:batch:{region}:{a[2]}:job/*"]),
                    # Batch's Describe and List calls have no resource-level permissions.
                    iam.allow(
                        "BatchDescribe", ["batch:DescribeJobs", "batch:DescribeJobDefinitions", "batch:ListJobs"], ["*"]
                    ),
                    iam.allow(
                        "EmrServerless",
                        [
                            "emr-serverless:StartJobRun",
                            "emr-serverless:GetJobRun",
                            # The status refresh lists the application's live runs; the action's
                            # resource is the application (AWS's own policy in the SageMaker guide,
                            # https://docs.aws.amazon.com/sagemaker/latest/dg/autopilot-create-experiment-timeseries-forecasting.html,
                            # grants it on arn:aws:emr-serverless:*:*:/applications/*).
                            "emr-serverless:ListJobRuns",
                            "emr-serverless:CancelJobRun",
                            "emr-serverless:GetApplication",
                            # flytekitplugins-awsemrserverless starts an application that auto-stop
                            # stopped (boto_handler.py start_application_if_needed); the action's
                            # resource is the application (Service Authorization Reference:
                            # https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonemrserverless.html).
                            "emr-serverless:StartApplication",
                        ],
                        [a[1], f"{a[1]}/jobruns/*"],
                    ),
                    # StartJobRun's tags (the attempt's flyte-attempt among them) are authorized as
                    # TagResource on the new run, as CreateApplication's are (Service Authorization
                    # Reference, operations table:
                    # https://docs.amazonaws.cn/service-authorization/latest/reference/list_emr-serverless.html):
                    # on job runs only, never to re-tag the stack's application.
                    iam.allow("EmrServerlessTagRunsOnStart", ["emr-serverless:TagResource"], [f"{a[1]}/jobruns/*"]),
                    iam.allow(
                        "EmrOnEc2Steps",
                        [
                            "elasticmapreduce:AddJobFlowSteps",
                            "elasticmapreduce:DescribeStep",
                            "elasticmapreduce:CancelSteps",
                            "elasticmapreduce:DescribeCluster",
                            "elasticmapreduce:TerminateJobFlows",
                            "elasticmapreduce:ListSteps",
                        ],
                        [f"arn:aws:elasticmapreduce:{region}:{a[2]}:cluster/*"],
                        {"StringEquals": {f"aws:ResourceTag/{STACK_TAG}": stack}},
                    ),
                    # The connector tags every cluster it creates with STACK_TAG (cdao_connector_resources).
                    # RunJobFlow names no resource type, so only "*" matches it; the request tag is what
                    # scopes it (Service Authorization Reference, Amazon EMR, see EmrListClusters).
                    iam.allow(
                        "EmrOnEc2Create",
                        ["elasticmapreduce:RunJobFlow"],
                        ["*"],
                        {"StringEquals": {f"aws:RequestTag/{STACK_TAG}": stack}},
                    ),
                    iam.allow(
                        "EmrOnEc2Tag",
                        ["elasticmapreduce:AddTags"],
                        [f"arn:aws:elasticmapreduce:{region}:{a[2]}:cluster/*"],
                        {"StringEquals": {f"aws:RequestTag/{STACK_TAG}": stack}},
                    ),
                    # A dead replica's transient cluster is found by name (ListClusters), which
                    # names no resource type, so "*" (Service Authorization Reference, Amazon EMR:
                    # https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticmapreduce.html).
                    iam.allow("EmrListClusters", ["elasticmapreduce:ListClusters"], ["*"]),
                    iam.allow(
                        "SageMakerJobs",
                        [
                            "sagemaker:CreateTrainingJob",
                            "sagemaker:DescribeTrainingJob",
                            "sagemaker:StopTrainingJob",
                            "sagemaker:CreateProcessingJob",
                            "sagemaker:DescribeProcessingJob",
                            "sagemaker:StopProcessingJob",
                            "sagemaker:CreateTransformJob",
                            "sagemaker:DescribeTransformJob",
                            "sagemaker:StopTransformJob",
                            # Task types sagemaker-hyperparameter-tuning-job and
                            # sagemaker-inference-recommender-job (flytekitplugins-awssagemaker's
                            # connectors, which platform/'s flyte-core values route to the service).
                            "sagemaker:CreateHyperParameterTuningJob",
                            "sagemaker:DescribeHyperParameterTuningJob",
                            "sagemaker:StopHyperParameterTuningJob",
                            "sagemaker:CreateInferenceRecommendationsJob",
                            "sagemaker:DescribeInferenceRecommendationsJob",
                            "sagemaker:StopInferenceRecommendationsJob",
                            # Models and endpoint configs are only created: by the batch transform
                            # connector and the two `boto` calls the connector allows
                            # (cdao_connectors.sagemaker.connector BOTO_CALLS).
                            "sagemaker:CreateModel",
                            "sagemaker:CreateEndpointConfig",
                            "sagemaker:CreateEndpoint",
                            "sagemaker:DescribeEndpoint",
                            "sagemaker:DeleteEndpoint",
                            "sagemaker:AddTags",
                            # The sweep tells an attempt's job from another of its name by the job's
                            # tags (cdao_connectors.sagemaker._plugin_clients find_attempts_job).
                            "sagemaker:ListTags",
                        ],
                        # Resource ARN formats: Service Authorization Reference, Amazon SageMaker,
                        # "Resource types" (https://docs.aws.amazon.com/service-authorization/latest/
                        # reference/list_amazonsagemaker.html); tests/plugins/test_iam_contract.py runs
                        # every routed SageMaker connector against them.
                        [
                            f"arn:aws:sagemaker:{region}:{a[2]}:{kind}/*"
                            for kind in (
                                "training-job",
                                "processing-job",
                                "transform-job",
                                "hyper-parameter-tuning-job",
                                "inference-recommendations-job",
                                "model",
                                "endpoint-config",
                                "endpoint",
                            )
                        ],
                    ),
                    # The connectors' status refresh lists InProgress training, processing and
                    # transform jobs; List* actions name no resource type, so "*" (Service
                    # Authorization Reference, Amazon SageMaker:
                    # https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonsagemaker.html).
                    iam.allow(
                        "SageMakerListJobs",
                        ["sagemaker:ListTrainingJobs", "sagemaker:ListProcessingJobs", "sagemaker:ListTransformJobs"],
                        ["*"],
                    ),
                    iam.pass_role("PassBatchJobRole", [a[3]], "ecs-tasks.amazonaws.com"),
                    iam.pass_role("PassSageMakerRole", [a[4]], "sagemaker.amazonaws.com"),
                    iam.pass_role("PassEmrServerlessRole", [a[5]], "emr-serverless.amazonaws.com"),
                    # RunJobFlow passes ServiceRole to EMR and JobFlowRole (the instance profile's
                    # role) to EC2 (https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-iam-role-for-ec2.html).
                    iam.pass_role("PassEmrServiceRole", [a[6]], "elasticmapreduce.amazonaws.com"),
                    iam.pass_role("PassEmrInstanceRole", [a[7]], "ec2.amazonaws.com"),
                    *_s3_read_write("TaskData", a[8]),
                    iam.use_data_key(a[9]),
                    # Shared by every project and domain: no model publishing, no MLflow artifacts.
                    *mlops.guard_statements(a[8][1], publishes_models=False),
                ]
            )
        )

    def _load_balancer_controller_policy(self) -> str:
        return load_balancer_controller_policy(self._args.cluster_name, self._args.region)


# External Secrets' read policy against upstream's (docs/provider/aws-secrets-manager.md at v1.1.0).
# What the v1.1.0 provider calls is in providers/v1/aws/secretsmanager/secretsmanager.go at that tag.
EXTERNAL_SECRETS_OMITTED: dict[str, str] = {
    "secretsmanager:ListSecrets": "called only for dataFrom.find, which platform/ does not use",
    "secretsmanager:BatchGetSecretValue": "called only for dataFrom.find, which platform/ does not use",
    "secretsmanager:GetResourcePolicy": "called only for a PushSecret's resource policy; platform/ pushes none",
    "secretsmanager:ListSecretVersionIds": "not called by the v1.1.0 provider",
}
EXTERNAL_SECRETS_NARROWINGS: dict[str, str] = {
    "secretsmanager:GetSecretValue": "this stack's prefix cdao/<stack>/ and the RDS master secret",
    "secretsmanager:DescribeSecret": "this stack's prefix cdao/<stack>/ and the RDS master secret",
}
EXTERNAL_SECRETS_ADDED: dict[str, str] = {
    "kms:Decrypt": "the RDS master secret and platform secrets are encrypted with the stack's own KMS key, "
    "which Secrets Manager uses with the caller's permissions on GetSecretValue",
}


# Fluent Bit's output plugin `cloudwatch_logs` (the one the aws-for-fluent-bit chart enables; upstream
# policy and source in tests/infra/data/upstream_controller_policies.yaml) against the one group infra/
# creates for it. It needs no logs:DescribeLogStreams: only the Go plugin `cloudwatch` calls that.
FLUENT_BIT_NARROWINGS: dict[str, str] = {
    "logs:CreateLogStream": "the stack's container log group only (cdao.io/container-log-group)",
    "logs:PutLogEvents": "the streams of the stack's container log group only",
}
FLUENT_BIT_OMITTED: dict[str, str] = {
    "logs:CreateLogGroup": "infra/ creates the group; platform/ sets cloudWatchLogs.autoCreateGroup: false",
    "logs:PutRetentionPolicy": "called only for a group the plugin creates; infra/ owns the retention",
}


# Where the cluster autoscaler's policy is narrower than upstream's (see "cluster-autoscaler" above).
# The resize actions keep a tag condition although the autoscaler did not create the groups: EKS
# tags every managed node group's Auto Scaling group k8s.io/cluster-autoscaler/<cluster>=owned
# (EKS user guide, managed-node-groups.html), and upstream recommends exactly this restriction.
CLUSTER_AUTOSCALER_NARROWINGS: dict[str, str] = {
    "autoscaling:SetDesiredCapacity": "Auto Scaling groups EKS tagged as this cluster's node groups",
    "autoscaling:TerminateInstanceInAutoScalingGroup": "Auto Scaling groups EKS tagged as this cluster's node groups",
    "eks:DescribeNodegroup": "this cluster's node groups, in this stack's region",
}
# Actions narrowed by a tag that the controller does not set itself, with who sets it.
_EKS_ASG_TAG = "EKS managed node groups (k8s.io/cluster-autoscaler/<cluster>=owned)"
CLUSTER_AUTOSCALER_TAGGED_BY_OTHERS: dict[str, str] = {
    "autoscaling:SetDesiredCapacity": _EKS_ASG_TAG,
    "autoscaling:TerminateInstanceInAutoScalingGroup": _EKS_ASG_TAG,
}


# Where this stack's policy of the AWS Load Balancer Controller is narrower than upstream's
# (kubernetes-sigs/aws-load-balancer-controller docs/install/iam_policy.json at v2.17.1, the app of
# chart 1.17.1; a copy is ../shared/charts/aws-load-balancer-controller/1.17.1/upstream-iam-policy.json),
# by action, and why that costs the controller nothing. tests/infra/test_vendor_policies.py compares
# the two and fails on any narrowing not listed here, and on any tag condition added to an action that
# upstream grants on resources the controller did not create (e.g. the node security group it opens for
# target-type ip: kubernetes-sigs/aws-load-balancer-controller #2578, #1312).
_REGION_ONLY = "the same resource types, in this stack's region only (one controller per cluster, one region)"
_OWN_TAG = (
    "upstream requires the elbv2.k8s.aws/cluster tag to be present; here it must name this cluster, "
    "which the controller writes on everything it creates (--cluster-name)"
)
# The Ingress features (Cognito auth, certificates, WAF, Shield) the controller acts on by ARN of the
# feature's resource type; granted and justified (LOAD_BALANCER_CONTROLLER_NARROWINGS) from one list.
_INGRESS_FEATURE_ACTIONS = (
    "cognito-idp:DescribeUserPoolClient",
    "acm:DescribeCertificate",
    "iam:GetServerCertificate",
    "waf-regional:GetWebACL",
    "waf-regional:GetWebACLForResource",
    "waf-regional:AssociateWebACL",
    "waf-regional:DisassociateWebACL",
    "wafv2:GetWebACL",
    "wafv2:GetWebACLForResource",
    "wafv2:AssociateWebACL",
    "wafv2:DisassociateWebACL",
    "shield:DescribeProtection",
    "shield:CreateProtection",
    "shield:DeleteProtection",
)
_FEATURE_ARNS = (
    "the resource types each action takes (user pools, certificates, web ACLs, Shield protections, "
    "application load balancers), in this stack's region where the type is regional"
)
LOAD_BALANCER_CONTROLLER_NARROWINGS: dict[str, str] = {
    **dict.fromkeys(_INGRESS_FEATURE_ACTIONS, _FEATURE_ARNS),
    "iam:CreateServiceLinkedRole": "only Elastic Load Balancing's service-linked role, the one it creates",
    "ec2:AuthorizeSecurityGroupIngress": "security groups (any, including the node group's) in this region only",
    "ec2:RevokeSecurityGroupIngress": "security groups (any, including the node group's) in this region only",
    "ec2:CreateSecurityGroup": (
        "the new group only with this cluster's elbv2.k8s.aws/cluster tag in the request: the controller tags "
        "every security group it creates on creation (upstream's own CreateTags grant for CreateSecurityGroup); "
        "the VPC it goes in (a resource the action is also authorized on) without a tag condition, in this "
        "region"
    ),
    "ec2:CreateTags": _OWN_TAG,
    "ec2:DeleteTags": _OWN_TAG,
    "ec2:DeleteSecurityGroup": _OWN_TAG,
    "elasticloadbalancing:CreateLoadBalancer": _OWN_TAG,
    "elasticloadbalancing:CreateTargetGroup": _OWN_TAG,
    "elasticloadbalancing:AddTags": _OWN_TAG + "; listeners and rules: " + _REGION_ONLY,
    "elasticloadbalancing:RemoveTags": _OWN_TAG + "; listeners and rules: " + _REGION_ONLY,
    "elasticloadbalancing:ModifyLoadBalancerAttributes": _OWN_TAG,
    "elasticloadbalancing:SetIpAddressType": _OWN_TAG,
    "elasticloadbalancing:SetSecurityGroups": _OWN_TAG,
    "elasticloadbalancing:SetSubnets": _OWN_TAG,
    "elasticloadbalancing:DeleteLoadBalancer": _OWN_TAG,
    "elasticloadbalancing:ModifyTargetGroup": _OWN_TAG,
    "elasticloadbalancing:ModifyTargetGroupAttributes": _OWN_TAG,
    "elasticloadbalancing:DeleteTargetGroup": _OWN_TAG,
    "elasticloadbalancing:ModifyListenerAttributes": _OWN_TAG,
    "elasticloadbalancing:ModifyCapacityReservation": _OWN_TAG,
    "elasticloadbalancing:ModifyIpPools": _OWN_TAG,
    "elasticloadbalancing:CreateListener": _REGION_ONLY,
    "elasticloadbalancing:DeleteListener": _REGION_ONLY,
    "elasticloadbalancing:CreateRule": _REGION_ONLY,
    "elasticloadbalancing:DeleteRule": _REGION_ONLY,
    "elasticloadbalancing:RegisterTargets": _REGION_ONLY,
    "elasticloadbalancing:DeregisterTargets": _REGION_ONLY,
    "elasticloadbalancing:SetWebAcl": _REGION_ONLY,
    "elasticloadbalancing:ModifyListener": _REGION_ONLY,
    "elasticloadbalancing:AddListenerCertificates": _REGION_ONLY,
    "elasticloadbalancing:RemoveListenerCertificates": _REGION_ONLY,
    "elasticloadbalancing:ModifyRule": _REGION_ONLY,
    "elasticloadbalancing:SetRulePriorities": _REGION_ONLY,
}


def load_balancer_controller_policy(cluster: str, region: str) -> str:
    """The AWS Load Balancer Controller's IRSA policy: upstream's v2.17.1 policy with the narrowings
    listed in LOAD_BALANCER_CONTROLLER_NARROWINGS (JSON text of an IAM policy document)."""
    owned = {"StringEquals": {"aws:ResourceTag/elbv2.k8s.aws/cluster": cluster}}
    requested = {"StringEquals": {"aws:RequestTag/elbv2.k8s.aws/cluster": cluster}}
    elb = f"arn:aws:elasticloadbalancing:{region}:*"
    load_balancers = [f"{elb}:targetgroup/*/*", f"{elb}:loadbalancer/net/*/*", f"{elb}:loadbalancer/app/*/*"]
    listeners = [f"{elb}:listener/net/*/*/*", f"{elb}:listener/app/*/*/*"]
    rules = [f"{elb}:listener-rule/net/*/*/*", f"{elb}:listener-rule/app/*/*/*"]
    security_groups = [f"arn:aws:ec2:{region}:*:security-group/*"]
    return iam.document(
        [
            iam.allow(
                "ServiceLinkedRole",
                ["iam:CreateServiceLinkedRole"],
                [
                    "arn:aws:iam::*:role/aws-service-role/elasticloadbalancing.amazonaws.com/"
                    "AWSServiceRoleForElasticLoadBalancing"
                ],
                {"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}},
            ),
            # Describe and Get APIs of EC2 and ELB take no resource ARNs.
            iam.allow(
                "Discover",
                [
                    "ec2:DescribeAccountAttributes",
                    "ec2:DescribeAddresses",
                    "ec2:DescribeAvailabilityZones",
                    "ec2:DescribeInternetGateways",
                    "ec2:DescribeVpcs",
                    "ec2:DescribeVpcPeeringConnections",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeInstances",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeTags",
                    "ec2:GetCoipPoolUsage",
                    "ec2:DescribeCoipPools",
                    "ec2:GetSecurityGroupsForVpc",
                    "ec2:DescribeIpamPools",
                    "ec2:DescribeRouteTables",
                    "elasticloadbalancing:DescribeLoadBalancers",
                    "elasticloadbalancing:DescribeLoadBalancerAttributes",
                    "elasticloadbalancing:DescribeListeners",
                    "elasticloadbalancing:DescribeListenerCertificates",
                    "elasticloadbalancing:DescribeSSLPolicies",
                    "elasticloadbalancing:DescribeRules",
                    "elasticloadbalancing:DescribeTargetGroups",
                    "elasticloadbalancing:DescribeTargetGroupAttributes",
                    "elasticloadbalancing:DescribeTargetHealth",
                    "elasticloadbalancing:DescribeTags",
                    "elasticloadbalancing:DescribeTrustStores",
                    "elasticloadbalancing:DescribeListenerAttributes",
                    "elasticloadbalancing:DescribeCapacityReservation",
                ],
                ["*"],
            ),
            # The controller looks these up on every ALB it reconciles (certificate discovery, WAF and
            # Shield state) unless the chart disables each feature; the resources are not its own, so no
            # tag condition. These two have no resource-level permissions.
            iam.allow(
                "IngressFeatureState",
                ["acm:ListCertificates", "iam:ListServerCertificates", "shield:GetSubscriptionState"],
                ["*"],
            ),
            iam.allow(
                "IngressFeatures",
                list(_INGRESS_FEATURE_ACTIONS),
                [
                    f"arn:aws:cognito-idp:{region}:*:userpool/*",
                    f"arn:aws:acm:{region}:*:certificate/*",
                    "arn:aws:iam::*:server-certificate/*",
                    f"arn:aws:waf-regional:{region}:*:webacl/*",
                    f"arn:aws:wafv2:{region}:*:regional/webacl/*/*",
                    "arn:aws:shield::*:protection/*",
                    f"{elb}:loadbalancer/app/*/*",
                ],
            ),
            # Target-type ip and instance: the controller opens the node (or pod) security group, which it
            # did not create and which carries no elbv2.k8s.aws/cluster tag, to the load balancer's group.
            iam.allow(
                "OpenTargetSecurityGroups",
                ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"],
                security_groups,
            ),
            # CreateSecurityGroup is authorized against the new group and the VPC it goes in (Service
            # Authorization Reference, Amazon EC2); the request's tags are the group's, so the tag
            # condition may cover only the group: on the VPC it would not hold and deny every create.
            iam.allow("CreateTaggedSecurityGroups", ["ec2:CreateSecurityGroup"], security_groups, requested),
            iam.allow("CreateSecurityGroupsInVpcs", ["ec2:CreateSecurityGroup"], [f"arn:aws:ec2:{region}:*:vpc/*"]),
            iam.allow(
                "TagOnCreateSecurityGroups",
                ["ec2:CreateTags"],
                security_groups,
                {"StringEquals": {**requested["StringEquals"], "ec2:CreateAction": "CreateSecurityGroup"}},
            ),
            # Tags of its own groups, but never the ownership tag itself (upstream's Null condition).
            iam.allow(
                "TagOwnSecurityGroups",
                ["ec2:CreateTags", "ec2:DeleteTags"],
                security_groups,
                {**owned, "Null": {"aws:RequestTag/elbv2.k8s.aws/cluster": "true"}},
            ),
            iam.allow("DeleteOwnSecurityGroups", ["ec2:DeleteSecurityGroup"], security_groups, owned),
            iam.allow(
                "CreateTaggedLoadBalancers",
                ["elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:CreateTargetGroup"],
                ["*"],
                requested,
            ),
            iam.allow(
                "TagOnCreateLoadBalancers",
                ["elasticloadbalancing:AddTags"],
                load_balancers,
                {
                    "StringEquals": {
                        **requested["StringEquals"],
                        "elasticloadbalancing:CreateAction": ["CreateTargetGroup", "CreateLoadBalancer"],
                    }
                },
            ),
            iam.allow(
                "TagOwnLoadBalancers",
                ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"],
                load_balancers,
                {**owned, "Null": {"aws:RequestTag/elbv2.k8s.aws/cluster": "true"}},
            ),
            iam.allow(
                "ManageOwnLoadBalancers",
                [
                    "elasticloadbalancing:ModifyLoadBalancerAttributes",
                    "elasticloadbalancing:SetIpAddressType",
                    "elasticloadbalancing:SetSecurityGroups",
                    "elasticloadbalancing:SetSubnets",
                    "elasticloadbalancing:DeleteLoadBalancer",
                    "elasticloadbalancing:ModifyTargetGroup",
                    "elasticloadbalancing:ModifyTargetGroupAttributes",
                    "elasticloadbalancing:DeleteTargetGroup",
                    "elasticloadbalancing:ModifyListenerAttributes",
                    "elasticloadbalancing:ModifyCapacityReservation",
                    "elasticloadbalancing:ModifyIpPools",
                ],
                ["*"],
                owned,
            ),
            iam.allow(
                "TagListenersAndRules",
                ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"],
                [*listeners, *rules],
            ),
            iam.allow(
                "ListenersAndRules",
                [
                    "elasticloadbalancing:CreateListener",
                    "elasticloadbalancing:DeleteListener",
                    "elasticloadbalancing:CreateRule",
                    "elasticloadbalancing:DeleteRule",
                    "elasticloadbalancing:SetWebAcl",
                    "elasticloadbalancing:ModifyListener",
                    "elasticloadbalancing:AddListenerCertificates",
                    "elasticloadbalancing:RemoveListenerCertificates",
                    "elasticloadbalancing:ModifyRule",
                    "elasticloadbalancing:SetRulePriorities",
                ],
                [*load_balancers, *listeners, *rules],
            ),
            iam.allow(
                "Targets",
                ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"],
                [f"{elb}:targetgroup/*/*"],
            ),
        ]
    )
