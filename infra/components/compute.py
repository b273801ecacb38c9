"""Compute back-ends the connectors submit to: AWS Batch queues, EMR, SageMaker defaults."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
from cdao_connector_resources import ATTEMPT_KEY, EXPIRES_AT, SWEEP_AFTER, SWEEP_INDEX, SWEEP_QUEUE_ATTRIBUTE

from infra.lib.shared import https_egress_only

EMR_RELEASE = "emr-7.5.0"  # Spark 3.5; EMR Serverless and EMR-on-EC2 share the release line


@dataclass(frozen=True)
class ComputeArgs:
    stack: str
    vpc_id: pulumi.Input[str]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    batch_instance_profile_arn: pulumi.Input[str]
    batch_instance_types: Sequence[str]
    batch_max_vcpus: int
    data_key_arn: pulumi.Input[str]
    userdata_bucket: pulumi.Input[str]
    # `<registry>/cdao-<stack>-emr-serverless:<revision commit>` (Registry.image_uri): the image the
    # Spark application runs, with flytekit for the plugin's Pythonic mode. None: AWS's image of the
    # release, only until the stack's first deploy pushed its own (infra/images.py).
    emr_serverless_image_uri: pulumi.Input[str] | None
    # What must exist before the application: EMR Serverless checks that it can pull the image when
    # the application is created or updated (Registry.emr_serverless_pull_policy).
    emr_serverless_image_ready: Sequence[pulumi.Resource] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


class Compute(pulumi.ComponentResource):
    def __init__(self, name: str, args: ComputeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cdao:infra:Compute", name, None, opts)
        tags = dict(args.tags)
        child = pulumi.ResourceOptions(parent=self)

        # Batch instances only talk out (to ECR, S3 and the Batch API); nothing talks in.
        sg = https_egress_only(f"{name}-batch", args.vpc_id, "AWS Batch instances: egress only", tags, self)
        self.queue_names: dict[str, pulumi.Output[str]] = {}
        self.queue_arns: dict[str, pulumi.Output[str]] = {}
        for capacity in ("spot", "ondemand"):
            environment = aws.batch.ComputeEnvironment(
                f"{name}-batch-{capacity}",
                name=f"cdao-{args.stack}-{capacity}",
                type="MANAGED",
                compute_resources=aws.batch.ComputeEnvironmentComputeResourcesArgs(
                    type="SPOT" if capacity == "spot" else "EC2",
                    # Capacity-optimised spot pools are reclaimed least often; BEST_FIT_PROGRESSIVE
                    # keeps on-demand cheap without waiting for one exact instance type.
                    allocation_strategy="SPOT_PRICE_CAPACITY_OPTIMIZED"
                    if capacity == "spot"
                    else "BEST_FIT_PROGRESSIVE",
                    min_vcpus=0,
                    max_vcpus=args.batch_max_vcpus,
                    instance_types=list(args.batch_instance_types),
                    instance_role=args.batch_instance_profile_arn,
                    subnets=list(args.private_subnet_ids),
                    security_group_ids=[sg.id],
                    tags=tags,
                ),
                tags=tags,
                opts=child,
            )
            queue = aws.batch.JobQueue(
                f"{name}-batch-{capacity}",
                name=f"cdao-{args.stack}-{capacity}",
                state="ENABLED",
                priority=10 if capacity == "ondemand" else 1,
                compute_environment_orders=[
                    aws.batch.JobQueueComputeEnvironmentOrderArgs(order=1, compute_environment=environment.arn)
                ],
                tags=tags,
                opts=pulumi.ResourceOptions(parent=environment),
            )
            self.queue_names[capacity] = queue.name
            self.queue_arns[capacity] = queue.arn

        emr_sg = https_egress_only(
            f"{name}-emr-serverless", args.vpc_id, "EMR Serverless workers: egress only", tags, self
        )
        self.emr_application = aws.emrserverless.Application(
            f"{name}-spark",
            name=f"cdao-{args.stack}-spark",
            release_label=EMR_RELEASE,
            type="SPARK",
            # Stopped when idle: an EMR Serverless application costs nothing until a job runs.
            auto_start_configuration=aws.emrserverless.ApplicationAutoStartConfigurationArgs(enabled=True),
            auto_stop_configuration=aws.emrserverless.ApplicationAutoStopConfigurationArgs(
                enabled=True, idle_timeout_minutes=15
            ),
            maximum_capacity=aws.emrserverless.ApplicationMaximumCapacityArgs(cpu="200 vCPU", memory="800 GB"),
            network_configuration=aws.emrserverless.ApplicationNetworkConfigurationArgs(
                subnet_ids=list(args.private_subnet_ids), security_group_ids=[emr_sg.id]
            ),
            # The stock image has no flytekit, which a Python @spark_task runs under
            # (flytekitplugins-awsemrserverless connector.py `_build_pythonic_job_driver`). Each new
            # commit changes the tag, and the provider applies that with a plain UpdateApplication
            # (terraform-provider-aws internal/service/emrserverless/application.go
            # resourceApplicationUpdate at 0620f2a6), which AWS refuses unless the application is
            # CREATED or STOPPED (API_UpdateApplication): an apply while a Spark job runs fails there.
            image_configuration=aws.emrserverless.ApplicationImageConfigurationArgs(
                image_uri=args.emr_serverless_image_uri
            )
            if args.emr_serverless_image_uri is not None
            else None,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.emr_serverless_image_ready)),
        )

        # EMR-on-EC2 transient clusters: data at rest encrypted in S3 and on local disks with the
        # platform's key. The connector names this configuration when it creates a cluster.
        self.emr_security_configuration = aws.emr.SecurityConfiguration(
            f"{name}-emr",
            name=f"cdao-{args.stack}-emr",
            configuration=pulumi.Output.from_input(args.data_key_arn).apply(
                lambda key: json.dumps(
                    {
                        "EncryptionConfiguration": {
                            "EnableInTransitEncryption": False,
                            "EnableAtRestEncryption": True,
                            "AtRestEncryptionConfiguration": {
                                "S3EncryptionConfiguration": {"EncryptionMode": "SSE-KMS", "AwsKmsKey": key},
                                "LocalDiskEncryptionConfiguration": {
                                    "EncryptionKeyProviderType": "AwsKms",
                                    "AwsKmsKey": key,
                                    "EnableEbsEncryption": True,
                                },
                            },
                        }
                    },
                    sort_keys=True,
                )
            ),
            opts=child,
        )

        # Connector replicas claim a task attempt here before creating its Batch job or EMR step or
        # cluster (plugins/cdao_connectors/_attempts.py): those APIs take no idempotency token. Every
        # other connector records here which CreateTasks were answered a job, ordered against a give-up.
        # Items carry their own expiry in EXPIRES_AT (epoch seconds), which DynamoDB's TTL deletes.
        # A surviving replica sweeps the jobs nobody may stop any more (their replica died or gave up
        # ambiguously) through the sparse index SWEEP_INDEX: only the items that carry both its key
        # attributes are in it (DynamoDB developer guide, "Take advantage of sparse indexes",
        # https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-indexes-general-sparse-indexes.html).
        # KEYS_ONLY: the sweeper claims each attempt it finds with a conditional UpdateItem on the
        # table that returns the item (an index serves only eventually consistent reads), so
        # projecting more would only cost. An index of an on-demand table takes no capacity
        # settings, but its writes are throttled as the table's are, and a throttled index write
        # fails the table write (AWS Knowledge Center, "My global secondary index is throttled",
        # https://repost.aws/knowledge-center/dynamodb-gsi-throttling-table). Every index item
        # has one partition key value (SWEEP_QUEUE), so the index's writes (at most four per
        # CreateTask: claim or record, answer, a give-up's mark, its settle) share one partition's
        # 1,000 write units a second ("Best practices for designing and using partition keys
        # effectively", https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html):
        # some 250 CreateTasks a second, far above what propeller sends; a CreateTask whose write is
        # throttled fails its attempt, nothing more (cdao_connectors._attempts).
        # `attributes` lists exactly the key attributes of the table and its index: CreateTable's
        # AttributeDefinitions "describe the key schema for the table and indexes" (API reference,
        # https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_CreateTable.html),
        # DynamoDB rejects one no key uses ("Some AttributeDefinitions are not used"), and the
        # provider would plan such a table again at every update (pulumi_aws 7.51.1 dynamodb/table.py,
        # Table's notes). key_schemas: an index's hash_key/range_key are deprecated there.
        self.attempt_table = aws.dynamodb.Table(
            f"{name}-connector-attempts",
            name=f"cdao-{args.stack}-connector-attempts",
            billing_mode="PAY_PER_REQUEST",
            hash_key=ATTEMPT_KEY,
            attributes=[
                aws.dynamodb.TableAttributeArgs(name=ATTEMPT_KEY, type="S"),
                aws.dynamodb.TableAttributeArgs(name=SWEEP_QUEUE_ATTRIBUTE, type="S"),
                aws.dynamodb.TableAttributeArgs(name=SWEEP_AFTER, type="N"),
            ],
            global_secondary_indexes=[
                aws.dynamodb.TableGlobalSecondaryIndexArgs(
                    name=SWEEP_INDEX,
                    key_schemas=[
                        aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(
                            attribute_name=SWEEP_QUEUE_ATTRIBUTE, key_type="HASH"
                        ),
                        aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(
                            attribute_name=SWEEP_AFTER, key_type="RANGE"
                        ),
                    ],
                    projection_type="KEYS_ONLY",
                )
            ],
            ttl=aws.dynamodb.TableTtlArgs(attribute_name=EXPIRES_AT, enabled=True),
            server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(
                enabled=True, kms_key_arn=args.data_key_arn
            ),
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
            tags=tags,
            opts=child,
        )

        self.emr_log_uri = pulumi.Output.concat("s3://", args.userdata_bucket, "/emr-logs/")
        self.sagemaker_output_uri = pulumi.Output.concat("s3://", args.userdata_bucket, "/sagemaker/")
        # The stack outputs this component contributes (infra/program.py exports them; the names are stable:
        # tests/infra and cdao doctor read them).
        self.stack_outputs: dict[str, Any] = {
            "batchQueues": self.queue_names,
            "emrServerlessApplicationId": self.emr_application.id,
        }
        self.register_outputs(
            {
                "batchQueues": self.queue_names,
                "emrServerlessApplicationId": self.emr_application.id,
                "emrSecurityConfiguration": self.emr_security_configuration.name,
                "sagemakerOutputUri": self.sagemaker_output_uri,
                "connectorAttemptsTable": self.attempt_table.name,
            }
        )


# What copying an image out of a repository reads, for the repository policy that lets another
# account's role do it (deploy.yml's image-<stack>: `docker buildx imagetools inspect --raw` and
# `imagetools create` of one source). buildx reads the source through containerd's fetcher
# (docker/buildx util/imagetools/create.go CopyWithIngester at 461836ba0, v0.36.0+54; containerd v2.3.3
# core/remotes/docker/fetcher.go): manifests by HEAD and GET (ecr:BatchGetImage), blobs by HEAD
# (createGetReq: ecr:BatchCheckLayerAvailability) and GET (ecr:GetDownloadUrlForLayer); the source's
# referrers (referrers.go FetchReferrers) fall back from the referrers API, whatever its error, to the
# `sha256-<hex>` tag's manifest (BatchGetImage again), whose 404 means none. ECR names
# BatchGetImage and GetDownloadUrlForLayer as what a pull needs
# (https://docs.aws.amazon.com/AmazonECR/latest/userguide/ECR_on_ECS.html); ecr:GetAuthorizationToken
# is the pulling role's own IAM permission, never a repository's.
IMAGE_COPY_ACTIONS = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability")

# What EMR Serverless's service principal needs on a repository to run an application's custom image
# ("Customizing an EMR Serverless image",
# https://docs.aws.amazon.com/emr/latest/EMR-Serverless-UserGuide/application-custom-image.html; the
# same policy in aws-samples/emr-serverless-samples examples/pyspark/custom-images/README.md at 7dd33070).
EMR_SERVERLESS_PRINCIPAL = "emr-serverless.amazonaws.com"
EMR_SERVERLESS_PULL_ACTIONS = ("ecr:BatchGetImage", "ecr:DescribeImages", "ecr:GetDownloadUrlForLayer")

# One repository per image deploy.yml builds from plugins/Dockerfile (the target of the same name).
IMAGE_PURPOSES = ("tasks", "connector", "emr-serverless")


class Registry(pulumi.ComponentResource):
    """ECR repositories for the task image, the connector-service image and the EMR Serverless image.

    `pull_role_arns`: IAM roles of other accounts allowed to read every image here (IMAGE_COPY_ACTIONS
    in a repository policy), the ECR push roles of the stacks promoted from this one, which copy its
    images by tag. A cross-account pull needs the repository's policy as well as the role's own
    (https://docs.aws.amazon.com/AmazonECR/latest/userguide/repository-policies.html). None: no
    repository policy, only this account's principals with IAM permissions may pull.

    The `emr-serverless` repository also lets EMR Serverless pull (EMR_SERVERLESS_PULL_ACTIONS) for
    the applications of `account_id` in `region`: `aws:SourceAccount` equal to the account and
    `aws:SourceArn` like `arn:aws:emr-serverless:<region>:<account>:/applications/*`. Not the
    application's own ARN: it exists only once the application is created, and EMR Serverless checks
    the image when it creates the application, so a policy naming the ARN could never come first.
    """

    def __init__(
        self,
        name: str,
        stack: str,
        data_key_arn: pulumi.Input[str],
        tags: Mapping[str, str],
        *,
        region: str,
        account_id: pulumi.Input[str],
        force_delete: bool = False,
        pull_role_arns: Sequence[str] = (),
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("cdao:infra:Registry", name, None, opts)
        self.repository_urls: dict[str, pulumi.Output[str]] = {}
        # Set for the `emr-serverless` purpose, which always has a policy (below).
        self.emr_serverless_pull_policy: aws.ecr.RepositoryPolicy
        for purpose in IMAGE_PURPOSES:
            repo = aws.ecr.Repository(
                f"{name}-{purpose}",
                name=f"cdao-{stack}-{purpose}",
                # Immutable tags: a promoted image tag always means the bytes that were tested.
                image_tag_mutability="IMMUTABLE",
                # Images are rebuilt from Git, but only a dev stack deletes a repository holding them.
                force_delete=force_delete,
                image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
                encryption_configurations=[
                    aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS", kms_key=data_key_arn)
                ],
                tags=dict(tags),
                opts=pulumi.ResourceOptions(parent=self),
            )
            aws.ecr.LifecyclePolicy(
                f"{name}-{purpose}",
                repository=repo.name,
                policy=json.dumps(
                    {
                        "rules": [
                            {
                                "rulePriority": 1,
                                "description": "drop untagged layers after a week",
                                "selection": {
                                    "tagStatus": "untagged",
                                    "countType": "sinceImagePushed",
                                    "countUnit": "days",
                                    "countNumber": 7,
                                },
                                "action": {"type": "expire"},
                            },
                            {
                                "rulePriority": 2,
                                "description": "keep the newest 100 tagged images",
                                "selection": {
                                    "tagStatus": "any",
                                    "countType": "imageCountMoreThan",
                                    "countNumber": 100,
                                },
                                "action": {"type": "expire"},
                            },
                        ]
                    }
                ),
                opts=pulumi.ResourceOptions(parent=repo),
            )
            statements: list[Any] = []
            if pull_role_arns:
                statements.append(
                    {
                        "Sid": "CopyByPromotedStacks",
                        "Effect": "Allow",
                        "Principal": {"AWS": list(pull_role_arns)},
                        "Action": list(IMAGE_COPY_ACTIONS),
                    }
                )
            if purpose == "emr-serverless":
                statements.append(
                    pulumi.Output.from_input(account_id).apply(
                        lambda account: {
                            "Sid": "EmrServerlessApplicationImage",
                            "Effect": "Allow",
                            "Principal": {"Service": EMR_SERVERLESS_PRINCIPAL},
                            "Action": list(EMR_SERVERLESS_PULL_ACTIONS),
                            "Condition": {
                                "StringEquals": {"aws:SourceAccount": account},
                                "StringLike": {
                                    "aws:SourceArn": f"arn:aws:emr-serverless:{region}:{account}:/applications/*"
                                },
                            },
                        }
                    )
                )
            if statements:
                policy = aws.ecr.RepositoryPolicy(
                    f"{name}-{purpose}-pull",
                    repository=repo.name,
                    policy=pulumi.Output.all(*statements).apply(
                        lambda s: json.dumps({"Version": "2012-10-17", "Statement": s})
                    ),
                    opts=pulumi.ResourceOptions(parent=repo),
                )
                if purpose == "emr-serverless":
                    self.emr_serverless_pull_policy = policy
            self.repository_urls[purpose] = repo.repository_url
        # The stack outputs this component contributes (infra/program.py exports them; the names are stable:
        # tests/infra and cdao doctor read them).
        self.stack_outputs: dict[str, Any] = {"ecrRepositories": self.repository_urls}
        self.register_outputs({"repositoryUrls": self.repository_urls})

    def image_uri(self, purpose: str, commit: str) -> pulumi.Output[str]:
        """`<repository URL>:<commit>`: the image of `purpose` (IMAGE_PURPOSES) that deploy.yml built or
        copied for the 40-hex `commit` (infra/images.py). KeyError for an unknown purpose."""
        return pulumi.Output.concat(self.repository_urls[purpose], ":", commit)
