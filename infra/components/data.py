"""Where the platform keeps state: PostgreSQL for Flyte, S3 for data, EFS for shared files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from infra.lib import iam
from infra.lib.shared import kept_on_teardown, reachable_only_from, rotating_key

BUCKET_PURPOSES = ("metadata", "userdata", "workflows")
DB_PORT = 5432
DB_NAME = "flyteadmin"  # flyteadmin and datacatalog share it, as Flyte's single-binary chart does
# The master user Flyte connects as; its password lives only in the RDS-managed secret.
DB_MASTER_USER = "cdao_admin"


@dataclass(frozen=True)
class DataArgs:
    stack: str
    account_id: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    database_subnet_ids: Sequence[pulumi.Input[str]]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    availability_zones: Sequence[str]
    node_security_group_id: pulumi.Input[str]
    db_instance_class: str
    db_engine_version: str
    db_allocated_storage_gb: int
    db_max_allocated_storage_gb: int
    db_multi_az: bool
    db_deletion_protection: bool
    db_allow_major_version_upgrade: bool
    db_skip_final_snapshot: bool
    db_backup_retention_days: int
    noncurrent_version_expiration_days: int
    abort_incomplete_upload_days: int
    replication_region: str | None
    force_destroy: bool
    tags: Mapping[str, str] = field(default_factory=dict)
    # Every stack but dev: the database, EFS, the buckets and their keys survive `pulumi destroy`
    # (infra/lib/shared.py kept_on_teardown).
    keep_on_teardown: bool = False


class Data(pulumi.ComponentResource):
    def __init__(self, name: str, args: DataArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cdao:infra:Data", name, None, opts)
        self._name, self._args = name, args
        # Each bucket's versioning, by bucket logical name: replication must wait for it.
        self._versioning: dict[str, aws.s3.BucketVersioning] = {}
        tags = dict(args.tags)
        child = pulumi.ResourceOptions(parent=self)

        self.key = rotating_key(
            f"{name}-key",
            f"cdao-{args.stack}: RDS storage, the RDS master secret, S3 objects, EFS",
            f"cdao-{args.stack}-data",
            {**tags, "Name": f"cdao-{args.stack}-data"},
            child,
            keep=args.keep_on_teardown,
        )

        self._database(tags)
        self.buckets = {purpose: self._bucket(purpose, self.key, tags, opts=child) for purpose in BUCKET_PURPOSES}
        self.bucket_names = {purpose: bucket.bucket for purpose, bucket in self.buckets.items()}
        self.bucket_arns = {purpose: bucket.arn for purpose, bucket in self.buckets.items()}
        if args.replication_region:
            self._replicate(args.replication_region, tags)
        self._efs(tags)

        # The stack outputs this component contributes (infra/program.py exports them; the names are stable:
        # tests/infra and cdao doctor read them).
        self.stack_outputs: dict[str, Any] = {
            "dbEndpoint": self.db_endpoint,
            "dbMasterSecretArn": self.db_master_secret_arn,
            "bucketNames": self.bucket_names,
            "efsFileSystemId": self.efs_id,
            "dbInstanceIdentifier": self.db.identifier,
        }
        self.register_outputs(
            {
                "dbEndpoint": self.db_endpoint,
                "dbMasterSecretArn": self.db_master_secret_arn,
                "bucketNames": self.bucket_names,
                "efsFileSystemId": self.efs_id,
                "keyArn": self.key.arn,
            }
        )

    # -- PostgreSQL -------------------------------------------------------------------------------
    def _database(self, tags: Mapping[str, str]) -> None:
        args, name = self._args, self._name
        child = pulumi.ResourceOptions(parent=self)
        subnet_group = aws.rds.SubnetGroup(
            f"{name}-db", subnet_ids=list(args.database_subnet_ids), description="Database tier", tags=tags, opts=child
        )
        # Only the cluster's nodes reach the database, and only on its port; nothing from the internet.
        sg = reachable_only_from(
            f"{name}-db",
            vpc_id=args.vpc_id,
            description="PostgreSQL for Flyte: cluster nodes only",
            source_security_group_id=args.node_security_group_id,
            port=DB_PORT,
            rule_description="PostgreSQL from EKS nodes",
            tags=tags,
            parent=self,
        )
        # The family follows the major: a planned major upgrade replaces the (auto-named) group too.
        family = f"postgres{args.db_engine_version}"
        self.db_identifier_prefix = f"cdao-{args.stack}-flyte-"
        params = aws.rds.ParameterGroup(
            f"{name}-db",
            family=family,
            description="Flyte PostgreSQL: TLS only, slow-query logging",
            parameters=[
                aws.rds.ParameterGroupParameterArgs(name="rds.force_ssl", value="1"),
                aws.rds.ParameterGroupParameterArgs(name="log_min_duration_statement", value="1000"),
            ],
            tags=tags,
            opts=child,
        )
        # Every input of these that changes replaces the instance (terraform-provider-aws ForceNew,
        # cdao_cli/plan/replacements.py): the final snapshot's suffix is drawn anew with them.
        replace_forcing: dict[str, pulumi.Input[str] | bool] = {
            "identifierPrefix": self.db_identifier_prefix,
            "engine": "postgres",
            "dbName": DB_NAME,
            "username": DB_MASTER_USER,
            "storageEncrypted": True,
            "kmsKeyId": self.key.arn,
        }
        self.db = aws.rds.Instance(
            f"{name}-db",
            identifier_prefix=replace_forcing["identifierPrefix"],
            engine=replace_forcing["engine"],
            # The major only: RDS applies minors (auto_minor_version_upgrade) and the provider leaves
            # a prefix of the running version alone (infra/config.py DatabaseConfig says why).
            engine_version=args.db_engine_version,
            allow_major_version_upgrade=args.db_allow_major_version_upgrade,
            instance_class=args.db_instance_class,
            allocated_storage=args.db_allocated_storage_gb,
            max_allocated_storage=args.db_max_allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=replace_forcing["storageEncrypted"],
            kms_key_id=replace_forcing["kmsKeyId"],
            db_name=replace_forcing["dbName"],
            username=replace_forcing["username"],
            # RDS generates and rotates the password in Secrets Manager: it never passes through
            # Pulumi state or this repository.
            manage_master_user_password=True,
            master_user_secret_kms_key_id=self.key.arn,
            iam_database_authentication_enabled=True,
            db_subnet_group_name=subnet_group.name,
            vpc_security_group_ids=[sg.id],
            parameter_group_name=params.name,
            publicly_accessible=False,
            multi_az=args.db_multi_az,
            deletion_protection=args.db_deletion_protection,
            backup_retention_period=args.db_backup_retention_days,
            backup_window="03:00-04:00",
            maintenance_window="sun:04:30-sun:05:30",
            copy_tags_to_snapshot=True,
            auto_minor_version_upgrade=True,
            skip_final_snapshot=args.db_skip_final_snapshot,
            final_snapshot_identifier=(
                None if args.db_skip_final_snapshot else self._final_snapshot_identifier(replace_forcing)
            ),
            tags=tags,
            opts=kept_on_teardown(child, args.keep_on_teardown),
        )
        self.db_endpoint = self.db.address
        self.db_port = self.db.port
        self.db_master_secret_arn = self.db.master_user_secrets.apply(lambda s: s[0].secret_arn if s else "")

    def _final_snapshot_identifier(self, replace_forcing: Mapping[str, pulumi.Input[str] | bool]) -> pulumi.Output[str]:
        """`cdao-<stack>-flyte-final-<8 hex>`: the suffix is drawn once per instance, so a stack torn
        down, rebuilt and torn down again, or an instance replaced, does not collide with a previous
        final snapshot (DBSnapshotAlreadyExists). As terraform-aws-modules/terraform-aws-rds
        modules/db_instance does with random_id. `replace_forcing`: the instance's inputs that force
        its replacement, by Pulumi property name; each becomes a keeper, so a new instance gets a new
        suffix. RDS: a letter first, letters, digits and single hyphens, 255 at most."""
        suffix = random.RandomId(
            f"{self._name}-db-final-snapshot",
            byte_length=4,
            # Keepers are strings (pulumi_random RandomId.keepers): booleans as the engine shows them.
            keepers={k: str(v).lower() if isinstance(v, bool) else v for k, v in replace_forcing.items()},
            opts=pulumi.ResourceOptions(parent=self),
        )
        return pulumi.Output.concat(f"cdao-{self._args.stack}-flyte-final-", suffix.hex)

    # -- S3 ---------------------------------------------------------------------------------------
    def _bucket(
        self,
        purpose: str,
        key: aws.kms.Key,
        tags: Mapping[str, str],
        opts: pulumi.ResourceOptions,
        suffix: str = "",
    ) -> aws.s3.Bucket:
        args, name = self._args, f"{self._name}-{purpose}{suffix}"
        bucket = aws.s3.Bucket(
            name,
            bucket_prefix=f"cdao-{args.stack}-{purpose}{suffix}-",
            force_destroy=args.force_destroy,
            tags={**tags, "purpose": purpose},
            opts=kept_on_teardown(opts, args.keep_on_teardown),
        )
        child = pulumi.ResourceOptions(parent=bucket, provider=opts.provider)
        aws.s3.BucketOwnershipControls(
            name,
            bucket=bucket.id,
            # ACLs off: access is decided by IAM and the bucket policy alone.
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        aws.s3.BucketPublicAccessBlock(
            name,
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            name,
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="aws:kms", kms_master_key_id=key.arn
                    ),
                    # One data key per bucket instead of a KMS call per object: ~99% fewer KMS requests.
                    bucket_key_enabled=True,
                )
            ],
            opts=child,
        )
        versioning = aws.s3.BucketVersioning(
            name,
            bucket=bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=child,
        )
        self._versioning[name] = versioning
        aws.s3.BucketLifecycleConfiguration(
            name,
            bucket=bucket.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="abort-incomplete-uploads",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=args.abort_incomplete_upload_days
                    ),
                ),
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-noncurrent-versions",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                        noncurrent_days=args.noncurrent_version_expiration_days
                    ),
                ),
            ],
            # Lifecycle rules on an unversioned bucket race the versioning change.
            opts=pulumi.ResourceOptions(parent=bucket, provider=opts.provider, depends_on=[versioning]),
        )
        aws.s3.BucketPolicy(
            name,
            bucket=bucket.id,
            policy=bucket.arn.apply(
                lambda arn: iam.document(
                    [
                        {
                            "Sid": "DenyInsecureTransport",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [arn, f"{arn}/*"],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ]
                )
            ),
            opts=child,
        )
        return bucket

    def _replicate(self, region: str, tags: Mapping[str, str]) -> None:
        args, name = self._args, self._name
        provider = aws.Provider(f"{name}-replica-region", region=region, opts=pulumi.ResourceOptions(parent=self))
        replica_opts = pulumi.ResourceOptions(parent=self, provider=provider)
        replica_key = rotating_key(
            f"{name}-replica-key",
            f"cdao-{args.stack}: replicas of the data buckets in {region}",
            None,
            tags,
            replica_opts,
            keep=args.keep_on_teardown,
        )
        replicas = {
            p: self._bucket(p, replica_key, tags, opts=replica_opts, suffix="-replica") for p in BUCKET_PURPOSES
        }
        role = aws.iam.Role(
            f"{name}-replication",
            description="S3 cross-region replication of the data buckets",
            assume_role_policy=iam.service_trust("s3.amazonaws.com", args.account_id),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        sources = list(self.bucket_arns.values())
        targets = [b.arn for b in replicas.values()]
        aws.iam.RolePolicy(
            f"{name}-replication",
            role=role.id,
            policy=pulumi.Output.all(sources, targets, self.key.arn, replica_key.arn).apply(
                lambda a: iam.document(
                    [
                        iam.allow("ReadSourceConfig", ["s3:GetReplicationConfiguration", "s3:ListBucket"], a[0]),
                        iam.allow(
                            "ReadSourceVersions",
                            [
                                "s3:GetObjectVersionForReplication",
                                "s3:GetObjectVersionAcl",
                                "s3:GetObjectVersionTagging",
                            ],
                            [f"{arn}/*" for arn in a[0]],
                        ),
                        iam.allow(
                            "WriteReplicas",
                            ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"],
                            [f"{arn}/*" for arn in a[1]],
                        ),
                        iam.allow("DecryptSource", ["kms:Decrypt"], [a[2]]),
                        iam.allow("EncryptReplica", ["kms:Encrypt", "kms:GenerateDataKey"], [a[3]]),
                    ]
                )
            ),
            opts=pulumi.ResourceOptions(parent=role),
        )
        for purpose, source in self.buckets.items():
            aws.s3.BucketReplicationConfig(
                f"{name}-{purpose}-replication",
                bucket=source.id,
                role=role.arn,
                rules=[
                    aws.s3.BucketReplicationConfigRuleArgs(
                        id="all-objects",
                        status="Enabled",
                        filter=aws.s3.BucketReplicationConfigRuleFilterArgs(prefix=""),
                        delete_marker_replication=aws.s3.BucketReplicationConfigRuleDeleteMarkerReplicationArgs(
                            status="Enabled"
                        ),
                        source_selection_criteria=aws.s3.BucketReplicationConfigRuleSourceSelectionCriteriaArgs(
                            sse_kms_encrypted_objects=aws.s3.BucketReplicationConfigRuleSourceSelectionCriteriaSseKmsEncryptedObjectsArgs(
                                status="Enabled"
                            )
                        ),
                        destination=aws.s3.BucketReplicationConfigRuleDestinationArgs(
                            bucket=replicas[purpose].arn,
                            storage_class="STANDARD_IA",
                            encryption_configuration=aws.s3.BucketReplicationConfigRuleDestinationEncryptionConfigurationArgs(
                                replica_kms_key_id=replica_key.arn
                            ),
                        ),
                    )
                ],
                # S3 refuses a replication configuration until versioning is on at both ends; the
                # bucket IDs alone do not make Pulumi wait for that (pulumi-aws's
                # BucketReplicationConfig example depends on both BucketVersioning resources).
                opts=pulumi.ResourceOptions(
                    parent=source,
                    depends_on=[
                        self._versioning[f"{name}-{purpose}"],
                        self._versioning[f"{name}-{purpose}-replica"],
                    ],
                ),
            )

    # -- EFS --------------------------------------------------------------------------------------
    def _efs(self, tags: Mapping[str, str]) -> None:
        args, name = self._args, self._name
        child = pulumi.ResourceOptions(parent=self)
        fs = aws.efs.FileSystem(
            f"{name}-efs",
            encrypted=True,
            kms_key_id=self.key.arn,
            performance_mode="generalPurpose",
            throughput_mode="elastic",
            lifecycle_policies=[aws.efs.FileSystemLifecyclePolicyArgs(transition_to_ia="AFTER_30_DAYS")],
            tags={**tags, "Name": f"cdao-{args.stack}-shared"},
            opts=kept_on_teardown(child, args.keep_on_teardown),
        )
        sg = reachable_only_from(
            f"{name}-efs",
            vpc_id=args.vpc_id,
            description="EFS mount targets: cluster nodes only",
            source_security_group_id=args.node_security_group_id,
            port=2049,
            rule_description="NFS from EKS nodes",
            tags=tags,
            parent=self,
        )
        for az, subnet_id in zip(args.availability_zones, args.private_subnet_ids, strict=True):
            aws.efs.MountTarget(
                f"{name}-efs-{az}",
                file_system_id=fs.id,
                subnet_id=subnet_id,
                security_groups=[sg.id],
                opts=pulumi.ResourceOptions(parent=fs),
            )
        # No EFS automatic backup here: the stack's AWS Backup plan (infra/components/backup.py) covers
        # this file system with the stack's retention; both would store every recovery point twice.
        self.efs_id = fs.id
